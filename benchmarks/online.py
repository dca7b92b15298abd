"""The online loop's speed (fdt.online, issue 32) on Hopper-v5.

    .venv/bin/python benchmarks/online.py [--quick] [--steps 3000] [--seconds 30]

- environment steps per second of the loop: rl mode (SAC on the true reward) and synth mode (the
  same plus clips, comparisons, retraining every `retrain_every` steps and relabelling the replay),
  each alone in this process, SAC updating from step `start_steps`;
- labels per second the feedback app sustains while an agent trains: the app serves a human
  run's queued pairs on 127.0.0.1 (uvicorn in a thread of this process, as `python -m fdt.online
  human` does) while a synth loop trains in another thread; one client signs in and, pair after
  pair, gets the page and both clips and posts an answer, like a browser with nothing cached;
- reward-model retraining time: one retraining (the loop's `retrain_updates` minibatches of 64)
  on N labels of random-play clips, and the same per 100 labels.

Prints one table. The machine's other load changes every number here: say what ran beside it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks.teacher_app import client, get, post  # noqa: E402
from fdt.online.human import human_app  # noqa: E402
from fdt.online.loop import OnlineLoop, OnlineParams, run_online  # noqa: E402
from fdt.preferences.comparisons import Comparison, synthetic_labeller  # noqa: E402
from fdt.teacher.app import BackgroundServer  # noqa: E402


def loop_params(steps: int, quick: bool) -> OnlineParams:
    small = dict(hidden=16, batch_size=16, pretrain_iters=10) if quick else \
        dict(hidden=256, batch_size=256, pretrain_iters=200)
    return OnlineParams(env="Hopper-v5", steps=steps, labels=100, retrain_every=min(1000, steps // 2),
                        retrain_updates=10, eval_every=steps, eval_episodes=1,
                        start_steps=min(1000, steps // 2), checkpoint_every=10 * steps, **small)


def steps_per_second(root: Path, steps: int, quick: bool) -> dict[str, float]:
    out = {}
    for mode in ("rl", "synth"):
        summary = run_online(replace(loop_params(steps, quick), mode=mode), root / f"alone-{mode}")
        out[mode] = summary["steps_per_second"]
    return out


def csrf(page: str) -> dict[str, str]:
    found = re.search(r"name=['\"]csrf['\"] value=['\"]([^'\"]+)['\"]", page)
    return {"csrf": found.group(1)} if found else {}


def labels_per_second(root: Path, seconds: float, steps: int, quick: bool) -> dict[str, float]:
    """The app answering a human run's pairs while a synth loop trains beside it."""
    human = OnlineLoop(replace(loop_params(steps, quick), mode="human", labels=4000),
                       root / "human", root / "answers.sqlite")
    clips = 12 if quick else 80
    human._random_clips(clips)  # random-play clips and a long queue of pairs of them
    rng = human.rng
    human.state.queued = [tuple(int(c) for c in rng.choice(clips, 2, replace=False))
                          for _ in range(2000)]
    human._publish_queries()
    trainer = OnlineLoop(replace(loop_params(10 * steps, quick), mode="synth"), root / "beside")
    training = threading.Thread(target=trainer.run, daemon=True)
    with BackgroundServer(human_app(root / "human", root / "answers.sqlite", "Hopper-v5")) as url:
        training.start()
        deadline = time.monotonic() + 120
        while trainer.state.step == 0 and time.monotonic() < deadline:
            time.sleep(0.1)  # measured while the agent trains, not while it pretrains
        opener = client()
        home = get(opener, f"{url}/").decode()
        page_url, page = post(opener, f"{url}/login", {"name": "bench", **csrf(home)})
        answers, started, trained_before = 0, time.perf_counter(), trainer.state.step
        while time.perf_counter() - started < seconds and training.is_alive():
            page = get(opener, f"{url}/compare").decode()
            pair = re.findall(r"name='(left|right)' value='(\d+)'", page)
            if len(pair) < 2:
                break
            for clip in re.findall(r"src='(/pref-media/\d+\.gif)'", page):
                get(opener, url + clip)
            fields = {name: value for name, value in pair}
            post(opener, f"{url}/compare", {**fields, "answer": "left", **csrf(page)})
            answers += 1
        elapsed = time.perf_counter() - started
        trained = trainer.state.step - trained_before
        trainer.stop()
        training.join()
    return {"labels_per_s": answers / elapsed, "answers": answers, "trainer_steps": trained,
            "trainer_steps_per_s": trained / elapsed}


def retraining(root: Path, label_counts: list[int], quick: bool) -> list[dict[str, float]]:
    loop = OnlineLoop(replace(loop_params(1000, quick), mode="synth", labels=max(label_counts)),
                      root / "retrain")
    loop._random_clips(24 if quick else 120)
    labeller = synthetic_labeller(loop.store.returns_view(), 0.0, loop.rng)
    states, actions = loop.store.arrays()
    bundle = loop.store.bundle(loop.digest)
    rows = []
    assert loop.model is not None
    loop.model.fit(bundle, states, actions, [Comparison(0, 1, labeller(0, 1))], None, 1)  # warm
    for count in label_counts:
        pairs = [tuple(int(c) for c in loop.rng.choice(len(loop.store), 2, replace=False))
                 for _ in range(count)]
        comparisons = [Comparison(a, b, labeller(a, b)) for a, b in pairs]
        started = time.perf_counter()
        loop.model.fit(bundle, states, actions, comparisons, None, loop.params.retrain_updates)
        seconds = time.perf_counter() - started
        rows.append({"labels": count, "seconds": seconds, "per_100_labels": seconds * 100 / count})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds (the tests)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    steps, seconds = (300, 4.0) if args.quick else (args.steps, args.seconds)
    counts = [50, 100] if args.quick else [100, 200, 400, 800]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rates = steps_per_second(root, steps, args.quick)
        app = labels_per_second(root, seconds, steps, args.quick)
        fits = retraining(root, counts, args.quick)
    print(f"online loop on Hopper-v5 ({'quick' if args.quick else 'full'}: {steps} steps, "
          f"torch threads {os.environ.get('OMP_NUM_THREADS')})")
    print("| measure | value |")
    print("|---|---|")
    print(f"| loop steps/s, rl (SAC on the true reward) | {rates['rl']:.1f} |")
    print(f"| loop steps/s, synth (clips, labels, retraining, relabelling) | {rates['synth']:.1f} |")
    print(f"| app labels/s while a synth loop trains beside it | {app['labels_per_s']:.2f} "
          f"({app['answers']} answers; the loop meanwhile {app['trainer_steps_per_s']:.1f} steps/s) |")
    for row in fits:
        print(f"| reward-model retraining on {row['labels']} labels (10 minibatches of 64) | "
              f"{row['seconds']:.3f} s ({row['per_100_labels']:.3f} s per 100 labels) |")


if __name__ == "__main__":
    main()
