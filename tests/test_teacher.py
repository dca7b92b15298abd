"""People's feedback: the query bundle, the answers' database, the labels made from answers, the
synthetic labeller, and their place in the plan and the config."""

from __future__ import annotations

import copy
import io
import json
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from fdt.config import ConfigError, validate_config
from fdt.plan import StagePlan, code_versions
from fdt.teacher.bundle import (
    BundleError,
    action_names,
    check_training_set,
    load_bundle,
    serving_order,
)
from fdt.teacher.cli import main
from fdt.teacher.clips import ClipSettings, clip_window
from fdt.teacher.export import answers_digest, export_answers, human_labels, majority
from fdt.teacher.report import build_teacher_report
from fdt.teacher.store import ConflictError, Store, StoreError
from fdt.teacher.synthetic import SyntheticParams, budget_rows, synthetic_labels
from tests.conftest import REPO
from tests.teacher_data import NAMES, STATE_POSITIONS, training_set, world

# --- the bundle ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return world(tmp_path_factory.mktemp("teacher"))


def test_action_names_are_ales_minimal_set() -> None:
    assert action_names("Breakout") == NAMES
    assert action_names("Pong") == ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]


def test_gold_queries_are_spread_between_the_real_ones() -> None:
    assert serving_order(5, 3) == [False, True, False, True, False, True, False, False]
    assert serving_order(4, 0) == [False] * 4
    assert serving_order(2, 1) == [False, True, False]


def test_clip_window_stays_inside_the_trajectory() -> None:
    clip = ClipSettings(before=16, after=8)
    assert clip_window(40, 30, 55, clip) == (30, 49)
    assert clip_window(100, 50, 104, clip) == (84, 104)
    assert clip_window(60, 0, 200, clip) == (44, 69)


def test_bundle_lists_states_in_rank_order_with_gold_mixed_in(tiny) -> None:
    queries = tiny.bundle["queries"]
    # 5 labelling queries (orders 0..4) and round(5 * 0.6) = 3 gold, spread over orders 5..11
    assert [q["order"] for q in queries] == [0, 5, 1, 8, 2, 11, 3, 4]
    assert [q["id"] for q in queries] == [f"q{i:04d}" for i in range(8)]
    assert [q["gold"] is not None for q in queries] == serving_order(5, 3)
    # the stub oracle agrees on even orders only
    assert [q["gold"]["feedback"] for q in queries if q["gold"]] == [0, 1, 0]
    actions = np.load(tiny.data / "actions.npy")
    for q in queries:
        assert q["position"] == STATE_POSITIONS[q["order"]]
        assert q["replay_index"] == q["position"] + 100
        assert q["action"] == actions[q["position"]] and q["action_name"] == NAMES[q["action"]]
    assert tiny.bundle["action_names"] == NAMES
    assert load_bundle(tiny.bundle_dir) == tiny.bundle


def test_clips_play_around_the_state_and_stacks_show_four_frames(tiny) -> None:
    by_order = {q["order"]: q for q in tiny.bundle["queries"]}
    # order 0: position 40 of trajectory [30, 55): rows 36..42 (4 before, 2 after)
    clip = Image.open(tiny.bundle_dir / by_order[0]["clip"])
    assert clip.n_frames == 7 and clip.size == (168, 168)
    clip.seek(4)  # the state itself, framed red
    assert clip.convert("RGB").getpixel((0, 0)) == (230, 30, 30)
    assert clip.info["duration"] == 300
    clip.seek(0)
    gray = clip.convert("RGB").getpixel((100, 100))
    assert gray[0] == gray[1] == gray[2] == (36 * 37) % 200  # row 36's frame, upscaled
    # order 11: position 54, the last row of its trajectory: rows 50..54
    assert Image.open(tiny.bundle_dir / by_order[11]["clip"]).n_frames == 5
    stack = Image.open(tiny.bundle_dir / by_order[0]["stack"])
    assert stack.size == (4 * 168 + 3 * 4, 168) and stack.mode == "L"
    assert [stack.getpixel((x * 172 + 1, 100)) for x in range(4)] == [
        (row * 37) % 200 for row in (37, 38, 39, 40)]


def test_a_bundle_of_another_training_set_is_refused(tiny, tmp_path: Path) -> None:
    check_training_set(tiny.bundle, tiny.data)
    other = training_set(tmp_path / "other", seed=1)
    with pytest.raises(BundleError, match="was built from training set .* not from the one in"):
        check_training_set(tiny.bundle, other)


# --- the answers' database --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_queries_are_locked_to_one_labeller_and_resumed(tiny, tmp_path: Path) -> None:
    clock = Clock()
    store = Store(tmp_path / "a.sqlite", tiny.bundle, clock=clock, lock_seconds=60)
    assert store.next_query("ann") == "q0000"
    assert store.next_query("bob") == "q0001"  # q0000 is ann's
    assert store.next_query("ann") == "q0000"  # a reload gives the same query back
    with pytest.raises(ConflictError, match="query q0000 is being labelled by ann"):
        store.answer("bob", "q0000", "good")
    store.answer("ann", "q0000", "good")
    with pytest.raises(ConflictError, match="ann has already answered query q0000"):
        store.answer("ann", "q0000", "unsure")
    assert store.next_query("ann") == "q0002"
    # a restart loses nothing: a new store on the same file knows the answer and the locks
    again = Store(tmp_path / "a.sqlite", tiny.bundle, clock=clock, lock_seconds=60)
    assert again.next_query("ann") == "q0002" and again.holder("q0001") == "bob"
    clock.now += 61  # bob's lock expires: his query goes to whoever asks next
    assert again.next_query("cat") == "q0001"
    assert again.progress("ann") == {"answers": 1, "budget": 5, "labelled": 1, "queries": 5,
                                     "mine": 1}


def test_unknown_answers_are_refused_before_anything_is_written(tiny, tmp_path: Path) -> None:
    store = Store(tmp_path / "a.sqlite", tiny.bundle)
    query = tiny.bundle["queries"][0]
    with pytest.raises(StoreError, match="unknown query 'q9999'"):
        store.answer("ann", "q9999", "good")
    with pytest.raises(StoreError, match="unknown answer 'maybe'"):
        store.answer("ann", "q0000", "maybe")
    with pytest.raises(StoreError, match=r"unknown action 7: Breakout has actions 0..3"):
        store.answer("ann", "q0000", "bad", 7)
    with pytest.raises(StoreError, match="is the one taken"):
        store.answer("ann", "q0000", "bad", query["action"])
    with pytest.raises(StoreError, match="say which action would be best"):
        store.answer("ann", "q0000", "bad")
    with pytest.raises(StoreError, match="labeller name"):
        store.add_labeller("<script>")
    assert store.progress("ann")["answers"] == 0


def test_concurrent_answers_to_one_query_count_once(tiny, tmp_path: Path) -> None:
    store = Store(tmp_path / "a.sqlite", tiny.bundle)
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def answer(name: str) -> None:
        start.wait()
        try:
            store.hand(name, "q0000")
            store.answer(name, "q0000", "good")
            outcomes.append("ok")
        except ConflictError as err:
            outcomes.append(str(err))

    threads = [threading.Thread(target=answer, args=(f"p{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 1
    assert all("is being labelled by p" in o or "already has its 1 answer(s)" in o
               for o in outcomes if o != "ok")
    assert store.progress()["answers"] == 1


def test_answers_only_to_the_query_handed_to_the_labeller(tiny, tmp_path: Path) -> None:
    """Issue 28: a query never served to a labeller was accepted from them."""
    store = Store(tmp_path / "a.sqlite", tiny.bundle)
    with pytest.raises(ConflictError, match="query q0003 was not handed to ann .*your answer was "
                       "not recorded"):
        store.answer("ann", "q0003", "good")
    assert store.next_query("ann") == "q0000"
    with pytest.raises(ConflictError, match="query q0003 was not handed to ann"):
        store.answer("ann", "q0003", "good")  # holding another query is no licence either
    with pytest.raises(ConflictError, match="ann holds query q0000; answer it first"):
        store.hand("ann", "q0003")
    store.answer("ann", "q0000", "good")
    assert store.progress()["answers"] == 1


def test_a_query_asked_of_several_is_handed_to_several(tiny, tmp_path: Path) -> None:
    """Issue 28: with --answers-per-query N > 1, one labeller's lock told the others "nothing
    left to label". Now a query is handed to up to N labellers at once."""
    store = Store(tmp_path / "a.sqlite", tiny.bundle, answers_per_query=3)
    queries = len(tiny.bundle["queries"])
    handed = [store.next_query(f"p{i:02d}") for i in range(20)]
    # 3 at a time per query, in serving order, while queries last.
    assert handed == [tiny.bundle["queries"][i // 3]["id"] for i in range(20)]
    store.answer("p00", "q0000", "good")
    # p00 is free again and gets the first query with room left: q0006, held by p18 and p19.
    assert queries >= 7 and store.next_query("p00") == "q0006"
    with pytest.raises(ConflictError, match="query q0000 is being labelled by p01, p02"):
        store.hand("late", "q0000")
    store.answer("p01", "q0000", "bad", (tiny.bundle["queries"][0]["action"] + 1) % 4)
    store.answer("p02", "q0000", "unsure")
    with pytest.raises(ConflictError, match="query q0000 already has its 3 answer\\(s\\)"):
        store.hand("late", "q0000")


def test_a_database_of_another_bundle_is_refused(tiny, tmp_path: Path) -> None:
    Store(tmp_path / "a.sqlite", tiny.bundle)
    other = copy.deepcopy(tiny.bundle)
    other["bundle_id"] = "0" * 16
    with pytest.raises(StoreError, match="holds answers to query bundle .* not to bundle 0000"):
        Store(tmp_path / "a.sqlite", other)
    other["training_set"] = "f" * 16
    with pytest.raises(StoreError, match="holds answers about training set"):
        Store(tmp_path / "a.sqlite", other)


# --- answers to labels ------------------------------------------------------------------------------


def give(store: Store, labeller: str, query_id: str, verdict: str,
         best: int | None = None) -> None:
    """Answer as the app does: the query handed to the labeller first."""
    store.hand(labeller, query_id)
    store.answer(labeller, query_id, verdict, best)


def answer_all(store: Store, answers: dict[str, list[tuple[str, str, int | None]]]) -> None:
    for query_id, given in answers.items():
        for labeller, verdict, best in given:
            give(store, labeller, query_id, verdict, best)


def test_majority_decides_and_ties_are_dropped(tiny, tmp_path: Path) -> None:
    store = Store(tmp_path / "a.sqlite", tiny.bundle, answers_per_query=3)
    q = {x["id"]: x for x in tiny.bundle["queries"]}
    other = {i: (q[i]["action"] + 1) % 4 for i in q}
    third = {i: (q[i]["action"] + 2) % 4 for i in q}
    answer_all(store, {
        "q0000": [("ann", "good", None), ("bob", "good", None), ("cat", "bad", other["q0000"])],
        "q0002": [("ann", "bad", other["q0002"]), ("bob", "bad", other["q0002"]),
                  ("cat", "good", None)],
        "q0004": [("ann", "bad", other["q0004"]), ("bob", "bad", third["q0004"]),
                  ("cat", "unsure", None)],
        "q0006": [("ann", "good", None), ("bob", "bad", other["q0006"])],  # a tie
        "q0007": [("ann", "unsure", None)],  # no vote
        "q0001": [("ann", "good", None)],  # gold: no label from it
    })
    decision = majority(tiny.bundle, store_answers(tmp_path / "a.sqlite"))
    assert decision["decided"] == {"q0000": (1, q["q0000"]["action"]),
                                   "q0002": (0, other["q0002"]), "q0004": (0, -1)}
    assert decision["ties"] == 1 and decision["unanswered"] == 1
    assert decision["majority_agreement"] == pytest.approx(6 / 8)


def store_answers(db: Path) -> list[dict]:
    from fdt.teacher.store import read_answers

    return read_answers(db)[1]


def test_human_labels_have_the_oracle_labels_schema(tiny, tmp_path: Path) -> None:
    store = Store(tmp_path / "a.sqlite", tiny.bundle)
    q = {x["id"]: x for x in tiny.bundle["queries"]}
    best = (q["q0002"]["action"] + 3) % 4
    answer_all(store, {"q0000": [("ann", "good", None)], "q0002": [("ann", "bad", best)],
                       "q0001": [("ann", "bad", (q["q0001"]["action"] + 1) % 4)],
                       "q0003": [("ann", "bad", (q["q0003"]["action"] + 1) % 4)],
                       "q0004": [("bob", "unsure", None)]})
    summary = human_labels(tiny.bundle, tmp_path / "a.sqlite", tiny.states, tmp_path / "out")
    labels = pq.read_table(tmp_path / "out" / "labels.parquet")
    oracle = pq.read_table(tiny.labels)
    assert labels.schema == oracle.schema
    assert labels["order"].to_pylist() == [0, 1]
    assert labels["feedback"].to_pylist() == [1, 0]
    assert labels["best_action"].to_pylist() == [oracle["best_action"][0].as_py(), best]
    assert labels["oracle_action"].to_pylist() == [q["q0000"]["action"], best]
    assert summary["states"] == {"count": 2, "positives": 1, "negatives": 1, "agreement": 0.5}
    ann = next(r for r in summary["labellers"] if r["labeller"] == "ann")
    # gold: order 5 (oracle: bad, action+1) and order 8 (oracle: good); ann said bad to both
    assert ann["gold_answers"] == 2 and ann["gold_agreement"] == 0.5
    assert ann["gold_best_action_agreement"] == 1.0
    # the same through the JSON export
    export_answers(tmp_path / "a.sqlite", tmp_path / "answers.json")
    human_labels(tiny.bundle, tmp_path / "answers.json", tiny.states, tmp_path / "out2")
    assert pq.read_table(tmp_path / "out2" / "labels.parquet").equals(labels)


def test_answers_digest_follows_the_answers_not_their_times(tiny, tmp_path: Path) -> None:
    clock = Clock()
    first = Store(tmp_path / "a.sqlite", tiny.bundle, clock=clock)
    give(first, "ann", "q0000", "good")
    clock.now += 50
    second = Store(tmp_path / "b.sqlite", tiny.bundle, clock=clock)
    give(second, "ann", "q0000", "good")
    digest = answers_digest([tmp_path / "a.sqlite"])
    assert digest == answers_digest([tmp_path / "b.sqlite"])
    give(second, "ann", "q0002", "unsure")
    assert answers_digest([tmp_path / "b.sqlite"]) != digest
    assert answers_digest([tmp_path / "none.sqlite"]) != digest


def test_answers_of_another_bundle_make_no_labels(tiny, tmp_path: Path) -> None:
    give(Store(tmp_path / "a.sqlite", tiny.bundle), "ann", "q0000", "good")
    other = {**tiny.bundle, "bundle_id": "1" * 16}
    with pytest.raises(StoreError, match="answers are to query bundle .* not to 1111"):
        human_labels(other, tmp_path / "a.sqlite", tiny.states, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_exports_and_summarises(tiny, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    give(Store(tmp_path / "a.sqlite", tiny.bundle), "ann", "q0001", "good")
    assert main(["export", str(tmp_path / "a.sqlite"), str(tmp_path / "e.json")]) == 0
    export = json.loads((tmp_path / "e.json").read_text())
    assert [a["query_id"] for a in export["answers"]] == ["q0001"]
    assert main(["summary", str(tmp_path / "a.sqlite"), str(tiny.bundle_dir)]) == 0
    rows = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert rows[0]["labeller"] == "ann" and rows[0]["gold_agreement"] == 0.0
    assert main(["summary", str(tmp_path / "missing.sqlite"), str(tiny.bundle_dir)]) == 2
    assert "no answers database there" in capsys.readouterr().err


# --- the synthetic labeller ---------------------------------------------------------------------------


def test_budget_schedules_choose_states_by_hand() -> None:
    rng = np.random.default_rng(0)
    assert budget_rows(10, 3, "rank", rng).tolist() == [0, 1, 2]
    assert budget_rows(10, 4, "spread", rng).tolist() == [0, 3, 6, 9]
    assert budget_rows(10, None, "spread", rng).tolist() == list(range(10))
    drawn = budget_rows(10, 4, "random", np.random.default_rng(3))
    assert len(drawn) == 4 and drawn.tolist() == sorted(set(drawn.tolist()))


def test_synthetic_labels_flip_with_epsilon(tiny, tmp_path: Path) -> None:
    truth = pq.read_table(tiny.labels)["feedback"].to_numpy()
    clean = synthetic_labels(tiny.labels, tmp_path / "clean", SyntheticParams(budget=6))
    table = pq.read_table(tmp_path / "clean" / "labels.parquet")
    assert table.schema == pq.read_table(tiny.labels).schema
    assert table["feedback"].to_numpy().tolist() == truth[:6].tolist()
    assert clean["flipped"] == 0 and clean["states"]["count"] == 6
    flipped = synthetic_labels(tiny.labels, tmp_path / "all", SyntheticParams(epsilon=1.0))
    assert pq.read_table(tmp_path / "all" / "labels.parquet")["feedback"].to_numpy().tolist() == (
        1 - truth).tolist()
    assert flipped["flipped"] == 12


def test_report_section_counts_answers_per_labeller(tiny, tmp_path: Path) -> None:
    store = Store(tmp_path / "a.sqlite", tiny.bundle)
    give(store, "ann", "q0000", "good")
    give(store, "bob", "q0001", "good")
    section = build_teacher_report([("Breakout", 7, tiny.bundle_dir)], [tmp_path / "a.sqlite"],
                                   tmp_path / "results", tmp_path / "report", "human")
    assert [t["csv"] for t in section["tables"]] == ["queries.csv", "labellers.csv"]
    assert [f["png"] for f in section["figures"]] == ["labelling.png"]  # the headline
    queries = (tmp_path / "report" / "queries.csv").read_text().splitlines()
    assert queries[1].startswith(f"Breakout,7,{tiny.bundle['bundle_id']},5,3,2,1,0,")
    labellers = (tmp_path / "report" / "labellers.csv").read_text().splitlines()
    assert [line.split(",")[2] for line in labellers[1:]] == ["ann", "bob"]
    assert json.loads((tmp_path / "report" / "section.json").read_text()) == section


# --- the plan and the config -------------------------------------------------------------------------

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
CODE = code_versions()


def plan(oracle: dict | None = None, **sections: dict) -> StagePlan:
    config = copy.deepcopy(DEFAULT)
    config["oracle"].update(oracle or {})
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return StagePlan(validate_config(config), CODE)


def test_human_labels_are_keyed_by_the_answers(tiny, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    base = plan()
    human = plan({"kind": "human"})
    # the oracle standing under the people is the offline one, its folder shared
    assert human.oracle("Breakout").key == base.oracle("Breakout").key
    assert human.labels("Breakout").key == base.labels("Breakout").key
    assert human.model("Breakout", "fdt").key != base.model("Breakout", "fdt").key
    assert human.model("Breakout", "dt").key == base.model("Breakout", "dt").key
    assert human.answer_files("Breakout") == ["feedback/Breakout/seed123/answers.sqlite"]
    before = human.model("Breakout", "fdt").key
    give(Store(tmp_path / "feedback/Breakout/seed123/answers.sqlite", tiny.bundle), "ann",
         "q0000", "good")
    after = plan({"kind": "human"})
    assert after.teacher_labels("Breakout").inputs == (after.queries("Breakout").key,)
    assert after.model("Breakout", "fdt").key != before
    assert after.feedback_labels("Breakout").key == after.teacher_labels("Breakout").key


def test_synthetic_noise_moves_the_labels_and_fdt_only() -> None:
    noisy = plan({"kind": "synthetic", "synthetic": {"epsilon": 0.1}})
    clean = plan({"kind": "synthetic"})
    assert noisy.teacher_labels("Breakout").inputs == (clean.labels("Breakout").key,)
    assert noisy.teacher_labels("Breakout").key != clean.teacher_labels("Breakout").key
    assert noisy.model("Breakout", "fdt").key != clean.model("Breakout", "fdt").key
    assert noisy.queries("Breakout").key == clean.queries("Breakout").key
    assert plan().feedback_labels("Breakout").key == plan().labels("Breakout").key
    # gold queries read the oracle's labels; without gold the bundle does not
    assert plan(teacher={"gold_rate": 0.0}).queries("Breakout").inputs == (
        plan().mining("Breakout").key,)


def test_config_refuses_human_labels_it_cannot_find() -> None:
    with pytest.raises(ConfigError, match=r"at oracle.human.answers: 'answers.sqlite' must name "
                                          r"\{game\} and \{seed\}"):
        plan({"kind": "human", "human": {"answers": "answers.sqlite"}})
    with pytest.raises(ConfigError, match="at teacher.queries: oracle kind 'human'"):
        plan({"kind": "human"}, teacher={"queries": 0})
    with pytest.raises(ConfigError, match="oracle.base"):
        plan({"kind": "synthetic", "base": "human"})


def test_bundle_json_round_trips(tiny) -> None:
    text = (tiny.bundle_dir / "bundle.json").read_text()
    assert json.loads(text)["bundle_id"] == tiny.bundle["bundle_id"]
    assert io.BytesIO((tiny.bundle_dir / "stacks" / "q0000.png").read_bytes()).read(8) == (
        b"\x89PNG\r\n\x1a\n")


def test_noise_budget_runs_are_found_and_tabulated(tiny, tmp_path: Path) -> None:
    import pandas as pd

    root = tmp_path / "results" / "Breakout"

    def record(folder: str, **fields: object) -> Path:
        path = root / folder / "seed7"
        path.mkdir(parents=True)
        (path / "params.json").write_text(json.dumps(fields))
        return path

    for key, epsilon in (("L1", 0.1), ("L2", 0.0)):
        record(f"teacher/labels/{key}", stage="teacher_labels", key=key, params={
            "kind": "synthetic", "epsilon": epsilon, "budget": 5, "schedule": "rank"})
    for model, labels in (("M1", "L1"), ("M2", "L2"), ("M3", "oracle")):
        record(f"models/fdt/{model}", key=model, inputs=["dataset", labels])
    for run, model, returns in (("E1", "M1", [1.0, 3.0]), ("E2", "M2", [4.0, 6.0]),
                                ("E3", "M3", [9.0])):
        folder = record(f"eval/fdt/{run}", key=run, inputs=[model])
        pd.DataFrame({"return": returns, "train_seed": 7}).to_parquet(folder / "episodes.parquet")
    section = build_teacher_report([("Breakout", 7, tiny.bundle_dir)], [None], tmp_path / "results",
                                   tmp_path / "report", "synthetic")
    study = pd.read_csv(tmp_path / "report" / "noise_budget.csv")
    assert study[["epsilon", "budget", "labels_key", "episodes", "mean_return"]].values.tolist() == [
        [0.0, 5, "L2", 2, 5.0], [0.1, 5, "L1", 2, 2.0]]
    assert study["std_return"].round(4).tolist() == [1.4142, 1.4142]
    assert [f["png"] for f in section["figures"]] == ["noise_budget.png", "labelling.png"]
    assert (tmp_path / "report" / "noise_budget.png").read_bytes()[:4] == b"\x89PNG"
    assert section["tables"][-1]["csv"] == "noise_budget.csv"


def test_serve_refuses_a_bundle_of_another_training_set(tiny, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    other = training_set(tmp_path / "other", seed=1)
    assert main(["serve", str(tiny.bundle_dir), "--training-set", str(other)]) == 2
    assert "was built from training set" in capsys.readouterr().err
