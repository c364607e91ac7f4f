"""A run's training step, built in one place for everything that trains or times it.

``build_step(cfg, teacher, device, data=...)`` makes what a run of ``cfg`` trains with: its student
(initialised from ``cfg.seed``, in the run's memory format, compiled when ``cfg.compile``), each stage
of its method with the stage's objective, SGD and lr schedule, the autocast context of
``cfg.precision`` and the stream of training batches (``BatchStream``, seeded with ``cfg.seed``).
``fspbench train`` (train.py) trains it on the task's data; the time estimate (estimate.py) times it
on synthetic data of the task's shape (``data.synthetic_task``); ``fspbench perf`` (perf.py) measures
it against a bare loop. A change to the step is therefore a change to all three: the estimate cannot
time a step that train no longer takes.

The methods registry is read here and only here: ``objectives.stage_specs(cfg)`` gives the
stages, and each stage's ``objective(ctx)`` builds its objective.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fspbench.config import RunConfig
from fspbench.data import BatchStream, TaskData, normalize
from fspbench.errors import BadInput
from fspbench.models import build_model
from fspbench.objectives import Objective, StageContext, StageSpec, stage_specs

Batches = list[tuple[torch.Tensor, torch.Tensor]]  # [(x (b, C, H, W) float32, y (b,) int64), ...]
GPU_CHECK_EVERY = 50  # steps between finiteness checks of the loss on a GPU (each one syncs the device)


def resolve_device(name: str) -> torch.device:
    """``cfg.device`` as a torch device: auto is the GPU when one is visible, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadInput("device: cuda was asked for but no GPU is visible; use device=cpu or auto")
    return torch.device(name)


def make_optimizer(params: list[nn.Parameter], spec: StageSpec, cfg: RunConfig) -> tuple[Any, Any]:
    """SGD with momentum and weight decay, and the stage's piecewise-constant lr (stepped per step)."""
    opt = torch.optim.SGD(params, lr=spec.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [round(m * spec.steps) for m in spec.milestones],
                                                 gamma=cfg.gamma)
    return opt, sched


@torch.inference_mode()
def evaluate(model: nn.Module, batches: Batches,
             autocast: contextlib.AbstractContextManager[Any]) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (fraction 0..1) over ``batches``; one host sync at the end."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=batches[0][0].device)
    correct = torch.zeros((), device=batches[0][0].device, dtype=torch.long)
    n = 0
    for x, y in batches:
        with autocast:
            logits = model(x).float()  # (B, K)
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        n += y.numel()
    model.train(was_training)
    return loss_sum.item() / n, correct.item() / n


@dataclass
class Stage:
    """One stage of a run, ready to train: its spec, objective, SGD and lr schedule.

    ``loss_sum`` is the training loss summed on the device over the ``n_loss`` steps since the last
    ``take_loss()`` (an evaluation point), so that no step waits for the device to report its loss.
    """

    spec: StageSpec
    objective: Objective
    opt: Any  # torch.optim.SGD
    sched: Any  # torch.optim.lr_scheduler.MultiStepLR
    autocast: contextlib.AbstractContextManager[Any]
    stream: BatchStream
    loss_sum: torch.Tensor  # () float32, on the device
    n_loss: int = 0

    def step(self, x: torch.Tensor, y: torch.Tensor, progress: float) -> torch.Tensor:
        """One optimizer step on (x (B,C,H,W), y (B,)): the objective's loss (``progress`` in [0, 1) of the
        stage) under autocast, backward, SGD, lr schedule; returns the loss."""
        with self.autocast:
            loss: torch.Tensor = self.objective(x, y, progress)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        self.opt.step()
        self.sched.step()
        return loss

    def train(self, progress: float, check: bool) -> bool:
        """One step on the stream's next batch, its loss added to ``loss_sum``; with ``check``, whether the
        summed loss is not finite (a host sync: train_run checks every ``TrainStep.check_every`` steps)."""
        loss = self.step(*self.stream.next(), progress)
        self.loss_sum += loss.detach().float()
        self.n_loss += 1
        return check and not bool(torch.isfinite(self.loss_sum))

    def take_loss(self) -> float:
        """The mean training loss since the last call (not finite when a step's loss was not), reset to 0."""
        mean = self.loss_sum.item() / self.n_loss
        self.loss_sum.zero_()
        self.n_loss = 0
        return mean

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue the stage exactly: the optimizer, lr schedule and objective."""
        return {"opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "objective": self.objective.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.objective.load_state_dict(state["objective"])


@dataclass
class TrainStep:
    """Everything a run trains with (``build_step``)."""

    cfg: RunConfig
    device: torch.device
    memory_format: torch.memory_format  # of the networks' weights and of every batch
    student: nn.Module
    teacher: nn.Module | None  # frozen, in eval mode
    specs: list[StageSpec]  # every stage of the run's method, in order
    stages: dict[int, Stage]  # the stages built, by their index in ``specs``
    stream: BatchStream
    autocast: contextlib.AbstractContextManager[Any]

    @property
    def check_every(self) -> int:
        """Steps between finiteness checks of the summed loss: every step on the CPU, where a check costs
        nothing, every GPU_CHECK_EVERY on a GPU, where it syncs the device."""
        return 1 if self.device.type == "cpu" else GPU_CHECK_EVERY

    def evaluate(self, batches: Batches) -> tuple[float, float]:
        """The student's mean cross-entropy and accuracy on ``batches`` (``evaluate``)."""
        return evaluate(self.student, batches, self.autocast)


def memory_format(cfg: RunConfig) -> torch.memory_format:
    return torch.channels_last if cfg.channels_last else torch.contiguous_format


def build_step(cfg: RunConfig, teacher: nn.Module | None, device: torch.device, *, data: TaskData,
               stages: Iterable[int] | None = None) -> TrainStep:
    """The training step of a run of ``cfg`` on ``data`` (module docstring).

    ``teacher``: the frozen teacher network (moved to the run's memory format here), or None. ``stages``:
    the indices of the method's stages to build (default all; the estimate times one at a time, and a
    stage that runs no teacher needs none). The global RNG is seeded with ``cfg.seed`` for the student's
    initialisation, then the objectives' own parameters (adapters, regressors) are drawn in stage order.
    """
    fmt = memory_format(cfg)
    if teacher is not None:
        teacher.to(device).to(memory_format=fmt).eval().requires_grad_(False)
    torch.manual_seed(cfg.seed)  # model init; the data order has its own generator
    student = build_model(cfg.arch, data.num_classes, data.in_channels, cfg.width, cfg.weights)
    student.to(device).to(memory_format=fmt)
    specs = stage_specs(cfg)
    probe = normalize(data.test_x[:2], data).contiguous(memory_format=fmt)  # (2, C, H, W): reads map shapes
    ctx = StageContext(student, teacher, cfg, probe)
    objectives = {i: specs[i].objective(ctx).to(device).to(memory_format=fmt)
                  for i in (range(len(specs)) if stages is None else stages)}
    if cfg.compile:
        student.compile()  # in place: parameter names, hooks and checkpoints stay those of the eager model
    stream = BatchStream(data, cfg.batch_size, cfg.seed, augment=cfg.augment, hflip=cfg.hflip, memory_format=fmt)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    built = {}
    for i, objective in objectives.items():
        opt, sched = make_optimizer(list(student.parameters()) + list(objective.parameters()), specs[i], cfg)
        built[i] = Stage(specs[i], objective, opt, sched, autocast, stream, torch.zeros((), device=device))
    return TrainStep(cfg, device, fmt, student, teacher, specs, built, stream, autocast)
