"""fitnet: Romero et al.'s hints as the FSP paper ran FitNet (its section 4.1).

Stage 1: an L2 hint at the middle section through a learned 1x1 regressor (35k steps per 21k main
steps, lr 1e-4, 1e-5 after 25k); stage 2: cross-entropy + Hinton KD (T = 3), the KD weight falling
linearly 4 -> 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fspbench.methods import Method, StagePlan, init_stage, main_stage, register
from fspbench.methods.kd import kd_weights, logit_mismatch

if TYPE_CHECKING:
    from torch import nn

    from fspbench.config import RunConfig
    from fspbench.objectives import StageContext


@register
class FitNet(Method):
    name = "fitnet"
    needs_teacher = True
    label = "FitNet"
    distils_logits = True
    order = 3
    color = "#2ca02c"

    def plan(self, cfg: RunConfig) -> list[StagePlan]:
        return [init_stage(cfg, 35 / 21, 1e-4, (25 / 35,), "hint"),
                main_stage(cfg, "ce_kd", True, kd_weights(cfg, 4.0, 1.0))]

    def objective(self, plan: StagePlan, ctx: StageContext) -> nn.Module:
        from fspbench.objectives import CrossEntropyKD, HintObjective

        return HintObjective(ctx) if plan.objective == "hint" else CrossEntropyKD(ctx, *(plan.kd_weights or (1.0, 1.0)))

    def teacher_mismatch(self, cfg: RunConfig, teacher: RunConfig, name: str) -> tuple[str, str] | None:
        return logit_mismatch(self, cfg, teacher, name)
