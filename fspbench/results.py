"""The results store of a benchmark: its folder layout, run records, and the runs.parquet table.

results/<name>/
  runs/<run_id>.json   run records (train.py)         runs.parquet  one row per evaluation
  checkpoints/         weights and resumable state     grid.json     file, dates, resources, estimate
  ray/                 Ray Tune's own files (never read back by fspbench)

Neither torch nor Ray is imported here, so the analysis and the report read results without them.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from fspbench.io import atomic_write_bytes, record_intact, sha256_file, write_record

if TYPE_CHECKING:
    from fspbench.grid import GridRun

FINISHED = ("ok", "diverged")  # terminal statuses: never trained again
PARQUET_COLUMNS = [
    "run_id", "role", "method", "arch", "task", "seed", "teacher_run_id", "stage", "step", "stage_step",
    "images_seen", "wall_time_s", "train_loss", "test_loss", "test_acc", "status", "eval_images",
    # labels from the benchmark file, so every number of the report recomputes from this table alone
    "group", "budget", "init_steps", "precision", "train_images",
    # [design] grids: a run's index in its arm (the order its seeds were added: look j holds indices below
    # j x look_every, and a paired test pairs equal indices); -1 where the benchmark file lists the seeds
    "seed_index",
    # accuracy on the curve points' fixed test images, also at the final evaluation (which uses the full
    # test set for test_acc): steps-to-target compares every point on the same images
    "curve_acc", "curve_images",
]


@dataclass(frozen=True)
class Paths:
    """Where a benchmark's results live."""

    root: Path

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def ray(self) -> Path:
        return self.root / "ray"

    def record(self, run_id: str) -> Path:
        return self.runs / f"{run_id}.json"


def read_record(path: Path) -> dict[str, Any] | None:
    """A run record, or None when it is missing or unreadable (then the run is redone)."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


def read_run_record(path: Path) -> dict[str, Any] | None:
    """A run record whose checksum holds; an altered or truncated one is reported and treated as absent."""
    rec = read_record(path)
    if rec is None and path.exists():
        print(f"[fspbench] warning: {path} is unreadable (truncated?); its run is trained again", flush=True)
    elif rec is not None and not record_intact(rec):
        print(f"[fspbench] warning: {path} does not match its sha256 (altered); its run is trained again",
              flush=True)
        return None
    return rec


def is_finished(paths: Paths, run: GridRun) -> bool:
    rec = read_run_record(paths.record(run.run_id))
    return rec is not None and rec.get("status") in FINISHED


def teacher_usable(paths: Paths, teacher_run_id: str) -> bool:
    """A finished teacher whose weights are on disk and match the hash in its record."""
    rec = read_run_record(paths.record(teacher_run_id))
    if rec is None or rec.get("status") != "ok" or not rec.get("checkpoint"):
        return False
    ckpt = paths.runs / rec["checkpoint"]["path"]
    if ckpt.is_file() and sha256_file(ckpt) == rec["checkpoint"]["sha256"]:
        return True
    print(f"[fspbench] warning: the weights of teacher {teacher_run_id} are missing or do not match their sha256; "
          "the teacher is trained again", flush=True)
    return False


def runs_table(records: list[dict[str, Any]], labels: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per evaluation point of every run; a run's status and grid labels on each of its rows.

    ``labels``: run id -> group, budget, init_steps, precision (grid.run_labels). A run that failed
    before its first evaluation keeps one row with step 0 and no metrics, so failures are counted
    rather than dropped.
    """
    rows: list[dict[str, Any]] = []
    for rec in records:
        curve = rec.get("curve") or [{
            "run_id": rec["run_id"], "role": rec["role"], "method": rec["method"], "arch": rec["arch"],
            "task": rec["task"], "seed": rec["seed"], "teacher_run_id": rec.get("teacher_run_id", ""),
            "stage": "", "step": 0, "stage_step": 0, "images_seen": 0, "wall_time_s": 0.0,
            "train_loss": None, "test_loss": None, "test_acc": None, "eval_images": 0,
        }]
        extra = {"seed_index": -1, **labels.get(rec["run_id"], {}),
                 "train_images": (rec.get("data") or {}).get("train_images", 0)}
        rows += [{"curve_acc": row.get("test_acc"), "curve_images": row.get("eval_images", 0), **row, **extra,
                  "status": rec["status"]} for row in curve]
    df = pd.DataFrame(rows, columns=PARQUET_COLUMNS)
    for col in ("train_loss", "test_loss", "test_acc", "wall_time_s", "curve_acc"):
        df[col] = df[col].astype("float64")
    for col in ("seed", "step", "stage_step", "images_seen", "eval_images", "budget", "init_steps", "train_images",
                "curve_images"):
        df[col] = df[col].fillna(0).astype("int64")
    df["seed_index"] = df["seed_index"].fillna(-1).astype("int64")
    for col in ("group", "precision"):
        df[col] = df[col].fillna("").astype(str)
    return df.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def now() -> str:
    """The time of day as results record it (UTC, to the second)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def failed_record(run: GridRun, error: str) -> dict[str, Any]:
    """The record of a run that never trained: failed, with its labels, so it is counted, not dropped."""
    return {"run_id": run.run_id, "role": run.role, "method": run.config.method, "arch": run.config.arch,
            "task": run.config.task, "seed": run.config.seed, "teacher_run_id": run.teacher_run_id,
            "config": run.config.to_dict(), "status": "failed", "curve": [], "final": None, "checkpoint": None,
            "error": error, "finished_at": now()}


def mark_blocked(paths: Paths, run: GridRun, teacher_status: str) -> None:
    """A student whose teacher did not finish is recorded as failed, not silently skipped."""
    write_record(paths.record(run.run_id),
                 failed_record(run, f"teacher {run.teacher_run_id} ended with status {teacher_status}"))
