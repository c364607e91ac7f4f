"""Claim 2, the smaller student (network minimization, the paper's Tables 3-4): the FSP student distilled from a
deeper teacher trained on the students' own images ends more accurate than the same small network trained from
scratch (superiority at the full budget F). Only a teacher that leads the scratch students has anything to give:
the teachers' lead (``headroom`` points, the 90% interval's low end) is a regime check that gates its decisions."""

from __future__ import annotations

from typing import Any

from fspbench.claims import PUBLISHED_SMALLER, TeacherOnOwnImages, arch_depth, register, same_images, teacher_arch
from fspbench.errors import BadKey


@register
class NetworkMinimization(TeacherOnOwnImages):
    key = "network_minimization"
    title = "Claim 2b: better accuracy of a smaller student (network minimization, Tables 3-4)"
    order = 2
    what = "FSP (stage 2 at the full budget) minus scratch (the full budget), a deeper teacher on the same data"
    published = (
        ("paper, Tables 3/4 (unverified)",
         "CIFAR-10 ResNet-26 -> ResNet-8; CIFAR-100 ResNet-32 -> ResNet-14, FSP vs scratch", "paper schedules", None),
        *PUBLISHED_SMALLER,
    )

    def check(self, key: str, c: dict[str, Any], group: Any, teacher: dict[str, Any] | None,
              students: dict[str, Any]) -> None:
        super().check(key, c, group, teacher, students)
        same_images(key, group, teacher, students, "network_minimization (the paper's Tables 3-4)")
        t_arch = teacher_arch(teacher)
        if not arch_depth(t_arch) > arch_depth(c["arch"]) > 0:
            raise BadKey(f"{key}.group", f"network minimization distils a deeper teacher into the claim's arch "
                                         f"{c['arch']}; teacher {group.teacher} is {t_arch}")
