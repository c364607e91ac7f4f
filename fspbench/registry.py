"""Every name fspbench accepts, and what is known about it without torch.

Tasks, networks and the FSP choices live here once (methods are plug-ins: fspbench.methods). config
validates against them, grid expands benchmark files with them, the estimate and the report read them,
and the torch modules (data, models, features, fsp) build from them, so none of those repeats a name
and the report never imports torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fspbench.errors import BadKey

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
        raise BadKey(
            "arch", f"resnet{depth} is not a CIFAR ResNet: depth must be 6n+2 "
            "(resnet8, resnet14, resnet20, resnet26, resnet32, resnet56, resnet110, ...)"
        )
    return (depth - 2) // 6


def check_arch(arch: str) -> None:
    """Raise BadInput unless ``arch`` names a network fspbench can build."""
    m = CIFAR_ARCH.match(arch)
    if m:
        cifar_depth_blocks(int(m.group(1)))
    elif arch not in TORCHVISION_ARCHS:
        raise BadKey(
            "arch", f"expected resnet<6n+2> (e.g. resnet8, resnet20, resnet26), "
            f"tv-resnet18 or tv-resnet34; got {arch!r}"
        )


# ---------------------------------------------------------------- FSP choices (docs/METHOD.md)

PAIR_LAYOUTS = ("paper", "consecutive", "torchdistill")
POOLS = ("max", "avg")
DISTANCES = ("paper", "mse_mean", "l2_norm_dim1", "l2_norm")
ADAPTERS = ("none", "conv1x1")
