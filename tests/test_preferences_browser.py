"""The comparison pages in a real browser (the feedback app's chromium and server, as
tests/test_teacher_browser.py drives them): two clips compared by key and by click, then three
clips inserted into the sort tree, the tree's size and depth on the page, the stored rows and the
export checked."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from fdt.dataset.training_set import TrainingSet
from fdt.preferences.clips import draw_clips, write_bundle
from fdt.preferences.stage import replay_tree
from fdt.preferences.web import ComparisonPages
from fdt.teacher.app import BackgroundServer, create_app, default_families
from tests.teacher_data import world
from tests.test_teacher_browser import browser, sign_in  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def pref_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    root = tmp_path_factory.mktemp("pref-browser")
    tiny = world(root)
    bundle = draw_clips(TrainingSet(tiny.data), "k" * 16, count=8, length=4,
                        heldout_fraction=0.25, seed=0)
    write_bundle(root / "clips.json", bundle)
    db = root / "answers.sqlite"
    pages = ComparisonPages(root / "clips.json", tiny.data)
    with BackgroundServer(create_app(tiny.bundle_dir, db,
                                 families=[*default_families(), pages])) as url:
        yield bundle, db, url


def rows(db: Path, mode: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT left_clip, right_clip, answer, labeller, time FROM "
                            "pref_comparisons WHERE mode = ? ORDER BY id", (mode,)).fetchall()


def loaded(page, selector: str) -> bool:
    return page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0")


def test_compare_two_clips(browser, pref_world) -> None:  # noqa: F811
    bundle, db, url = pref_world
    page = sign_in(browser, url, "ann")
    page.goto(f"{url}/compare")
    assert page.text_content("#question") == "Which clip shows the better play?"
    assert loaded(page, "#left-clip") and loaded(page, "#right-clip")
    first = (int(page.input_value("input[name=left]")), int(page.input_value("input[name=right]")))
    page.keyboard.press("l")  # left is better
    page.wait_for_selector("#progress:text('1 pairs compared')")  # the next pair's page
    second = (int(page.input_value("input[name=left]")), int(page.input_value("input[name=right]")))
    page.click("#answer-equal")
    page.wait_for_selector("text=2 pairs compared")
    stored = rows(db, "pairs")
    assert [r[:4] for r in stored] == [(*first, "left", "ann"), (*second, "equal", "ann")]
    assert all(r[4].endswith("+00:00") for r in stored)  # the time, in UTC
    held = set(bundle.heldout)
    assert not held & {*first, *second}  # only training clips are asked
    export = page.request.get(f"{url}/comparisons.json?mode=pairs").json()  # signed in only
    assert export["bundle"] == bundle.digest and len(export["comparisons"]) == 2


def test_insert_three_clips_into_the_sort_tree(browser, pref_world) -> None:  # noqa: F811
    bundle, db, url = pref_world
    page = sign_in(browser, url, "bob")
    page.goto(f"{url}/tree")
    root, second = bundle.training_ids[:2]
    # The first clip is the root without a question; the second is compared with it.
    assert page.text_content("#tree-size") == "1" and page.text_content("#tree-depth") == "1"
    assert page.input_value("input[name=left]") == str(root)
    assert page.input_value("input[name=right]") == str(second)
    assert loaded(page, "#left-clip") and loaded(page, "#right-clip")
    page.keyboard.press("r")  # the new clip is better: right of the root
    page.wait_for_selector("#tree-size:text('2')")
    assert page.text_content("#tree-depth") == "2"
    third = bundle.training_ids[2]
    assert page.input_value("input[name=right]") == str(third)
    assert page.input_value("input[name=left]") == str(root)
    page.keyboard.press("r")  # better than the root ...
    page.wait_for_selector(f"input[name=left][value='{second}']", state="attached")
    page.keyboard.press("r")  # ... and than the second: a rotation keeps the tree balanced
    page.wait_for_selector("#tree-size:text('3')")
    assert page.text_content("#tree-depth") == "2" and page.text_content("#tree-clips") == "3"
    stored = rows(db, "tree")
    assert [r[:4] for r in stored] == [(root, second, "right", "bob"), (root, third, "right", "bob"),
                                       (second, third, "right", "bob")]
    export = page.request.get(f"{url}/comparisons.json?mode=tree").json()
    tree = replay_tree([*map(_comparison, export["comparisons"])])
    assert tree.ordinals() == {root: 0, second: 1, third: 2}
    assert tree.nodes[tree.root].clips == [second]  # the middle clip rose to the root


def test_the_sort_tree_is_drawn(browser, pref_world) -> None:  # noqa: F811
    """After the three insertions above: the tree drawn under the question, in Chromium."""
    bundle, db, url = pref_world
    page = sign_in(browser, url, "cat")
    page.goto(f"{url}/tree")
    root, second, third = bundle.training_ids[:3]
    nodes = page.eval_on_selector_all("#tree-drawing svg g.node", """gs => gs.map(g => ({
        clips: g.dataset.clips, depth: g.dataset.depth,
        fill: getComputedStyle(g.querySelector('rect')).fill,
        stroke: getComputedStyle(g.querySelector('rect')).stroke,
        x: g.getBoundingClientRect().x, y: g.getBoundingClientRect().y}))""")
    # in-order, worst first: the first clip (red), the second (black root), the third (red)
    assert [(n["clips"], n["depth"], n["fill"]) for n in nodes] == [
        (str(root), "1", "rgb(170, 0, 0)"), (str(second), "0", "rgb(17, 17, 17)"),
        (str(third), "1", "rgb(170, 0, 0)")]
    # laid out left to right, the root a row above its children
    assert nodes[0]["x"] < nodes[1]["x"] < nodes[2]["x"]
    assert nodes[0]["y"] == nodes[2]["y"] == nodes[1]["y"] + 70 + 70
    # the fourth clip is asked at the root: its box is outlined, the others are not
    fourth = bundle.training_ids[3]
    assert page.input_value("input[name=right]") == str(fourth)
    assert [n["stroke"] for n in nodes] == ["none", "rgb(240, 160, 0)", "none"]
    assert page.eval_on_selector_all("#tree-drawing svg line", "ls => ls.length") == 2
    hrefs = page.eval_on_selector_all("#tree-drawing svg image", "is => is.map(i => i.getAttribute('href'))")
    assert hrefs == [f"/pref-media/{c}.gif" for c in (root, second, third)]
    # each thumbnail is drawn 64 px wide and its address serves the clip's GIF
    sizes = page.eval_on_selector_all("#tree-drawing svg image", "is => is.map(i => i.getBBox().width)")
    assert sizes == [64, 64, 64]
    served = page.evaluate("hrefs => Promise.all(hrefs.map(h => fetch(h).then(r => "
                           "r.headers.get('content-type'))))", hrefs)
    assert served == ["image/gif"] * 3
    drawing = page.goto(f"{url}/tree.svg")
    assert drawing.headers["content-type"] == "image/svg+xml"
    assert page.eval_on_selector_all("g.node", "gs => gs.length") == 3


def _comparison(data: dict):
    from fdt.preferences.comparisons import Comparison

    return Comparison.from_dict(data)
