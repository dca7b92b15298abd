"""Experiment tracking in MLflow: one run per job, tagged so reruns and sweeps are findable.

The store is a SQLite file under results/ unless MLFLOW_TRACKING_URI names another. Tracking is a
convenience, never a reason to lose a training run: every failure is a warning, after which the
tracker stops trying.

A tracking server (an http(s) URI) is checked once, with a short timeout, before the run starts: an
unreachable one costs a job a few seconds and one warning, not minutes of MLflow's own retries.
Those retries are bounded too (see `bound_http_retries`), in case the server goes away mid-job,
and so is each call as a whole (`CALL_DEADLINE`), in case it answers the check and then stalls.

Parallel jobs share the SQLite store: the first to open it creates its tables while holding a file
lock (MLflow's schema migrations are not safe to run twice at once), and a write that finds the
database locked by another job is retried with backoff.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

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
    with FileLock(f"{path}.lock"):
        yield


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


# MLflow's defaults (7 retries with backoff factor 2, 120 s per request) add up to minutes before
# an unreachable server gives an error; a job rather loses its tracking than waits that long.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
CHECK_TIMEOUT = (3.0, 5.0)  # seconds to connect, then to wait for the answer
# A server that answers the check and then stalls would hold each call for MLflow's timeout
# times its retries (106 s): a call to a server gets this long before tracking gives up.
CALL_DEADLINE = 15.0
ARTIFACT_DEADLINE = 120.0  # an upload of a model file may take longer than a call


def bound_http_retries() -> None:
    """Bound MLflow's HTTP retries and timeouts for this process, unless the user set them."""
    for name, value in HTTP_LIMITS.items():
        os.environ.setdefault(name, value)


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def unreachable(uri: str, timeout: tuple[float, float] = CHECK_TIMEOUT) -> str | None:
    """Why the tracking server at `uri` cannot be used (None when it answers).

    One GET of its health endpoint, no retries. Any answer short of a server error counts: the
    point is to find a dead or silent server quickly, not to validate it (MLflow's calls do that).
    """
    import requests

    url = f"{uri.rstrip('/')}/health"
    try:
        response = requests.get(url, timeout=timeout, allow_redirects=False)
    except requests.RequestException as err:
        return f"GET {url} failed: {type(err).__name__}: {err}"
    if response.status_code >= 500:
        return f"GET {url} answered HTTP {response.status_code}"
    return None


def within(deadline: float, action: Callable[[], Any]) -> Any:
    """`action()`, or TimeoutError when it has not returned within `deadline` seconds. It runs in
    a daemon thread, left to MLflow's own timeouts when abandoned, so it never holds the job's
    exit."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = action()
        except BaseException as err:  # handed to the caller below
            outcome["error"] = err

    thread = threading.Thread(target=run, name="mlflow-call", daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {deadline:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


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

    def _disable(self, what: str, problem: str, stacklevel: int) -> None:
        self.failed = True
        warnings.warn(f"MLflow tracking at {self.uri} failed while {what} ({problem}); training"
                      " goes on untracked", stacklevel=stacklevel + 1)

    def _guard(self, what: str, action: Any, deadline: float = CALL_DEADLINE) -> Any:
        if self.failed:
            return None
        try:
            if is_server(self.uri):  # a server may stall; a SQLite store is a local file
                return within(deadline, action)
            return retry_when_locked(action)
        except Exception as err:  # tracking must never stop training
            self._disable(what, f"{type(err).__name__}: {err}", stacklevel=3)
            return None

    def start(self, run_id: str | None = None) -> str | None:
        """Start (or continue) the run; None, after one warning, when tracking is unavailable."""
        if self.failed:
            return None
        if is_server(self.uri):
            bound_http_retries()
            problem = unreachable(self.uri)
            if problem is not None:
                self._disable("checking the server", problem, stacklevel=2)
                return None
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
            self._guard(f"storing {path}", lambda: self.client.log_artifact(self.run_id, str(path)),
                        ARTIFACT_DEADLINE)

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            self._guard("ending the run", lambda: self.client.set_terminated(self.run_id, status))


def tracking_enabled() -> bool:
    """`FDT_TRACKING=off` turns tracking off for every job."""
    return os.environ.get("FDT_TRACKING", "on") != "off"


def flat_values(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings or results as one level, keys joined by '.' (MLflow's params and
    metrics are flat)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_values(value, f"{name}."))
        else:
            out[name] = value
    return out


def mlflow_names(values: Mapping[str, Any]) -> dict[str, Any]:
    """Keys MLflow accepts (letters, digits, _ - . / and spaces): 'argmax+noop' -> 'argmax_noop'."""
    return {re.sub(r"[^\w\-. /]", "_", k): v for k, v in values.items()}


def numeric(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers among flat values (booleans and text are not metrics)."""
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def track_finished_stage(run_name: str, tags: Mapping[str, Any], params: Mapping[str, Any],
                         metrics: Mapping[str, Any], experiment: str = EXPERIMENT) -> str | None:
    """One MLflow run for a short stage that has finished (evaluation, the oracle, mining,
    labelling): its params, key and results, tagged like the training runs so an evaluation's
    run names its model's key (`model_key`) and the two can be found together. Returns the run
    id, or None when tracking is off or unavailable (a warning, never a failed job)."""
    if not tracking_enabled():
        return None
    tracker = Tracker(default_tracking_uri(), run_name=run_name, tags=tags, experiment=experiment)
    if tracker.start() is None:
        return None
    tracker.log_params(mlflow_names(flat_values(params)))
    tracker.log_metrics(mlflow_names(numeric(flat_values(metrics))), step=0)
    tracker.end("FINISHED")
    return tracker.run_id


@contextlib.contextmanager
def job_run(run_name: str, tags: Mapping[str, Any],
            experiment: str = EXPERIMENT) -> Iterator[Tracker | None]:
    """The tracker of a long job (None when tracking is off): the job starts it, and its run
    ends FINISHED when the job does, or FAILED when the job raises or is interrupted."""
    tracker = Tracker(default_tracking_uri(), run_name=run_name, tags=tags,
                      experiment=experiment) if tracking_enabled() else None
    try:
        yield tracker
    except BaseException:
        if tracker is not None:
            tracker.end("FAILED")
        raise
    if tracker is not None:
        tracker.end("FINISHED")
