"""Claim 3, cross-task transfer: the FSP student learns from a teacher trained on another task (another
data set, other classes or outside weights); superiority at the full budget F."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fspbench.claims import AddTest, ClaimKind, baselines, register
from fspbench.errors import BadKey

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

    from fspbench.comparisons import Test
    from fspbench.spec import ClaimSpec


def _task(d: dict[str, Any]) -> tuple[str, tuple[int, ...]]:
    from fspbench.config import RunConfig

    return d.get("task", RunConfig.task), tuple(d.get("classes", ())) or ()


@register
class CrossTaskTransfer(ClaimKind):
    key = "cross_task_transfer"
    title = "Claim 3: cross-task transfer"
    order = 3
    what = "FSP (stage 2 at the full budget) minus scratch (the full budget)"
    published = (
        ("paper, Table 5 (unverified)", "ImageNet ResNet-34 -> ResNet-20 on CUB-200, FSP vs scratch", "not stated",
         None),
    )

    def check(self, key: str, c: dict[str, Any], group: Any, teacher: dict[str, Any] | None,
              students: dict[str, Any]) -> None:
        super().check(key, c, group, teacher, students)
        if teacher is not None and _task(teacher) == _task(students) and not teacher.get("weights"):
            raise BadKey(f"{key}.group", f"the teacher {group.teacher} of group {group.name} is trained on the "
                                              "students' own task and classes; expected a teacher from another "
                                              "task, other classes or pretrained weights")

    def descriptive(self, add: AddTest, df: pd.DataFrame, runs: pd.DataFrame, spec: ClaimSpec,
                    select: Callable[..., pd.DataFrame]) -> tuple[list[Test], float | None]:
        baselines(add, runs, spec, select)
        return [], None
