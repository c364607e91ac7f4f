"""Feature capture with forward hooks: the models are never changed.

A ``Point`` names one feature map: a submodule's input or output, optionally passed
through a ReLU (torchvision blocks reuse one in-place ReLU, so their first activation is
read at ``bn1`` and rectified here). ``FeatureCapture`` hooks a set of points for as long
as its ``with`` block lasts and removes every hook on exit.

FSP pair layouts (docs/METHOD.md, "Pair layouts"), for a network with sections S1..Sk, each a
sequence of blocks Si.0, Si.1, ...:
- "paper":        per section, its first feature map (the first block's first activation)
                  and its last (the section output): (first(Si), out(Si)).
- "consecutive":  consecutive stage outputs, stage 0 being the stem (the input of S1):
                  (out(S(i-1)), out(Si)) (RepDistiller, Knowledge-Distillation-Zoo).
- "torchdistill": within each section, (in(S1), out(S1)), then (in(Si.1), out(Si)) for i >= 2:
                  the second block's input, so that both maps have the section's size
                  (torchdistill's FSPLoss config for ResNet-34 -> ResNet-18). Needs two blocks per section.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

import torch
from torch import nn

from fspbench.errors import BadInput
from fspbench.models import section_names
from fspbench.registry import PAIR_LAYOUTS


@dataclass(frozen=True)
class Point:
    """One feature map: ``module``'s "input" or "output", rectified if ``relu``."""

    module: str
    io: str = "output"
    relu: bool = False


def section_first(model: nn.Module, section: str) -> Point:
    """The first feature map produced inside ``section``: its first block's first activation."""
    block = f"{section}.0"
    if hasattr(model.get_submodule(block), "act1"):
        return Point(f"{block}.act1")
    return Point(f"{block}.bn1", relu=True)  # torchvision BasicBlock: shared in-place ReLU


def torchdistill_first(model: nn.Module, index: int, section: str) -> Point:
    """First map of torchdistill's pair ``index`` (0-based): the section input for the first section,
    else the input of its second block (the output of the downsampling first block)."""
    if index == 0:
        return Point(section, io="input")
    blocks = len(model.get_submodule(section))
    if blocks < 2:
        raise BadInput(
            f"fsp.pairs: the torchdistill layout pairs the input of {section}.1 with {section}'s output, but "
            f"{section} of this {type(model).__name__} has {blocks} block; use fsp.pairs=paper or consecutive "
            "(or fsp.style=paper, repdistiller, kdzoo), or networks with two blocks per section"
        )
    return Point(f"{section}.1", io="input")


def pair_points(model: nn.Module, layout: str) -> list[tuple[Point, Point]]:
    """The (first, second) feature-map pairs of ``layout``, one per section."""
    sections = section_names(model)
    outs = [Point(s) for s in sections]
    if layout == "paper":
        return [(section_first(model, s), Point(s)) for s in sections]
    if layout == "consecutive":
        return list(zip([Point(sections[0], io="input"), *outs[:-1]], outs))
    if layout == "torchdistill":
        return [(torchdistill_first(model, i, s), o) for i, (s, o) in enumerate(zip(sections, outs))]
    raise ValueError(f"unknown pair layout {layout!r}; expected one of {PAIR_LAYOUTS}")


class FeatureCapture:
    """Hook ``points`` of ``model``; after each forward, ``maps[point]`` holds that tensor.

    Only the hooked maps are kept (one reference each), so capturing a frozen teacher under
    ``torch.inference_mode`` costs no more memory than the maps themselves.
    """

    def __init__(self, model: nn.Module, points: Iterable[Point]) -> None:
        self.model = model
        self.points = list(dict.fromkeys(points))  # unique, order kept
        self.maps: dict[Point, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> FeatureCapture:
        by_module: dict[tuple[str, str], list[Point]] = {}
        for p in self.points:
            by_module.setdefault((p.module, p.io), []).append(p)
        for (name, io), pts in by_module.items():
            module = self.model.get_submodule(name)
            if io == "input":
                hook = self._pre_hook(pts)
                self._handles.append(module.register_forward_pre_hook(hook))
            else:
                hook = self._hook(pts)
                self._handles.append(module.register_forward_hook(hook))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.maps.clear()

    def _store(self, pts: list[Point], t: torch.Tensor) -> None:
        for p in pts:
            self.maps[p] = torch.relu(t) if p.relu else t

    def _pre_hook(self, pts: list[Point]):
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            self._store(pts, args[0])

        return hook

    def _hook(self, pts: list[Point]):
        def hook(_module: nn.Module, _args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            self._store(pts, out)

        return hook

    def pairs(self, pairs: list[tuple[Point, Point]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The captured tensors of ``pairs``, in order."""
        return [(self.maps[a], self.maps[b]) for a, b in pairs]
