"""Experiment tracking in MLflow: one run per job, tagged so reruns and sweeps are findable.

The store is a SQLite file under results/ unless MLFLOW_TRACKING_URI names another. Tracking is a
convenience, never a reason to lose a training run: every failure is a warning, after which the
tracker stops trying.

Parallel jobs share the SQLite store: the first to open it creates its tables while holding a file
lock (MLflow's schema migrations are not safe to run twice at once), and a write that finds the
database locked by another job is retried with backoff.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

DEFAULT_STORE = "results/mlflow.db"
DEFAULT_ARTIFACTS = "results/mlartifacts"
EXPERIMENT = "fdt"


def default_tracking_uri(root: str | Path = ".") -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite store under `root`/results/."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(Path(root) / DEFAULT_STORE).resolve()}"


RETRIES = 8


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock beside a SQLite store (nothing to lock for other stores)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    path = Path(uri.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def retry_when_locked(action: Callable[[], Any], attempts: int = RETRIES) -> Any:
    """Run `action`, again after a pause while another process holds the SQLite database."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception as err:
            if "locked" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2 ** attempt)
    raise AssertionError("unreachable")


class Tracker:
    """A lazily started MLflow run; `start()` returns its id so a resumed job continues it."""

    def __init__(self, uri: str, *, run_name: str, tags: Mapping[str, Any],
                 experiment: str = EXPERIMENT, artifact_root: str | Path | None = None) -> None:
        self.uri = uri
        self.run_name = run_name
        self.tags = {k: str(v) for k, v in tags.items()}
        self.experiment = experiment
        self.artifact_root = Path(artifact_root or DEFAULT_ARTIFACTS).resolve()
        self.client: Any = None
        self.run_id: str | None = None
        self.failed = False

    def _guard(self, what: str, action: Any) -> Any:
        if self.failed:
            return None
        try:
            return retry_when_locked(action)
        except Exception as err:  # tracking must never stop training
            self.failed = True
            warnings.warn(f"MLflow tracking at {self.uri} failed while {what} ({type(err).__name__}:"
                          f" {err}); training goes on untracked", stacklevel=3)
            return None

    def start(self, run_id: str | None = None) -> str | None:
        return self._guard("starting the run", lambda: self._start(run_id))

    def _start(self, run_id: str | None) -> str:
        from mlflow.tracking import MlflowClient

        with store_lock(self.uri):  # the first job creates the tables; the others wait for it
            self.client = MlflowClient(tracking_uri=self.uri)
            experiment_id = self._experiment_id()
        if run_id is not None:
            try:
                self.client.update_run(run_id, status="RUNNING")
                self.run_id = run_id
                return run_id
            except Exception:  # the old run is gone (another store): start a new one
                pass
        run = self.client.create_run(experiment_id, run_name=self.run_name, tags=self.tags)
        self.run_id = run.info.run_id
        return self.run_id

    def _experiment_id(self) -> str:
        # Parallel jobs may race to create the experiment: whoever loses finds it on retry.
        for attempt in range(5):
            found = self.client.get_experiment_by_name(self.experiment)
            if found is not None:
                return found.experiment_id
            try:
                return self.client.create_experiment(
                    self.experiment, artifact_location=self.artifact_root.as_uri())
            except Exception:
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def log_params(self, params: Mapping[str, Any]) -> None:
        def log() -> None:
            from mlflow.entities import Param

            existing = self.client.get_run(self.run_id).data.params
            new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
            if new:
                self.client.log_batch(self.run_id, params=new)

        if self.run_id is not None:
            self._guard("logging params", log)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        def log() -> None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step)
                                                        for k, v in metrics.items()])

        if self.run_id is not None:
            self._guard("logging metrics", log)

    def log_artifact(self, path: str | Path) -> None:
        if self.run_id is not None:
            self._guard(f"storing {path}", lambda: self.client.log_artifact(self.run_id, str(path)))

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            self._guard("ending the run", lambda: self.client.set_terminated(self.run_id, status))
