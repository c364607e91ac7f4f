"""One training run: its stages, lr schedules, evaluation points, checkpoints and run record.

What it trains with (student, each stage's objective, optimizer and lr schedule, autocast, the batch
stream) is ``fspbench.step.build_step``'s, the same step the time estimate times and perf measures.

Units: a step is one optimizer step on one batch; ``step`` counts all stages from the
start of the run, ``stage_step`` restarts at each stage. ``wall_time_s`` is training time
only (teacher forward passes included, evaluation and checkpointing excluded), so that
steps-to-target and time-to-target compare the optimisation itself.

Files (``out``: where the record goes; ``ckpt_dir``: checkpoints, default out/checkpoints):
  out/<run_id>.json          the run record (config, environment, curve, final metrics, status)
  ckpt_dir/<run_id>.pt       the final student weights, hashed in the record
  ckpt_dir/<run_id>.state.pt the latest resumable state, written at evaluation points

Every file read back from there (a teacher's weights, a resumable state) is loaded as data only
(torch.load with weights_only=True), so a pickle planted there is refused, never run.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

import fspbench
from fspbench.config import RunConfig, config_from_dict, teacher_mismatch
from fspbench.data import TaskData, eval_batches, load_task, record_source
from fspbench.errors import BadInput, StorageError
from fspbench.hardware import check_precision, cpu_flags_and_name, detect
from fspbench.io import atomic_torch_save, record_intact, sha256_file
from fspbench.models import build_model
from fspbench.results import RunRecord
from fspbench.step import Stage, TrainStep, build_step, resolve_device

if TYPE_CHECKING:
    from fspbench.objectives import StageSpec

EvalCallback = Callable[[dict[str, Any], Path | None], None]


@dataclass
class Teacher:
    """A frozen network loaded from a finished run."""

    model: nn.Module
    run_id: str
    config: RunConfig


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, hardware and git commit, for the header of every result."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "fspbench": fspbench.__version__,
        "platform": platform.platform(),
        "processor": cpu_flags_and_name()[1],
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        # what must match for bitwise-identical CPU runs, and whether bf16 is native (fspbench.hardware)
        "hardware": detect(device.type).to_dict(),
        "git_commit": _git_commit(),
        "ray_node": _ray_node(),
    }
    try:
        import torchvision

        env["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover - a dependency
        pass
    return env


def _ray_node() -> dict[str, str] | None:
    """The Ray node that trains this run (its id and IP) when it is a grid's trial, else None."""
    ray = sys.modules.get("ray")  # never imported here: a run outside Ray has no node
    if ray is None or not ray.is_initialized():
        return None
    return {"id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address()}


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(fspbench.__file__).parent,
            capture_output=True, text=True, timeout=5,
        )
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def load_checkpoint_file(path: Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """Load a final checkpoint; a hash mismatch (truncated or altered file) is BadInput."""
    if not path.is_file():
        raise BadInput(f"teacher: checkpoint {path} does not exist; train the teacher first")
    if expected_sha256 and sha256_file(path) != expected_sha256:
        raise BadInput(f"teacher: checkpoint {path} does not match the sha256 in its run record; retrain it")
    try:  # data only: a pickle planted here is refused, never run
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling error means a bad file
        raise BadInput(f"teacher: {path} is not a readable fspbench checkpoint ({type(err).__name__}); "
                       "retrain the teacher") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise BadInput(f"teacher: {path} is not an fspbench checkpoint (no model/config)")
    return ckpt


def load_teacher(ref: str, device: torch.device) -> Teacher:
    """Load a frozen teacher from a run record (.json) or a final checkpoint (.pt)."""
    path = Path(ref)
    if not path.exists():
        raise BadInput(f"teacher: {ref} does not exist; give the run record (.json) of a finished run")
    if path.is_dir():  # e.g. the --out folder of the teacher's `fspbench train`
        found = sorted(p.name for p in path.glob("*.json"))[:3]
        raise BadInput(f"teacher: {ref} is a folder; pass a teacher's run record (<run_id>.json) or checkpoint "
                       f"(.pt) inside it" + (f" ({', '.join(found)} there)" if found else ""))
    if path.suffix == ".json":
        record = _teacher_record(path)
        if record.status != "ok" or record.checkpoint is None:
            raise BadInput(f"teacher: run {record.run_id} ended with status {record.status}; retrain it")
        ckpt = load_checkpoint_file(path.parent / record.checkpoint.path, record.checkpoint.sha256)
    else:
        ckpt = load_checkpoint_file(path)
    cfg = config_from_dict(ckpt["config"], source=f"teacher {ref}")
    model = build_model(cfg.arch, ckpt["num_classes"], ckpt["in_channels"], cfg.width)
    model.load_state_dict(ckpt["model"])
    model.to(device).eval().requires_grad_(False)
    return Teacher(model, ckpt["run_id"], cfg)


def _teacher_record(path: Path) -> RunRecord:
    """The teacher's run record, checked as ``fspbench run`` checks records (results.read_run_record): one
    whose own sha256 does not match its content was altered, and is refused rather than trusted."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInput(f"teacher: {path}: unreadable ({type(err).__name__}; truncated?); give the run record "
                       "(.json) of a finished run") from None
    if isinstance(raw, dict) and not _intact(raw):
        raise BadInput(f"teacher: {path} does not match its sha256 (altered); retrain the teacher or restore "
                       "its record")
    try:
        return RunRecord.from_json(raw, str(path))
    except BadInput as err:
        raise BadInput(f"teacher: {err}; give the run record (.json) of a finished run") from None


def _intact(raw: dict[str, Any]) -> bool:
    """io.record_intact, false also for a record no writer makes (NaN, which its checksum's JSON refuses)."""
    try:
        return record_intact(raw)
    except ValueError:
        return False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class _Progress:
    """Mutable state of a run, saved at evaluation points so a retry resumes exactly."""

    stage: int = 0
    stage_step: int = 0
    step: int = 0
    wall: float = 0.0
    eval_wall: float = 0.0  # seconds in evaluation (not in ``wall``)
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Run:
    """One run, set up: its training step (networks, stages, data stream), test batches and the record
    it will write."""

    cfg: RunConfig
    run_id: str
    out: Path
    ckpt_dir: Path
    data: TaskData
    full_test: list[tuple[torch.Tensor, torch.Tensor]]  # the whole test set, normalised batches
    curve_test: list[tuple[torch.Tensor, torch.Tensor]]  # the curve points' fixed subset of it
    step: TrainStep  # what it trains with (fspbench.step)
    base: dict[str, Any]  # the labels every curve row carries
    record: dict[str, Any]
    state: _Progress

    @property
    def stages(self) -> list[StageSpec]:
        return self.step.specs

    @property
    def state_path(self) -> Path:
        return self.ckpt_dir / f"{self.run_id}.state.pt"


@dataclass
class Hooks:
    """Calls into a running run: ``on_step(step)`` after every optimizer step (fault injection) and
    ``on_eval(row, state_path)`` at every evaluation point (the Ray Tune report)."""

    on_step: Callable[[int], None] | None = None
    on_eval: EvalCallback | None = None


def train_run(
    cfg: RunConfig,
    out: str | os.PathLike[str],
    *,
    ckpt_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    on_eval: EvalCallback | None = None,
) -> dict[str, Any]:
    """Train one run to completion (or divergence) and write its record; returns the record.

    Resumes from ckpt_dir/<run_id>.state.pt when one exists for the same run id. Bad input
    (unknown data, channel mismatch, missing teacher) raises BadInput before any training.
    ``on_eval(row, state_path)`` is called at every evaluation point (the Ray Tune hook).
    """
    run = _setup(cfg, Path(out), ckpt_dir)
    hooks = Hooks(_fault_hook(run.run_id, run.ckpt_dir), on_eval)
    bar = _progress_bar(progress, sum(s.steps for s in run.stages), run.state.step, run.run_id)
    status = "ok"
    try:
        for si in range(run.state.stage, len(run.stages)):
            status = _train_stage(run, si, hooks, bar)
            if status == "diverged":
                break
    except BaseException as err:
        bar.close()
        run.record.update(status="failed", error=f"{type(err).__name__}: {err}", curve=run.state.rows,
                          finished_at=_now())
        if not isinstance(err, (BadInput, KeyboardInterrupt)):
            _write_failed(run, err)
        raise
    bar.close()
    return _finish(run, status)


def _setup(cfg: RunConfig, out: Path, ckpt_dir: str | os.PathLike[str] | None) -> _Run:
    """Validate, load the teacher and the data, build the run's training step, resume if saved."""
    cfg = cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    check_precision(cfg.precision, cfg.force_bf16, detect(device.type))
    teacher = load_teacher(cfg.teacher, device) if cfg.teacher else None
    run_id = cfg.run_id(teacher.run_id if teacher else "")

    data = load_task(cfg.task, classes=cfg.classes or None, train_per_class=cfg.train_per_class or None,
                     image_size=cfg.image_size or None, device=device, subset_seed=cfg.subset_seed)
    if teacher is not None:
        wrong = teacher_mismatch(cfg, teacher.config)
        if wrong is not None:  # "methods" and "fsp.adapter" are a grid's keys; here they are settings
            raise BadInput(f"{'teacher' if wrong[0] == 'methods' else wrong[0]}: {wrong[1]}")
    step = build_step(cfg, teacher.model if teacher else None, device, data=data)
    fmt = step.memory_format
    full_test = eval_batches(data, memory_format=fmt)
    curve_test = eval_batches(data, subset=cfg.eval_subset, memory_format=fmt) if cfg.eval_subset else full_test

    # the teacher as results should name it: relative to the record's folder when it lies inside, so
    # records carry no machine's absolute path (a grid passes its trials absolute paths)
    portable = _relative_to(cfg.teacher, out)
    base = {
        "run_id": run_id, "role": cfg.role, "method": cfg.method, "arch": cfg.arch, "task": cfg.task,
        "seed": cfg.seed, "teacher_run_id": teacher.run_id if teacher else "",
    }
    record: dict[str, Any] = {
        **base, "teacher": portable, "config": {**cfg.to_dict(), "teacher": portable}, "env": environment(device),
        "stages": [{"name": s.name, "steps": s.steps, "lr": s.lr, "milestones": list(s.milestones)}
                   for s in step.specs],
        "data": {"source": record_source(data.source), "train_images": int(data.train_y.numel()),
                 "test_images": int(data.test_y.numel()), "num_classes": data.num_classes},
        "started_at": _now(), "status": "failed", "error": None, "curve": [], "final": None,
        "checkpoint": None,
    }
    ckpt = Path(ckpt_dir) if ckpt_dir is not None else out / "checkpoints"
    state = _resume(step, ckpt / f"{run_id}.state.pt", run_id)
    return _Run(cfg, run_id, out, ckpt, data, full_test, curve_test, step, base, record, state)


def _resume(step: TrainStep, path: Path, run_id: str) -> _Progress:
    """The progress saved at ``path`` (a fresh one when there is none), with the student, the data stream
    and the stage it was in (optimizer, lr schedule, objective) restored into ``step``."""
    saved = _load_state(path, run_id)
    if saved is None:
        return _Progress()
    state: _Progress = saved["progress"]
    try:
        step.student.load_state_dict(saved["student"])
        step.stream.load_state_dict(saved["stream"])
        if saved.get("opt") and state.stage in step.stages:  # saved inside a stage, not at its end
            step.stages[state.stage].load_state_dict(saved)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
        # well-formed data that is not this run's state (other shapes, another data stream)
        raise _bad_state(path, run_id, f"it does not fit the run ({type(err).__name__})") from None
    return state


def _train_stage(run: _Run, si: int, hooks: Hooks, bar: Any) -> str:
    """Train stage ``si`` from where the state says to its end; "ok", or "diverged" when the loss is not finite."""
    spec, stage, state = run.stages[si], run.step.stages[si], run.state
    run.step.student.train()
    check_every = run.step.check_every  # a finiteness check syncs a GPU
    with stage.objective.active():  # hooks for the whole stage, not per step
        t_start = time.perf_counter()
        while state.stage_step < spec.steps:
            diverged = stage.train(state.stage_step / spec.steps, check=(state.step + 1) % check_every == 0)
            state.step += 1
            state.stage_step += 1
            if hooks.on_step is not None:
                hooks.on_step(state.step)
            bar.update(1)
            last = state.stage_step == spec.steps
            if not (diverged or last or state.step % run.cfg.eval_every == 0):
                continue
            state.wall += time.perf_counter() - t_start
            train_loss = stage.take_loss()
            diverged = diverged or not math.isfinite(train_loss)
            row = _evaluation_point(run, si, train_loss, final=last and si == len(run.stages) - 1,
                                    diverged=diverged)
            bar.set_postfix(stage=spec.name, loss=f"{row['train_loss']:.3g}", acc=f"{row['test_acc']:.3f}")
            if diverged:
                return "diverged"
            if last:
                state.stage, state.stage_step = si + 1, 0
            _save_state(run.state_path, run.run_id, state, run.step, None if last else stage)
            if hooks.on_eval is not None:
                hooks.on_eval(row, run.state_path)
            if last:
                break
            t_start = time.perf_counter()
    return "ok"


def _evaluation_point(run: _Run, si: int, train_loss: float, *, final: bool, diverged: bool) -> dict[str, Any]:
    """Evaluate the student and append the curve row (the full test set at the end or on divergence)."""
    state = run.state
    t_eval = time.perf_counter()
    on_full = final or diverged
    test_loss, test_acc = run.step.evaluate(run.full_test if on_full else run.curve_test)
    # the curve's own images at the final point too, so that steps-to-target compares every point
    # of a curve, and its target, on the same test images
    curve_acc = run.step.evaluate(run.curve_test)[1] if (
        on_full and run.curve_test is not run.full_test) else test_acc
    state.eval_wall += time.perf_counter() - t_eval
    row = {**run.base, "stage": run.stages[si].name, "step": state.step, "stage_step": state.stage_step,
           "images_seen": state.step * run.cfg.batch_size, "wall_time_s": round(state.wall, 4),
           "train_loss": train_loss, "test_loss": test_loss, "test_acc": test_acc,
           "status": "diverged" if diverged else "ok",
           "eval_images": len(run.data.test_y) if on_full else _count(run.curve_test),
           "curve_acc": curve_acc, "curve_images": _count(run.curve_test)}
    state.rows.append(row)
    return row


def _finish(run: _Run, status: str) -> dict[str, Any]:
    """Write the final checkpoint (ok runs) and the record; drop the resumable state."""
    state, record = run.state, run.record
    record["curve"] = state.rows
    record["status"] = status
    record["final"] = {k: state.rows[-1][k] for k in
                       ("step", "images_seen", "wall_time_s", "train_loss", "test_loss", "test_acc")}
    record["train_time_s"] = round(state.wall, 3)
    record["eval_time_s"] = round(state.eval_wall, 3)
    record["finished_at"] = _now()
    if status == "ok":
        final_path = run.ckpt_dir / f"{run.run_id}.pt"
        digest = atomic_torch_save(
            {"run_id": run.run_id, "config": record["config"], "model": run.step.student.state_dict(),
             "num_classes": run.data.num_classes, "in_channels": run.data.in_channels}, final_path)
        record["checkpoint"] = {"path": os.path.relpath(final_path, run.out), "sha256": digest}
    _write(run, record)
    run.state_path.unlink(missing_ok=True)  # the run is finished; its resumable state is no longer needed
    return record


def _write(run: _Run, record: dict[str, Any]) -> None:
    """The run record to out/<run_id>.json, through the results store's one writer (checked, checksummed)."""
    path = run.out / f"{run.run_id}.json"
    RunRecord.from_json(_finite(record), str(path)).write(path)


def _write_failed(run: _Run, err: BaseException) -> None:
    """The record of a failed run, with its error. A storage fault may leave no room for the record either:
    then the first fault is what the user reads (the record's own write left no file behind)."""
    try:
        _write(run, run.record)
    except StorageError:
        if not isinstance(err, StorageError):
            raise


FAULT_ENV = "FSPBENCH_FAULT"


def _fault_hook(run_id: str, ckpt_dir: Path) -> Callable[[int], None] | None:
    """The step hook that crashes this run where a test asked it to, or None.

    ``FSPBENCH_FAULT=crash@step:N@run:PREFIX`` makes the run whose id starts with PREFIX raise
    once, right after optimizer step N; a marker file keeps the retry from crashing again.
    """
    spec = os.environ.get(FAULT_ENV, "")
    if not spec:
        return None
    parts = dict(p.split(":", 1) for p in spec.split("@")[1:] if ":" in p)
    if not spec.startswith("crash@") or "step" not in parts or not parts["step"].isdigit():
        raise BadInput(f"{FAULT_ENV}: expected crash@step:N@run:RUN_ID_PREFIX, got {spec!r}")
    if not run_id.startswith(parts.get("run", "")) or (ckpt_dir / f"{run_id}.fault").exists():
        return None
    at = int(parts["step"])

    def crash(step: int) -> None:
        if step == at:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            (ckpt_dir / f"{run_id}.fault").write_text(f"crashed at step {step}\n")
            raise RuntimeError(f"{FAULT_ENV}: injected crash of {run_id} at step {step}")

    return crash


def _relative_to(path: str, folder: Path) -> str:
    """``path`` relative to ``folder`` when it lies inside it, else unchanged."""
    if not path or not Path(path).is_absolute():
        return path
    try:
        return str(Path(path).resolve().relative_to(folder.resolve()))
    except ValueError:
        return path


def _count(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
    return sum(int(y.numel()) for _, y in batches)


def _finite(obj: Any) -> Any:
    """JSON has no NaN: non-finite floats become null (a diverged run's loss)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _save_state(path: Path, run_id: str, state: _Progress, step: TrainStep, stage: Stage | None) -> None:
    """The resumable state: progress, student, data stream and, inside a stage, that stage's own state.

    Only what torch.load(weights_only=True) reads back: tensors, (ordered) dicts, lists, numbers, strings
    (the progress as a dict of its fields, the lr schedule's milestones a collections.Counter, which that
    loader allows), so that a resume never has to unpickle code.
    """
    blob: dict[str, Any] = {"run_id": run_id, "progress": asdict(state), "student": step.student.state_dict(),
                            "stream": step.stream.state_dict()}
    if stage is not None:
        blob.update(stage.state_dict())
    atomic_torch_save(blob, path)


# the parts every resumable state has, as _save_state writes them
_STATE_PARTS = ("progress", "student", "stream")


def _load_state(path: Path, run_id: str) -> dict[str, Any] | None:
    """The resumable state saved at ``path`` with its progress as a _Progress; None when there is none.

    Loaded as data only, so a pickle planted there is refused without running. A file that does not load
    so, or is not this run's state, is refused (BadInput), neither used nor silently replaced: states are
    written atomically, so no crash leaves a partial one, and a file that is not one was put there.
    """
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever the reason, the file is not a state to resume from
        raise _bad_state(path, run_id, f"it does not load as data ({type(err).__name__})") from None
    if not isinstance(blob, dict) or not all(isinstance(blob.get(k), dict) for k in _STATE_PARTS):
        raise _bad_state(path, run_id, "it is not an fspbench state")
    if blob.get("run_id") != run_id:
        raise _bad_state(path, run_id, f"it is the state of run {blob.get('run_id')!r}")
    try:
        progress = _Progress(**blob["progress"])
    except TypeError:  # fields a _Progress does not have, or keys that are not names
        progress = None
    if progress is None or not _well_typed(progress):
        raise _bad_state(path, run_id, "its progress is not an fspbench run's")
    blob["progress"] = progress
    return blob


def _well_typed(p: _Progress) -> bool:
    """Whether a loaded progress holds what a run's does (counters, seconds, curve rows)."""
    counts_ok = all(type(c) is int and c >= 0 for c in (p.stage, p.stage_step, p.step))
    seconds_ok = all(type(t) in (int, float) for t in (p.wall, p.eval_wall))
    return counts_ok and seconds_ok and isinstance(p.rows, list) and all(isinstance(r, dict) for r in p.rows)


def _bad_state(path: Path, run_id: str, why: str) -> BadInput:
    """The one-line refusal of a resumable state file, with the fix."""
    return BadInput(f"{path}: not a resumable state of run {run_id} ({why}); delete it to train the run "
                    "from the start")


def _progress_bar(enabled: bool, total: int, initial: int, desc: str) -> Any:
    """tqdm's bar for ``fspbench train``; disabled (every call a no-op) for Ray trials and --quiet."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, disable=not enabled)
