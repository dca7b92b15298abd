"""Human mode end to end in a real browser: a short online loop on Hopper-v5 trains while
Chromium answers its pairs through the app's /compare page; the answers enter SQLite and the
reward model's training set grows by them at its retrainings."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from fdt.online.human import human_app
from fdt.online.loop import QUERIES, OnlineLoop, OnlineParams
from fdt.teacher.app import BackgroundServer
from tests.test_online import TINY
from tests.test_teacher_browser import browser  # noqa: F401 (fixture)

pytest.importorskip("mujoco")


def answered(db: Path) -> int:
    if not db.is_file():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM pref_comparisons").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


@pytest.mark.slow
def test_chromium_answers_while_the_agent_trains(browser, tmp_path: Path,  # noqa: F811
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    run, db = tmp_path / "run", tmp_path / "answers.sqlite"
    params = OnlineParams(**TINY, mode="human", human_wait_seconds=0.2)
    loop = OnlineLoop(params, run, db)
    # A person answers slower than this tiny agent plays: each retraining waits (up to 60 s)
    # for one more answer than the last, as a real run's many steps between retrainings would.
    retrain = OnlineLoop._retrain

    def patient(self: OnlineLoop, step: int) -> None:
        want = len(self.state.comparisons) + 1
        deadline = time.monotonic() + 60
        while answered(db) < min(want, len(self.state.queued) or want) and time.monotonic() < deadline:
            time.sleep(0.1)
        retrain(self, step)
    monkeypatch.setattr(OnlineLoop, "_retrain", patient)
    result: dict = {}
    errors: list[BaseException] = []

    def train() -> None:
        try:
            result.update(loop.run())
        except BaseException as err:  # noqa: BLE001 - shown by the assertion below
            errors.append(err)

    with BackgroundServer(human_app(run, db, params.env)) as url:
        thread = threading.Thread(target=train, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not (run / QUERIES).is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        page = browser.new_context().new_page()
        page.goto(url)
        page.fill("#name", "ann")
        # each answer (and the sign-in) posts a form: wait for that navigation to end, or the
        # next goto races it and one of the two is aborted (net::ERR_ABORTED)
        with page.expect_navigation():
            page.click("#start")
        returns = loop.store.returns_view()
        while thread.is_alive():
            page.goto(f"{url}/compare")
            if page.locator("#question").count() == 0:
                time.sleep(0.2)  # every queued pair is answered: wait for the next retraining
                continue
            assert page.eval_on_selector("#left-clip", "img => img.complete && img.naturalWidth > 0")
            left = int(page.input_value("input[name=left]"))
            right = int(page.input_value("input[name=right]"))
            with page.expect_navigation():
                page.keyboard.press("l" if returns[left] >= returns[right] else "r")
        thread.join()
    assert not errors, errors
    history = loop.model.history
    assert history[0]["examples"] >= 2  # rl-teacher waits for 75% of the 3 pretraining labels
    assert history[-1]["examples"] > history[0]["examples"]  # grown by the browser's answers
    assert result["labels"] == len(loop.state.comparisons) <= answered(db)
    assert len(loop.state.comparisons) > 3
