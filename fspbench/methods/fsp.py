"""fsp: Yim et al. 2017. Stage 1 matches the teacher's FSP matrices (equation 2) with the teacher
frozen; stage 2 trains the task (cross-entropy) from those weights.

The paper's CIFAR-10 schedule: stage 1 at lr 1e-3 / 1e-4 / 1e-5 until 11k / 16k / 21k steps, as many
steps as the main stage. The FSP choices where implementations disagree are ``RunConfig.fsp``
(config.FSPSettings, docs/METHOD.md "Styles").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fspbench import registry
from fspbench.errors import BadKey
from fspbench.methods import Method, StagePlan, init_stage, main_stage, register

if TYPE_CHECKING:
    from torch import nn

    from fspbench.config import RunConfig
    from fspbench.objectives import StageContext


@register
class FSP(Method):
    name = "fsp"
    needs_teacher = True
    label = "FSP"
    order = 0
    color = "#1f77b4"

    def plan(self, cfg: RunConfig) -> list[StagePlan]:
        return [init_stage(cfg, 1.0, 1e-3, (11 / 21, 16 / 21), "fsp"), main_stage(cfg, "ce")]

    def objective(self, plan: StagePlan, ctx: StageContext) -> nn.Module:
        from fspbench.objectives import CrossEntropy, FSPObjective

        return FSPObjective(ctx) if plan.objective == "fsp" else CrossEntropy(ctx)

    def work(self, cfg: RunConfig, plan: StagePlan) -> dict[str, Any]:
        return {"fsp": cfg.fsp.identity()} if plan.objective == "fsp" else {}  # the pairs, pooling, distance

    def validate(self, cfg: RunConfig) -> None:
        r = cfg.fsp.resolved()
        m = registry.CIFAR_ARCH.match(cfg.arch)
        if m and r.pairs == "torchdistill" and registry.cifar_depth_blocks(int(m.group(1))) < 2:
            # torchdistill's pairs start at each section's second block (features.pair_points)
            key, instead = (("fsp.pairs", "fsp.pairs=paper or consecutive") if cfg.fsp.pairs
                            else ("fsp.style", "fsp.style=paper, repdistiller or kdzoo"))
            raise BadKey(
                key, f"the torchdistill layout needs two blocks per section (it pairs the input of each "
                f"section's second block with the section output) and {cfg.arch} has one; use a deeper "
                f"CIFAR ResNet (resnet14, resnet20, ...) or {instead}"
            )

    def teacher_mismatch(self, cfg: RunConfig, teacher: RunConfig, name: str) -> tuple[str, str] | None:
        cifar = registry.CIFAR_ARCH.match(cfg.arch) and registry.CIFAR_ARCH.match(teacher.arch)
        if cfg.fsp.adapter == "none" and cifar and cfg.width != teacher.width:
            return "fsp.adapter", (f"students of width {cfg.width} against {name} of width {teacher.width}: "
                                   "channels differ; expected equal widths or fsp = {adapter = \"conv1x1\"}")
        return None
