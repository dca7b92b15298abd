"""Tracking under concurrency (parallel jobs logging to one new SQLite store lose nothing) and
with an unreachable tracking server (the job warns and trains on, without stalling)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fdt.tracking import CALL_DEADLINE, HTTP_LIMITS, Tracker, default_tracking_uri, store_lock
from tests.conftest import REPO
from tests.loopback import free_port

JOB = """
import sys, warnings
from fdt.tracking import Tracker
i, uri, artifacts = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    tracker = Tracker(uri, run_name=f"job{i}", tags={"model": "dt", "seed": i},
                      artifact_root=artifacts)
    tracker.start()
    tracker.log_params({f"p{k}": k for k in range(20)})
    for step in range(40):
        tracker.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    tracker.end("FINISHED")
failures = [str(w.message) for w in caught if "MLflow tracking" in str(w.message)]
print("\\n".join(failures))
sys.exit(1 if failures else 0)
"""


def test_store_lock_excludes_other_holders(tmp_path: Path) -> None:
    """A second holder (here a thread, with its own lock file handle) waits for the first."""
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    events: list[str] = []
    first_in = threading.Event()

    def first() -> None:
        with store_lock(uri):
            events.append("first in")
            first_in.set()
            time.sleep(0.3)
            events.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(timeout=10)
    with store_lock(uri):
        events.append("second in")
    thread.join()
    assert events == ["first in", "first out", "second in"]
    with store_lock("http://127.0.0.1:1"):  # only a SQLite store has a file to lock
        pass


@pytest.mark.slow
def test_parallel_jobs_share_a_new_store(tmp_path: Path) -> None:
    """Six jobs start at once on a store that does not exist yet (the first creates its tables
    under a lock) and write metrics side by side (a locked database is retried)."""
    uri = f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}"
    script = tmp_path / "job.py"
    script.write_text(JOB)
    jobs = [subprocess.Popen([sys.executable, str(script), str(i), uri, str(tmp_path / "art")],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(6)]
    outcomes = [(job.wait(timeout=300), job.stdout.read()) for job in jobs]
    assert [code for code, _ in outcomes] == [0] * 6, [out for _, out in outcomes]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("fdt").experiment_id])
    assert sorted(r.data.tags["seed"] for r in runs) == [str(i) for i in range(6)]
    assert all(r.info.status == "FINISHED" and len(r.data.params) == 20 for r in runs)
    for run in runs:
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 40


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """An http URI on loopback whose socket accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):  # the listener closes at the end of the test
            while True:
                held.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for conn in held:
            conn.close()


@contextlib.contextmanager
def stalling_server() -> Iterator[str]:
    """An http URI on loopback that answers GET /health (200) and then never answers again."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):  # the listener closes at the end of the test
            while True:
                conn = listener.accept()[0]
                if conn.recv(65536).startswith(b"GET /health "):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
                    conn.close()
                else:
                    held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for conn in held:
            conn.close()


@contextlib.contextmanager
def closed_port() -> Iterator[str]:
    """An http URI on a loopback port nobody listens on (connections are refused)."""
    yield f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize("server", [closed_port, silent_server], ids=["refused", "silent"])
def test_unreachable_server_disables_tracking_quickly(
        server: Callable[[], contextlib.AbstractContextManager[str]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A job whose tracking server is down warns once, within seconds, and trains on untracked
    (MLflow's own retries used to hold it for 260 s when refused, 1,223 s when silent)."""
    for name in HTTP_LIMITS:  # the job's settings, restored afterwards
        monkeypatch.delenv(name, raising=False)
    with server() as uri, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        began = time.monotonic()
        tracker = Tracker(uri, run_name="x", tags={"seed": 1}, artifact_root=tmp_path / "art")
        run_id = tracker.start(None)  # as fdt.models.trainer.train does, then logs as it trains
        tracker.log_params({"batch_size": 4})
        tracker.log_metrics({"loss": 1.0}, step=0)
        tracker.log_artifact(tmp_path)
        tracker.end("FINISHED")
        elapsed = time.monotonic() - began
    # The bound is functional (a job must not hang), so generous: the check itself takes < 10 s.
    assert elapsed < 30, f"took {elapsed:.1f} s"
    assert run_id is None and tracker.failed and tracker.run_id is None
    messages = [str(w.message) for w in caught if "MLflow tracking" in str(w.message)]
    assert len(messages) == 1, messages
    assert uri in messages[0] and "/health" in messages[0] and "untracked" in messages[0]


def test_a_server_that_answers_the_check_then_stalls_is_given_up_quickly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 28 item 10c: /health answers, the first MLflow call then waits for ever; it held the
    job 106 s (MLflow's timeout times its retries), now CALL_DEADLINE, once."""
    for name in HTTP_LIMITS:
        monkeypatch.delenv(name, raising=False)
    with stalling_server() as uri, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        began = time.monotonic()
        tracker = Tracker(uri, run_name="x", tags={"seed": 1}, artifact_root=tmp_path / "art")
        run_id = tracker.start(None)
        tracker.log_params({"batch_size": 4})
        tracker.log_metrics({"loss": 1.0}, step=0)
        tracker.end("FINISHED")
        elapsed = time.monotonic() - began
    assert CALL_DEADLINE <= elapsed < CALL_DEADLINE + 10, f"took {elapsed:.1f} s"
    assert run_id is None and tracker.failed
    messages = [str(w.message) for w in caught if "MLflow tracking" in str(w.message)]
    assert messages == [f"MLflow tracking at {uri} failed while starting the run (TimeoutError: no "
                        "answer within 15 s); training goes on untracked"]


def test_mlflow_http_retries_are_bounded_unless_the_user_set_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in HTTP_LIMITS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")  # the user's choice wins
    with closed_port() as uri, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Tracker(uri, run_name="x", tags={}).start()
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 300
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == int(HTTP_LIMITS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])


def test_a_finished_stage_is_one_run_with_its_params_key_and_results(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fdt.tracking import track_finished_stage

    monkeypatch.chdir(tmp_path)  # the default store: results/mlflow.db under the working dir
    run_id = track_finished_stage(
        "Breakout-dt-seed1-eval",
        {"game": "Breakout", "stage": "evaluate", "key": "abc", "model_key": "m0d"},
        {"protocol": "fdt", "setups": ["argmax"], "nested": {"episodes": 2}},
        {"scores": {"argmax+noop.target90": {"mean": 3.5, "setup": "argmax"}}, "episodes": 2,
         "ok": True, "nan": float("nan")})
    from mlflow.tracking import MlflowClient

    run = MlflowClient(default_tracking_uri()).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["model_key"] == "m0d" and run.data.tags["stage"] == "evaluate"
    assert run.data.params["nested.episodes"] == "2" and run.data.params["protocol"] == "fdt"
    assert run.data.metrics == {"scores.argmax_noop.target90.mean": 3.5, "episodes": 2.0}
    monkeypatch.setenv("FDT_TRACKING", "off")
    assert track_finished_stage("x", {}, {}, {"a": 1}) is None


def test_a_job_run_ends_finished_or_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    from fdt.tracking import job_run

    monkeypatch.chdir(tmp_path)
    with job_run("ok", {"stage": "train"}) as tracker:
        tracker.start()
    with pytest.raises(KeyboardInterrupt), job_run("killed", {"stage": "train"}) as failing:
        failing.start()
        raise KeyboardInterrupt
    client = MlflowClient(default_tracking_uri())
    assert client.get_run(tracker.run_id).info.status == "FINISHED"
    assert client.get_run(failing.run_id).info.status == "FAILED"
    monkeypatch.setenv("FDT_TRACKING", "off")
    with job_run("off", {}) as none:
        assert none is None
