"""The labelling app in a real browser: Debian's headless chromium driven by Playwright against the
app on 127.0.0.1. Five states labelled by click and by keyboard with a reload in the middle, the
SQLite rows and the exported labels checked, a screenshot of the labelling page inspected."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from fdt.teacher.app import BackgroundServer, create_app
from fdt.teacher.export import human_labels
from tests.browser import chromium_path, launch_chromium
from tests.teacher_data import world

if chromium_path() is None:
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium); the browser "
                "tests drive it", allow_module_level=True)


@pytest.fixture(scope="module")
def app_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    root = tmp_path_factory.mktemp("browser")
    tiny = world(root)
    db = root / "answers.sqlite"
    with BackgroundServer(create_app(tiny.bundle_dir, db)) as url:
        yield tiny, db, url


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with launch_chromium() as chromium:
        yield chromium


def sign_in(browser, url: str, name: str):
    page = browser.new_context().new_page()
    page.goto(url)
    page.fill("#name", name)
    page.click("#start")
    page.wait_for_selector("#question")
    return page


def on_query(page, query_id: str, question: str = "Was this action good here?") -> None:
    page.wait_for_url(f"**/label/{query_id}*")
    # "No" asks for the best action at the same URL, so the URL alone can match the page before
    # the answer's redirect: wait for the question itself.
    page.locator("#question", has_text=question).wait_for()
    assert page.inner_text("#question") == question


def test_labelling_five_states_by_click_and_keyboard(app_world, browser, tmp_path: Path) -> None:
    tiny, db, url = app_world
    q = {x["id"]: x for x in tiny.bundle["queries"]}
    page = sign_in(browser, url, "ann")
    on_query(page, "q0000")
    assert page.inner_text("#taken") == f"Action taken: {q['q0000']['action_name']}"
    assert "0 of 5 answers" in page.inner_text("#progress")
    _check_screenshot(page, tmp_path)

    page.click("#verdict-good")  # 1: yes, by click
    on_query(page, "q0001")
    best_gold = (q["q0001"]["action"] + 1) % 4
    page.click("#verdict-bad")  # 2: no, then the best action, by click
    on_query(page, "q0001", "Which action would be best?")
    taken = page.locator(f"#best-{q['q0001']['action']}")
    assert taken.count() == 0  # the action taken is not offered as the best one
    page.click(f"#best-{best_gold}")

    on_query(page, "q0002")
    best = (q["q0002"]["action"] + 2) % 4
    page.keyboard.press("n")  # 3: no, then the best action, by keyboard
    on_query(page, "q0002", "Which action would be best?")
    page.keyboard.press(str(best + 1))

    on_query(page, "q0003")
    page.reload()  # mid-way: the same query comes back, nothing lost
    on_query(page, "q0003")
    page.goto(f"{url}/label")
    on_query(page, "q0003")
    assert "2 of 5 answers" in page.inner_text("#progress")  # gold answers are not labels
    page.keyboard.press("y")  # 4: yes, by keyboard
    on_query(page, "q0004")
    page.keyboard.press("c")  # 5: can't tell, by keyboard
    on_query(page, "q0005")

    # bob gets the next free query; ann cannot answer it while bob holds it
    bob = sign_in(browser, url, "bob")
    on_query(bob, "q0006")
    refused = page.goto(f"{url}/label/q0006")
    assert refused.status == 409
    assert page.inner_text("#error") == "query q0006 is being labelled by bob"
    csrf = page.get_attribute("input[name=csrf]", "value")  # the sign-out form carries it
    posted = page.request.post(f"{url}/label/q0006", form={"verdict": "good", "csrf": csrf})
    assert posted.status == 409 and "your answer was not recorded" in posted.text()
    bob_csrf = bob.get_attribute("input[name=csrf]", "value")
    bad = bob.request.post(f"{url}/label/q0006", form={"verdict": "bad", "best_action": "9",
                                                       "csrf": bob_csrf})
    assert bad.status == 400 and "unknown action 9" in bad.text()
    forged = bob.request.post(f"{url}/label/q0006", form={"verdict": "good"})  # no token
    assert forged.status == 403

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT query_id, labeller, verdict, best_action, gold FROM answers "
                            "ORDER BY id").fetchall()
    assert rows == [("q0000", "ann", "good", None, 0), ("q0001", "ann", "bad", best_gold, 1),
                    ("q0002", "ann", "bad", best, 0), ("q0003", "ann", "good", None, 1),
                    ("q0004", "ann", "unsure", None, 0)]

    summary = human_labels(tiny.bundle, db, tiny.states, tmp_path / "labels")
    labels = pq.read_table(tmp_path / "labels" / "labels.parquet")
    assert labels.schema == pq.read_table(tiny.labels).schema
    assert labels["order"].to_pylist() == [0, 1] and labels["feedback"].to_pylist() == [1, 0]
    assert labels["best_action"][1].as_py() == best
    ann = summary["labellers"][0]
    assert (ann["labeller"], ann["answers"], ann["gold_agreement"],
            ann["gold_best_action_agreement"]) == ("ann", 5, 1.0, 1.0)


def _check_screenshot(page, tmp_path: Path) -> None:
    """The labelling page as a person sees it: the clip playing, the stack, the three buttons."""
    page.wait_for_function("document.getElementById('clip').complete")
    sizes = page.evaluate("[clip.naturalWidth, clip.naturalHeight, stack.naturalWidth]")
    assert sizes == [168, 168, 4 * 168 + 3 * 4]
    for button in ("#verdict-good", "#verdict-bad", "#verdict-unsure"):
        assert page.is_visible(button)
    assert [page.inner_text(b) for b in ("#verdict-good", "#verdict-bad", "#verdict-unsure")] == [
        "Yes Y", "No N", "Can't tell C"]
    shot = tmp_path / "labelling.png"
    page.set_viewport_size({"width": 1000, "height": 560})
    page.screenshot(path=str(shot))
    image = Image.open(shot).convert("RGB")
    assert image.size == (1000, 560)
    box = page.locator("#clip").bounding_box()
    # the clip is on the screenshot: inside its box, the gray level of one of its rows (36..42)
    inside = image.crop((int(box["x"]) + 4, int(box["y"]) + 4, int(box["x"] + box["width"]) - 4,
                         int(box["y"] + box["height"]) - 4))
    colors = {color for _, color in inside.getcolors(maxcolors=4096)}
    assert colors & {((row * 37) % 200,) * 3 for row in range(36, 43)}
    if os.environ.get("FDT_TEACHER_SCREENSHOT"):  # how docs/teacher_labelling.png was made
        shutil.copy(shot, os.environ["FDT_TEACHER_SCREENSHOT"])
