"""Learning curves while a grid runs: every evaluation point to TensorBoard, and to MLflow when asked.

The trials report each evaluation point to Tune; ``tune_callback`` passes it on, on the driver, as it
arrives, so the curves grow while the grid runs. When a trial ends its run record is read and the
run's final accuracy (and for MLflow the record itself) is added. After each Tune run ``catch_up``
replays every stored record, so runs that finished in an earlier invocation, or whose points were
missed (a sink that failed for a while), are complete too.

Each sink remembers the last step it has written for a run (TensorBoard: a small JSON beside the
run's event files; MLflow: a tag of the run), so a rerun or a replay never writes a point twice.

What goes where, per fspbench run (one TensorBoard run ``<results>/tensorboard/<run_id>/``, one MLflow
run): hyperparameters method, arch, seed, group, budget and role; ``main/test_acc``,
``main/train_loss`` and ``main/test_loss`` against main-task steps; ``stage1/loss`` (the FSP or
FitNet hint loss) and ``stage1/test_acc`` against stage-1 steps; ``final/test_acc`` at the last step.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from fspbench.results import CurvePoint, Paths, RunRecord, read_run_record

if TYPE_CHECKING:
    from fspbench.grid import Benchmark, GridRun

MAIN = "main"  # the main task's stage name; any other stage is stage 1 (methods.StagePlan)


@dataclass(frozen=True)
class RunInfo:
    """What a sink labels a run with: its id and the grid's hyperparameters of it."""

    run_id: str
    hparams: dict[str, str | int]  # method, arch, seed, group, budget, role


@dataclass(frozen=True)
class Point:
    """One evaluation point: its step in the whole run (the dedup key) and its scalars by step."""

    step: int  # optimizer steps since the run started, all stages
    scalars: dict[str, tuple[float, int]]  # tag -> (value, step on that tag's axis)


class Sink(Protocol):
    """Where curves go (TensorBoard event files, an MLflow server)."""

    name: str

    def point(self, run: RunInfo, point: Point) -> None:
        """Write ``point`` unless this sink already holds the run's point at that step (or a later one)."""

    def final(self, run: RunInfo, record: RunRecord, record_path: Path) -> None:
        """Close a finished run (ok or diverged): its final accuracy, status (and record); a no-op for a run
        closed before. A failed run is left open: a rerun trains it again."""

    def close(self) -> None:
        """Flush and release everything."""


def tensorboard_root(paths: Paths) -> Path:
    """Where the driver writes a grid's TensorBoard runs: ``<results>/tensorboard``, or for results in a
    bucket the driver's staging folder's ``tensorboard`` (uploaded by fspbench.tensorboard_mirror)."""
    from fspbench.store import ObjectPath

    if isinstance(paths.root, ObjectPath):
        from fspbench.staging import stage_paths

        return Path(str(stage_paths(paths.root).root)) / "tensorboard"
    return Path(paths.root) / "tensorboard"


def run_info(run: GridRun) -> RunInfo:
    cfg = run.config
    return RunInfo(run.run_id, {"method": cfg.method, "arch": cfg.arch, "seed": cfg.seed, "group": run.group,
                                "budget": cfg.steps, "role": run.role})


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def to_point(row: dict[str, Any]) -> Point | None:
    """A curve row (a record's CurvePoint, or the metrics a trial reported) as a Point; None without its
    stage, step and stage step. The main task's scalars are against main-task steps (its stage step)."""
    stage, step, stage_step = row.get("stage"), row.get("step"), row.get("stage_step")
    if not isinstance(stage, str) or not isinstance(step, int) or not isinstance(stage_step, int):
        return None
    names = ({"test_acc": "main/test_acc", "train_loss": "main/train_loss", "test_loss": "main/test_loss"}
             if stage == MAIN else {"train_loss": "stage1/loss", "test_acc": "stage1/test_acc"})
    scalars = {tag: (v, stage_step) for key, tag in names.items() if (v := _finite(row.get(key))) is not None}
    return Point(step, scalars)


def record_points(record: RunRecord) -> list[Point]:
    return [p for cp in record.curve if (p := to_point(_row(cp))) is not None]


def _row(cp: CurvePoint) -> dict[str, Any]:
    return {"stage": cp.stage, "step": cp.step, "stage_step": cp.stage_step, "train_loss": cp.train_loss,
            "test_loss": cp.test_loss, "test_acc": cp.test_acc}


class Tracker:
    """Sends a grid's points to its sinks; a sink that fails is warned about once and left out until
    ``catch_up``, which tries it again (curves never stop a grid)."""

    def __init__(self, bench: Benchmark, paths: Paths, sinks: list[Sink]) -> None:
        self.paths, self.sinks = paths, sinks
        self.runs = {r.run_id: run_info(r) for r in bench.runs}
        self._failed: set[str] = set()  # sinks left out since they failed

    def _each(self, what: str, fn: Any) -> None:
        for sink in self.sinks:
            if sink.name in self._failed:
                continue
            try:
                fn(sink)
            except Exception as err:  # noqa: BLE001 - a tracking server's error must not end the grid
                self._failed.add(sink.name)
                print(f"[fspbench] warning: {sink.name}: {what} failed ({_first_line(err)}); the run records "
                      "are caught up after the Tune run, or by the next fspbench run", flush=True)

    def result(self, run_id: str, row: dict[str, Any]) -> None:
        """A point a trial has just reported."""
        run, point = self.runs.get(run_id), to_point(row)
        if run is not None and point is not None:
            self._each(f"writing a point of {run_id}", lambda s: s.point(run, point))

    def ended(self, run_id: str) -> None:
        """A trial has ended: its record's final accuracy."""
        run = self.runs.get(run_id)
        rec = read_run_record(self.paths.record(run_id)) if run else None
        if run is not None and rec is not None:
            self._close_run(run, rec)

    def _close_run(self, run: RunInfo, rec: RunRecord) -> None:
        points = record_points(rec)  # points a failed sink missed, and those of an earlier invocation
        for point in points:
            self._each(f"writing a point of {run.run_id}", lambda s: s.point(run, point))
        self._each(f"closing {run.run_id}", lambda s: s.final(run, rec, self.paths.record(run.run_id)))

    def catch_up(self) -> None:
        """Every stored record of the grid, failed sinks tried again; then every sink closed."""
        self._failed.clear()
        for run in self.runs.values():
            rec = read_run_record(self.paths.record(run.run_id))
            if rec is not None:
                self._close_run(run, rec)
        self.close()

    def close(self) -> None:
        self._each("closing", lambda s: s.close())


def tracker(bench: Benchmark, paths: Paths) -> Tracker:
    """The grid's sinks: TensorBoard (beside the results, or mirrored to their bucket), and MLflow where
    [tracking] mlflow (or --mlflow) names a server."""
    from fspbench.tensorboard_sink import TensorBoardSink

    sinks: list[Sink] = []
    from fspbench.store import ObjectPath

    if isinstance(paths.root, ObjectPath):
        from fspbench.tensorboard_mirror import MirroredTensorBoard

        sinks.append(MirroredTensorBoard(tensorboard_root(paths), paths.root / "tensorboard"))
    else:
        sinks.append(TensorBoardSink(tensorboard_root(paths)))
    if bench.tracking.mlflow:
        from fspbench.mlflow_sink import MLflowSink

        try:
            sinks.append(MLflowSink(bench.tracking.mlflow, bench.name))
        except Exception as err:  # noqa: BLE001 - it answered the check before the grid; the grid goes on
            print(f"[fspbench] warning: MLflow at {bench.tracking.mlflow}: {_first_line(err)}; left out until "
                  "the next fspbench run catches up", flush=True)
    return Tracker(bench, paths, sinks)


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def check(bench: Benchmark) -> None:
    """BadInput, before any training, when the MLflow server asked for is not one (tracking starts nowhere)."""
    if bench.tracking.mlflow:
        from fspbench.mlflow_sink import check_server

        check_server(bench.tracking.mlflow)


def tune_callback(track: Tracker) -> Any:
    """A Ray Tune callback that hands each reported point and each ended trial to ``track``."""
    from ray.tune import Callback

    class Curves(Callback):
        """Points as they arrive (on the driver), the final accuracy when a trial ends."""

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                            **info: Any) -> None:
            track.result(trial.config["run_id"], result)

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            track.ended(trial.config["run_id"])

    return Curves()


def disable_tune_loggers() -> None:
    """Ray Tune's own CSV, JSON and TensorBoard loggers off: the curves are fspbench's (here and in the run
    records), and Tune's copies under ray/ would duplicate them. Read by Tune when a Tuner is built."""
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
