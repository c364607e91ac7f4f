"""One training step for train, the estimate and perf (fspbench.step): the step the estimate times is the
step train_run sets up, stage by stage (objective, optimizer, lr schedule, autocast, networks, memory
format, batch stream), for every method and the settings that change the step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import tiny

import fspbench.estimate as est
import fspbench.step
from fspbench import methods
from fspbench.config import FSPSettings, RunConfig
from fspbench.models import build_model
from fspbench.step import TrainStep
from fspbench.train import _setup

ROOT = Path(__file__).resolve().parent.parent
TEACHER = tiny(arch="resnet14", role="teacher")
CASES = {
    "scratch": {"method": "scratch"},
    "fsp": {"method": "fsp", "steps": 30, "init_steps": 20},
    "fitnet": {"method": "fitnet"},
    "kd": {"method": "kd"},
    # NCHW, bf16 autocast, flips and no crops, another batch and seed; a wider student, with FSP's adapters
    "scratch-bf16-nchw": {"precision": "bf16", "force_bf16": True, "channels_last": False, "hflip": True,
                          "augment": False, "batch_size": 16, "seed": 3},
    "fsp-adapter": {"method": "fsp", "width": 2, "fsp": FSPSettings(adapter="conv1x1"), "momentum": 0.5},
}


def _teacher_checkpoint(path: Path) -> Path:
    """A (random) teacher as ``fspbench train`` loads one: a final checkpoint with its config."""
    model = build_model(TEACHER.arch, 10, 1)
    torch.save({"run_id": "teacher-test", "config": TEACHER.to_dict(), "model": model.state_dict(),
                "num_classes": 10, "in_channels": 1}, path)
    return path


def _layout(net: torch.nn.Module | None) -> Any:
    """A network's class and every parameter's name, shape and strides (the strides say the memory format)."""
    if net is None:
        return None
    return type(net), [(n, tuple(p.shape), p.stride(), p.dtype) for n, p in net.named_parameters()]


def _stage(step: TrainStep, i: int) -> dict[str, Any]:
    """What a stage's step is made of, without the values of its weights."""
    st = step.stages[i]
    return {
        "spec": (st.spec.name, st.spec.steps, st.spec.lr, st.spec.milestones),
        "objective": (type(st.objective), _layout(st.objective), getattr(st.objective, "settings", None),
                      getattr(st.objective, "temperature", None), getattr(st.objective, "w_start", None),
                      getattr(st.objective, "w_end", None)),
        "opt": (type(st.opt), st.opt.defaults, [len(g["params"]) for g in st.opt.param_groups]),
        "trains": [(tuple(p.shape), p.stride()) for g in st.opt.param_groups for p in g["params"]],
        "sched": (type(st.sched), dict(st.sched.milestones), st.sched.gamma),
        "autocast": (st.autocast.device, st.autocast.fast_dtype, st.autocast._enabled),
        "stream": (st.stream.batch_size, st.stream.augment, st.stream.hflip, st.stream.memory_format),
        "student": _layout(step.student),
        "teacher": _layout(step.teacher) if st.spec.plan.uses_teacher else None,
        "memory_format": step.memory_format,
        "check_every": step.check_every,
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_estimate_times_the_step_train_runs(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    changes = dict(CASES[case])
    needs_teacher = methods.get(changes.get("method", "scratch")).needs_teacher
    teacher = str(_teacher_checkpoint(tmp_path / "teacher.pt")) if needs_teacher else ""
    cfg: RunConfig = tiny(teacher=teacher, **changes)
    trained = _setup(cfg, tmp_path / "out", None).step  # what train_run trains with

    timed: list[TrainStep] = []  # what the calibration builds, kind by kind
    real = fspbench.step.build_step
    monkeypatch.setattr(fspbench.step, "build_step", lambda *a, **k: timed.append(real(*a, **k)) or timed[-1])
    kinds = est.stage_kinds(cfg, TEACHER if needs_teacher else None)
    assert len(kinds) == len(trained.specs) == len(trained.stages)
    for i, kind in enumerate(kinds):
        work = est._workload(kind)
        assert set(timed[-1].stages) == {i}  # one stage's objective and optimizer, and no teacher it does not use
        assert _stage(timed[-1], i) == _stage(trained, i)
        work.run()  # one step of Stage.train: the step, its loss summed, the divergence check
        assert timed[-1].stages[i].n_loss == 1
    est._workload(est.eval_kind(cfg))
    assert not timed[-1].stages and _layout(timed[-1].student) == _layout(trained.student)
    assert (timed[-1].autocast.fast_dtype, timed[-1].autocast._enabled) == (
        trained.autocast.fast_dtype, trained.autocast._enabled)


def test_only_the_step_builder_reads_the_methods_registry() -> None:
    # train, the estimate and perf build their steps through fspbench.step, never from the methods themselves
    for name in ("train", "estimate", "perf"):
        text = (ROOT / "fspbench" / f"{name}.py").read_text()
        assert "stage_specs" not in text and ".objective(" not in text, name
    assert "stage_specs(cfg)" in (ROOT / "fspbench" / "step.py").read_text()
