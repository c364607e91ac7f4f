"""TensorBoard event files of a grid: one TensorBoard run per fspbench run, ``<root>/<run_id>/``.

Each run's folder also holds ``fspbench.json``, the last step written and whether the run is closed
(TensorBoard reads only files named ``*tfevents*``), so a rerun appends only points it lacks: every
invocation that writes opens a new event file, and TensorBoard merges a run's files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fspbench.io import atomic_write_json
from fspbench.results import FINISHED, RunRecord

if TYPE_CHECKING:
    from fspbench.tracking import Point, RunInfo

STATE = "fspbench.json"
FINAL_TAG = "final/test_acc"


@dataclass
class _Written:
    """What a run's event files hold already."""

    step: int = -1  # the last point's step in the whole run (-1: none)
    final: bool = False  # the final accuracy and hyperparameters are written


class TensorBoardSink:
    """Event files written with tensorboardX; a run's writer stays open (and is flushed after every
    point, so TensorBoard shows it at once) until the run is closed."""

    name = "TensorBoard"

    def __init__(self, root: Path) -> None:
        self.root = root
        self._writers: dict[str, Any] = {}
        self._state: dict[str, _Written] = {}

    def _written(self, run_id: str) -> _Written:
        if run_id not in self._state:
            try:
                raw = json.loads((self.root / run_id / STATE).read_text())
                self._state[run_id] = _Written(int(raw["step"]), bool(raw["final"]))
            except (OSError, ValueError, KeyError, TypeError):  # none yet, or unreadable: start the run again
                self._state[run_id] = _Written()
        return self._state[run_id]

    def _save(self, run_id: str) -> None:
        w = self._state[run_id]
        atomic_write_json(self.root / run_id / STATE, {"step": w.step, "final": w.final})

    def _writer(self, run: RunInfo) -> Any:
        if run.run_id not in self._writers:
            from tensorboardX import SummaryWriter

            writer = SummaryWriter(logdir=str(self.root / run.run_id), flush_secs=30)
            if self._written(run.run_id).step < 0:  # the run's first event file: its hyperparameters
                _write_hparams(writer, run.hparams)
            self._writers[run.run_id] = writer
        return self._writers[run.run_id]

    def point(self, run: RunInfo, point: Point) -> None:
        w = self._written(run.run_id)
        if w.final or point.step <= w.step:
            return
        writer = self._writer(run)
        for tag, (value, step) in point.scalars.items():
            writer.add_scalar(tag, value, step)
        writer.flush()  # before the state says it is written: a crash loses a point, never doubles one
        w.step = point.step
        self._save(run.run_id)

    def final(self, run: RunInfo, record: RunRecord, record_path: Path) -> None:
        w = self._written(run.run_id)
        if w.final:
            return
        if record.status not in FINISHED:  # failed: trained again by a rerun, which adds the points it lacks
            if run.run_id in self._writers:
                self._writers.pop(run.run_id).close()
            return
        writer = self._writer(run)
        if record.final is not None:
            writer.add_scalar(FINAL_TAG, record.final.test_acc, _main_steps(record))
        writer.close()
        del self._writers[run.run_id]
        w.final = True
        self._save(run.run_id)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def _main_steps(record: RunRecord) -> int:
    """The last point's step on the main task's axis (a run's last point is in its main stage)."""
    return record.curve[-1].stage_step if record.curve else 0


def _write_hparams(writer: Any, hparams: dict[str, str | int]) -> None:
    """The hyperparameters in the run's own folder (tensorboardX's add_hparams would make a sub-run per
    call), with the final accuracy as the HParams dashboard's metric."""
    from tensorboardX.summary import hparams as hparams_summary

    for summary in hparams_summary(dict(hparams), {FINAL_TAG: 0.0}):
        writer.file_writer.add_summary(summary)
