"""scratch: the network trained on the task alone (cross-entropy), the baseline of every claim."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fspbench.methods import Method, StagePlan, main_stage, register

if TYPE_CHECKING:
    from torch import nn

    from fspbench.config import RunConfig
    from fspbench.objectives import StageContext


@register
class Scratch(Method):
    name = "scratch"
    label = "scratch"
    order = 1
    trains_teachers = True
    color = "#d62728"

    def plan(self, cfg: RunConfig) -> list[StagePlan]:
        return [main_stage(cfg, "ce")]

    def objective(self, plan: StagePlan, ctx: StageContext) -> nn.Module:
        from fspbench.objectives import CrossEntropy

        return CrossEntropy(ctx)
