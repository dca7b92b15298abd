"""The labelling app's speed: time to first clip and queries served per second.

    .venv/bin/python benchmarks/teacher_app.py [--queries 200] [--bundle QUERIES_FOLDER]

Serves a bundle (by default one built here from a synthetic training set of 2,000 rows with
`--queries` states; or a bundle the workflow built) with uvicorn on 127.0.0.1 in this process and
drives it over HTTP like a browser that has nothing cached:

- time to first clip: from the sign-in page to the first query's clip fully received (the
  sign-in page, its POST with the CSRF token, the redirect to the query, its page, its GIF),
  and the app's start-up before it;
- labelling cycles per second: page, clip, stack and answer of one query after another by one
  labeller (a person needs seconds per answer: the ratio is the app's headroom);
- query pages per second: the page of a held query alone, the server's floor.

Prints one table with the rates side by side. Every form carries its CSRF token and the session
is signed (issue 28). To measure an older version of the app beside this one, run the script
from that version's checkout (it reads the CSRF field only where a page has one).
"""

from __future__ import annotations

import argparse
import http.cookiejar
import re
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fdt.teacher.app import BackgroundServer, create_app

PERSON_SECONDS = 3.0  # a fast labeller's time per answer (watching a 2-3 s clip, then a key)


def synthetic_bundle(root: Path, queries: int) -> Path:
    """A bundle of `queries` states of a 2,000-row synthetic training set (20 trajectories)."""
    import numpy as np

    from fdt.teacher.bundle import BundleParams, build_bundle
    from tests.teacher_data import NAMES, mined_states, training_set

    data = training_set(root / "dataset", lengths=[100] * 20)
    positions = np.random.default_rng(0).choice(2000, size=queries, replace=False).tolist()
    states = mined_states(root / "states.parquet", data, positions)
    build_bundle(data, states, root / "queries", "Breakout", BundleParams(queries=queries,
                 gold_rate=0.0), names=NAMES, progress=False)
    return root / "queries"


def client() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(
        http.cookiejar.CookieJar()))


def post(opener: urllib.request.OpenerDirector, url: str, fields: dict[str, str]) -> tuple[str, str]:
    """POST a form, follow the redirect; the final URL and the page."""
    with opener.open(url, data=urllib.parse.urlencode(fields).encode()) as response:
        return response.geturl(), response.read().decode()


def get(opener: urllib.request.OpenerDirector, url: str) -> bytes:
    with opener.open(url) as response:
        return response.read()


def media(page: str) -> list[str]:
    return re.findall(r"src=[\"'](/media/[^\"']+)[\"']", page)


def csrf(page: str) -> dict[str, str]:
    """The page's CSRF field, for the next form (none on pages of an app without them)."""
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    return {"csrf": found.group(1)} if found else {}


def measure(bundle_dir: Path, db: Path, cycles: int, page_repeats: int = 200) -> dict[str, float]:
    started = time.perf_counter()
    app = create_app(bundle_dir, db)
    with BackgroundServer(app) as url:
        startup = time.perf_counter() - started
        opener = client()
        signed = time.perf_counter()
        home = get(opener, f"{url}/").decode()
        page_url, page = post(opener, f"{url}/login", {"name": "bench", **csrf(home)})
        clip = get(opener, url + media(page)[0])
        first_clip = time.perf_counter() - signed
        assert clip[:6] == b"GIF89a", "the first clip is not a GIF"

        repeats = page_repeats
        t0 = time.perf_counter()
        for _ in range(repeats):
            get(opener, page_url)
        pages_per_s = repeats / (time.perf_counter() - t0)

        done = 0
        t0 = time.perf_counter()
        while done < cycles:
            for path in media(page):
                get(opener, url + path)
            query_url = page_url
            page_url, page = post(opener, query_url, {"verdict": "good", **csrf(page)})
            done += 1
            if "/label/" not in page_url:  # nothing left
                break
        cycles_per_s = done / (time.perf_counter() - t0)
    return {"startup_s": startup, "first_clip_s": first_clip, "pages_per_s": pages_per_s,
            "cycles_per_s": cycles_per_s, "cycles": done}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--bundle", type=Path, help="a bundle folder the workflow built")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds: the test suite's check that the script runs")
    args = parser.parse_args()
    if args.quick:
        args.queries = 3
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundle = args.bundle or synthetic_bundle(root, args.queries)
        result = measure(bundle, root / "answers.sqlite", args.queries,
                         page_repeats=5 if args.quick else 200)
    print(f"bundle: {bundle if args.bundle else f'synthetic, {args.queries} queries'}")
    print(f"{'measure':<34}{'value':>12}{'vs a person (1 per 3 s)':>26}")
    print(f"{'app start-up (s)':<34}{result['startup_s']:>12.3f}{'':>26}")
    print(f"{'time to first clip (s)':<34}{result['first_clip_s']:>12.3f}"
          f"{PERSON_SECONDS / result['first_clip_s']:>25.0f}x")
    print(f"{'labelling cycles per s':<34}{result['cycles_per_s']:>12.1f}"
          f"{result['cycles_per_s'] * PERSON_SECONDS:>25.0f}x")
    print(f"{'query pages per s':<34}{result['pages_per_s']:>12.1f}"
          f"{result['pages_per_s'] * PERSON_SECONDS:>25.0f}x")
    print(f"({int(result['cycles'])} cycles: page, clip, stack and answer of one query each)")


if __name__ == "__main__":
    main()
