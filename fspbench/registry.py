"""Every name fspbench accepts, and what is known about it without torch.

Tasks, networks, methods (their stages: length, learning rate, objective) and the FSP choices
live here once. config validates against them, grid expands benchmark files with them, the
estimate and the report read them, and the torch modules (data, models, methods, features, fsp)
build from them, so none of those repeats a name and the report never imports torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fspbench.errors import BadInput

if TYPE_CHECKING:  # config imports this module for its validation
    from fspbench.config import RunConfig

# ---------------------------------------------------------------- tasks


@dataclass(frozen=True)
class TaskInfo:
    """Static facts of a full task; mean/std are per channel in 0..1 pixel units."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    test_images: int = 0  # in the official test split (time estimates read it before any data is loaded)


TASKS: dict[str, TaskInfo] = {t.name: t for t in (
    TaskInfo("fashion-mnist", 10, 1, 28, (0.2860,), (0.3530,), 10_000),
    TaskInfo("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 10_000),
    TaskInfo("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 10_000),
    # ImageNet statistics: the cross-task teacher (ResNet-34) was pretrained with them.
    TaskInfo("cub200", 200, 3, 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 5_794),
)}

# ---------------------------------------------------------------- networks

TORCHVISION_ARCHS = ("tv-resnet18", "tv-resnet34")
CIFAR_ARCH = re.compile(r"^resnet(\d+)$")


def cifar_depth_blocks(depth: int) -> int:
    """Blocks per section n for depth 6n+2; BadInput for any other depth."""
    if depth < 8 or (depth - 2) % 6:
        raise BadInput(
            f"arch: resnet{depth} is not a CIFAR ResNet: depth must be 6n+2 "
            "(resnet8, resnet14, resnet20, resnet26, resnet32, resnet56, resnet110, ...)"
        )
    return (depth - 2) // 6


def check_arch(arch: str) -> None:
    """Raise BadInput unless ``arch`` names a network fspbench can build."""
    m = CIFAR_ARCH.match(arch)
    if m:
        cifar_depth_blocks(int(m.group(1)))
    elif arch not in TORCHVISION_ARCHS:
        raise BadInput(
            f"arch: expected resnet<6n+2> (e.g. resnet8, resnet20, resnet26), "
            f"tv-resnet18 or tv-resnet34; got {arch!r}"
        )


# ---------------------------------------------------------------- FSP choices (docs/METHOD.md)

PAIR_LAYOUTS = ("paper", "consecutive", "torchdistill")
POOLS = ("max", "avg")
DISTANCES = ("paper", "mse_mean", "l2_norm_dim1", "l2_norm")
ADAPTERS = ("none", "conv1x1")

# ---------------------------------------------------------------- methods and their stages

# objective name -> whether it runs the teacher (methods.OBJECTIVES builds each one)
OBJECTIVES: dict[str, bool] = {"ce": False, "fsp": True, "hint": True, "ce_kd": True}


@dataclass(frozen=True)
class StagePlan:
    """One stage of a method for one run: its length in optimizer steps, lr schedule and objective.

    kd_weights: (start, end) of the KD term's weight, linear over the stage (objective "ce_kd").
    """

    name: str  # "init" (before the main task) or "main"
    steps: int
    lr: float
    milestones: tuple[float, ...]  # fractions of ``steps`` where lr is multiplied by gamma
    objective: str  # a key of OBJECTIVES
    kd_weights: tuple[float, float] | None = None

    @property
    def uses_teacher(self) -> bool:
        return OBJECTIVES[self.objective]


@dataclass(frozen=True)
class MethodInfo:
    name: str
    needs_teacher: bool
    plan: Callable[[RunConfig], list[StagePlan]]
    summary: str


def _main(cfg: RunConfig, objective: str, kd: tuple[float, float] | None = None) -> StagePlan:
    return StagePlan("main", cfg.steps, cfg.lr, cfg.milestones, objective, kd)


def _init(cfg: RunConfig, ratio: float, lr: float, milestones: tuple[float, ...], objective: str) -> StagePlan:
    steps = cfg.init_steps if cfg.init_steps is not None else max(1, round(cfg.steps * ratio))
    lr = cfg.init_lr if cfg.init_lr is not None else lr
    ms = cfg.init_milestones if cfg.init_milestones is not None else milestones
    return StagePlan("init", steps, lr, ms, objective)


def _kd_weights(cfg: RunConfig, start: float, end: float) -> tuple[float, float]:
    s = cfg.kd_weight_start if cfg.kd_weight_start is not None else start
    e = cfg.kd_weight_end if cfg.kd_weight_end is not None else end
    return s, e


def _fsp(cfg: RunConfig) -> list[StagePlan]:
    # paper, CIFAR-10: stage 1 lr 1e-3 / 1e-4 / 1e-5 until 11k / 16k / 21k; stage 2 the same length
    return [_init(cfg, 1.0, 1e-3, (11 / 21, 16 / 21), "fsp"), _main(cfg, "ce")]


def _fitnet(cfg: RunConfig) -> list[StagePlan]:
    # as the FSP paper ran FitNet: 35k hint steps (lr 1e-4, 1e-5 after 25k) per 21k main steps, then
    # cross-entropy + KD with its weight falling 4 -> 1
    return [_init(cfg, 35 / 21, 1e-4, (25 / 35,), "hint"), _main(cfg, "ce_kd", _kd_weights(cfg, 4.0, 1.0))]


METHODS: dict[str, MethodInfo] = {m.name: m for m in (
    MethodInfo("scratch", False, lambda cfg: [_main(cfg, "ce")], "cross-entropy only"),
    MethodInfo("fsp", True, _fsp, "FSP loss, then cross-entropy (the paper)"),
    MethodInfo("fitnet", True, _fitnet, "hint at the middle section, then CE + KD"),
    MethodInfo("kd", True, lambda cfg: [_main(cfg, "ce_kd", _kd_weights(cfg, 1.0, 1.0))], "cross-entropy + Hinton KD"),
)}


def stage_plans(cfg: RunConfig) -> list[StagePlan]:
    """The stages a run trains, in order (one for scratch and kd, two for fsp and fitnet)."""
    return METHODS[cfg.method].plan(cfg)


def init_steps(cfg: RunConfig) -> int:
    """Stage-1 steps of a run (0 for one-stage methods): what it spends before its main-task budget."""
    plans = stage_plans(cfg)
    return plans[0].steps if len(plans) > 1 else 0
