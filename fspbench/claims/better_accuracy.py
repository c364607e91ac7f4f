"""Claim 2, better accuracy: the FSP student ends more accurate than the same network trained from scratch,
also when it is smaller than its teacher (superiority at the full budget F, with headroom: the teachers
must lead the scratch students by ``headroom`` points, as the paper's do)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fspbench.claims import AddTest, ClaimKind, baselines, register

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

    from fspbench.comparisons import Test
    from fspbench.spec import ClaimSpec, DesignSpec

# FSP minus scratch as others measured it: (setting, scratch, FSP) in percent
_REPDISTILLER = (("wrn-40-2 -> wrn-16-2", 73.26, 72.91), ("resnet56 -> resnet20", 69.06, 69.95),
                 ("resnet110 -> resnet20", 69.06, 70.11), ("resnet110 -> resnet32", 71.14, 71.89),
                 ("resnet32x4 -> resnet8x4", 72.50, 72.62), ("vgg13 -> vgg8", 70.36, 70.23))
_KDZOO = (("ResNet-20 -> ResNet-20, CIFAR-10", 92.37, 92.76), ("ResNet-110 -> ResNet-20, CIFAR-10", 92.37, 92.78),
          ("ResNet-20 -> ResNet-20, CIFAR-100", 68.92, 69.61), ("ResNet-110 -> ResNet-20, CIFAR-100", 68.92, 69.78))


@register
class BetterAccuracy(ClaimKind):
    key = "better_accuracy"
    title = "Claim 2: better accuracy"
    order = 2
    what = "FSP (stage 2 at the full budget) minus scratch (the full budget)"
    keys = ("budget", "headroom")
    published = (
        ("paper, Tables 3/4 (unverified)",
         "CIFAR-10 ResNet-26 -> ResNet-8; CIFAR-100 ResNet-32 -> ResNet-14, FSP vs scratch", "paper schedules", None),
        *[("RepDistiller (CIFAR-100)", setting, "240 epochs, FSP stage 30 epochs", fsp - scratch)
          for setting, scratch, fsp in _REPDISTILLER],
        *[("Knowledge-Distillation-Zoo", setting, "200 epochs after a 50-epoch FSP stage", fsp - scratch)
          for setting, scratch, fsp in _KDZOO],
    )

    def defaults(self, design: DesignSpec) -> dict[str, Any]:
        return {**super().defaults(design), "headroom": design.headroom}

    def descriptive(self, add: AddTest, df: pd.DataFrame, runs: pd.DataFrame, spec: ClaimSpec,
                    select: Callable[..., pd.DataFrame]) -> tuple[list[Test], float | None]:
        baselines(add, runs, spec, select)
        return [], None
