"""kd: Hinton et al.'s knowledge distillation, cross-entropy plus the temperature-softened KL to the teacher."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fspbench.methods import Method, StagePlan, main_stage, register

if TYPE_CHECKING:
    from torch import nn

    from fspbench.config import RunConfig
    from fspbench.objectives import StageContext


def kd_weights(cfg: RunConfig, start: float, end: float) -> tuple[float, float]:
    """(start, end) of the KD term's weight over its stage: the run's kd_weight_start / _end where given."""
    s = cfg.kd_weight_start if cfg.kd_weight_start is not None else start
    e = cfg.kd_weight_end if cfg.kd_weight_end is not None else end
    return s, e


def logit_mismatch(method: Method, cfg: RunConfig, teacher: RunConfig, name: str) -> tuple[str, str] | None:
    """Teacher and student of a logit-matching method must have the same classes."""
    from fspbench.config import num_classes

    if num_classes(teacher) != num_classes(cfg):
        return "methods", (f"{method.name} distils logits but {name} has {num_classes(teacher)} classes and the "
                           f"students {num_classes(cfg)}")
    return None


@register
class KD(Method):
    name = "kd"
    needs_teacher = True
    label = "KD"
    distils_logits = True
    order = 2
    color = "#9467bd"

    def plan(self, cfg: RunConfig) -> list[StagePlan]:
        return [main_stage(cfg, "ce_kd", True, kd_weights(cfg, 1.0, 1.0))]

    def objective(self, plan: StagePlan, ctx: StageContext) -> nn.Module:
        from fspbench.objectives import CrossEntropyKD

        return CrossEntropyKD(ctx, *(plan.kd_weights or (1.0, 1.0)))

    def teacher_mismatch(self, cfg: RunConfig, teacher: RunConfig, name: str) -> tuple[str, str] | None:
        return logit_mismatch(self, cfg, teacher, name)
