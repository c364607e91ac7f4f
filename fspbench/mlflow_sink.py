"""A grid's curves on an MLflow tracking server: one MLflow run per fspbench run.

The experiment is ``fspbench/<benchmark name>``; each run has the tags run_id, method, arch, seed, group,
budget and role (the same as parameters), the metrics of fspbench.tracking by step, and when it ends
``final_test_acc``, its status and the run record JSON as an artifact. The tag ``fspbench.last_step``
(the last point's step in the whole run) lets a rerun add only the points a run lacks, and
``fspbench.final`` marks a run closed.

MLflow is imported only here, and only when a grid asks for it (``--mlflow`` or ``[tracking] mlflow``),
so nothing is logged (no mlruns folder appears) otherwise.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from fspbench.errors import BadInput
from fspbench.results import FINISHED

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fspbench.results import RunRecord
    from fspbench.tracking import Point, RunInfo

SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql")
LAST_STEP, FINAL = "fspbench.last_step", "fspbench.final"


def uri_problem(uri: str) -> str | None:
    """What is wrong with an MLflow tracking URI's spelling (None: nothing); no server is asked."""
    parsed = urlparse(uri)
    if parsed.scheme not in SCHEMES:
        return (f"expected an MLflow tracking URI: http://HOST:PORT of a tracking server or "
                f"sqlite:///FILE.db (schemes {', '.join(SCHEMES)}), got {uri!r}")
    if parsed.scheme in ("http", "https") and not parsed.hostname:
        return f"expected http://HOST:PORT of a tracking server, got {uri!r}"
    if parsed.scheme in ("file", "sqlite") and not parsed.path:
        return f"expected a path after {parsed.scheme}://, got {uri!r}"
    return None


def artifacts_beside(uri: str) -> str | None:
    """Where a new experiment's artifacts go: for an sqlite store a folder beside its file (MLflow's default
    is ./mlruns in whatever folder the command ran from); a server's own choice otherwise (None)."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        return None
    db = Path(parsed.path[1:])  # sqlite:///rel.db is relative, sqlite:////abs.db absolute (SQLAlchemy)
    return (db.parent / f"{db.stem}-artifacts").absolute().as_uri()


@contextmanager
def _no_retries() -> Iterator[None]:
    """MLflow's HTTP client retries for minutes by default; a check should answer in seconds."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_server(uri: str) -> None:
    """BadInput (one line) unless ``uri`` is well formed, MLflow is installed and the store answers."""
    problem = uri_problem(uri)
    if problem:
        raise BadInput(f"--mlflow: {problem}")
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise BadInput(f"--mlflow {uri}: MLflow is not installed; pip install mlflow-skinny") from None
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            with socket.create_connection((parsed.hostname, port), timeout=10):
                pass
        except OSError as err:
            raise BadInput(f"--mlflow {uri}: no MLflow server answers there ({err.strerror or err}); start one "
                           "with `mlflow server` or drop --mlflow") from None
    try:
        with _no_retries():
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - MLflow raises many kinds; each is a store that does not work
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise BadInput(f"--mlflow {uri}: the tracking store does not answer ({first})") from None


class MLflowSink:
    """Writes through MlflowClient; the grid's existing MLflow runs are looked up once, by their run_id tag."""

    name = "MLflow"

    def __init__(self, uri: str, benchmark: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        name = f"fspbench/{benchmark}"
        exp = self.client.get_experiment_by_name(name)
        self.experiment = (exp.experiment_id if exp is not None
                           else self.client.create_experiment(name, artifact_location=artifacts_beside(uri)))
        self._runs: dict[str, tuple[str, int, bool]] = {}  # fspbench run id -> (MLflow run id, last step, closed)
        token = None
        while True:
            page = self.client.search_runs([self.experiment], max_results=1000, page_token=token)
            for r in page:
                tags = r.data.tags
                if "run_id" in tags:
                    self._runs[tags["run_id"]] = (r.info.run_id, int(tags.get(LAST_STEP, -1)), FINAL in tags)
            token = page.token
            if not token:
                break

    def _run(self, run: RunInfo) -> tuple[str, int, bool]:
        if run.run_id not in self._runs:
            from mlflow.entities import Param

            tags = {"run_id": run.run_id, **{k: str(v) for k, v in run.hparams.items()}}
            mr = self.client.create_run(self.experiment, tags=tags, run_name=run.run_id)
            self.client.log_batch(mr.info.run_id, params=[Param(k, str(v)) for k, v in run.hparams.items()])
            self._runs[run.run_id] = (mr.info.run_id, -1, False)
        return self._runs[run.run_id]

    def point(self, run: RunInfo, point: Point) -> None:
        from mlflow.entities import Metric, RunTag

        mlflow_id, last, closed = self._run(run)
        if closed or point.step <= last:
            return
        ms = int(time.time() * 1000)
        metrics = [Metric(tag, value, ms, step) for tag, (value, step) in point.scalars.items()]
        # the step tag in the same request as the metrics: both are written, or neither
        self.client.log_batch(mlflow_id, metrics=metrics, tags=[RunTag(LAST_STEP, str(point.step))])
        self._runs[run.run_id] = (mlflow_id, point.step, False)

    def final(self, run: RunInfo, record: RunRecord, record_path: Path) -> None:
        from mlflow.entities import Metric, RunTag

        mlflow_id, last, closed = self._run(run)
        if closed:
            return
        if record.status not in FINISHED:  # trained again by a rerun, which reopens it
            self.client.set_terminated(mlflow_id, "FAILED")
            return
        self.client.log_artifact(mlflow_id, str(record_path))
        metrics: list[Any] = []
        if record.final is not None:
            metrics.append(Metric("final_test_acc", record.final.test_acc, int(time.time() * 1000),
                                  record.curve[-1].stage_step if record.curve else 0))
        self.client.log_batch(mlflow_id, metrics=metrics, tags=[RunTag("status", record.status), RunTag(FINAL, "1")])
        self.client.set_terminated(mlflow_id, "FINISHED")
        self._runs[run.run_id] = (mlflow_id, last, True)

    def close(self) -> None:
        """Nothing held open: every call above is one request."""
