"""Claim 2, better accuracy, as the paper's Table 1 states it: the FSP student ends more accurate than the same
network trained from scratch, its teacher being that network trained normally on the students' own images
(superiority at the full budget F). The teachers' lead over scratch (headroom) is reported beside it, not
required: a teacher of the student's own network and data has little to give, which is what the claim says
it gives anyway. The smaller-student form (Tables 3-4) is a claim of its own."""

from __future__ import annotations

from typing import Any

from fspbench.claims import PUBLISHED_SAME_NETWORK, TeacherOnOwnImages, register, same_images, teacher_arch
from fspbench.errors import BadKey


@register
class BetterAccuracy(TeacherOnOwnImages):
    key = "better_accuracy"
    title = "Claim 2: better accuracy (the same network as teacher, Table 1)"
    order = 2
    what = "FSP (stage 2 at the full budget) minus scratch (the full budget), teacher of the same network and data"
    headroom_gates = False
    published = (
        ("paper, Table 1 (unverified)", "CIFAR-10 ResNet-26 -> ResNet-26, FSP vs scratch", "paper schedules", None),
        *PUBLISHED_SAME_NETWORK,
    )

    def check(self, key: str, c: dict[str, Any], group: Any, teacher: dict[str, Any] | None,
              students: dict[str, Any]) -> None:
        super().check(key, c, group, teacher, students)
        same_images(key, group, teacher, students, "better_accuracy (the paper's Table 1)")
        if teacher_arch(teacher) != c["arch"]:
            raise BadKey(f"{key}.group", f"better_accuracy distils a teacher of the student's own network (the "
                                         f"paper's Table 1); teacher {group.teacher} is {teacher_arch(teacher)}, "
                                         f"the claim's arch {c['arch']}: a deeper teacher is the paper's network "
                                         "minimization, a claim of its own")
