"""The objectives (losses) of the built-in methods' stages, with torch; fspbench.methods says which
stage of which method uses which.

| method  | stage "init" (first)                          | stage "main"                              |
|---------|-----------------------------------------------|-------------------------------------------|
| scratch | -                                             | cross-entropy                             |
| fsp     | FSP loss only, teacher frozen (paper)         | cross-entropy only, from the init weights |
| fitnet  | L2 hint at the middle section via a 1x1       | cross-entropy + Hinton KD (T = 3), KD     |
|         | regressor (as the FSP paper ran FitNet)       | weight falling linearly 4 -> 1            |
| kd      | -                                             | cross-entropy + Hinton KD                 |

An objective is an nn.Module: its own parameters (adapters, regressors) are trained with
the student's in that stage and dropped afterwards; it maps a batch to a scalar loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fspbench import methods
from fspbench.config import RunConfig
from fspbench.errors import BadInput
from fspbench.features import FeatureCapture, Point, pair_points
from fspbench.fsp import fsp_loss_to, fsp_matrix, match_spatial
from fspbench.models import section_names


@dataclass
class StageContext:
    """What an objective is built from: the networks, the run's settings and a probe batch.

    probe: (b, C, H, W) input used once to read feature-map shapes (channel checks, adapters).
    """

    student: nn.Module
    teacher: nn.Module | None
    cfg: RunConfig
    probe: torch.Tensor


class Objective(nn.Module):
    """Loss of one stage. forward(x (B,C,H,W), y (B,), progress in [0, 1)) -> scalar loss.

    ``with objective.active():`` spans a whole stage; objectives that read feature maps hook
    the networks there once, rather than on every step.
    """

    @contextmanager
    def active(self) -> Iterator[None]:
        yield

    def forward(self, x: torch.Tensor, y: torch.Tensor, progress: float) -> torch.Tensor:
        raise NotImplementedError


class HookedObjective(Objective):
    """An objective computed from feature maps of the student and the frozen teacher.

    Subclasses set ``self.hooks = [(network, points), ...]`` and define ``loss(x, y, caps)``,
    where ``caps[i].maps`` holds network i's maps of the current batch. The maps are dropped
    after each loss, so no step keeps the previous step's activations alive.
    """

    hooks: list[tuple[nn.Module, list[Point]]]
    _caps: list[FeatureCapture] | None = None

    @contextmanager
    def active(self) -> Iterator[None]:
        with ExitStack() as stack:
            self._caps = [stack.enter_context(FeatureCapture(net, pts)) for net, pts in self.hooks]
            try:
                yield
            finally:
                self._caps = None

    def forward(self, x: torch.Tensor, y: torch.Tensor, progress: float) -> torch.Tensor:
        if self._caps is None:  # called outside a stage (a single step): hooks for this call only
            with self.active():
                return self.forward(x, y, progress)
        try:
            return self.loss(x, y, self._caps)
        finally:
            for cap in self._caps:
                cap.maps.clear()

    def loss(self, x: torch.Tensor, y: torch.Tensor, caps: list[FeatureCapture]) -> torch.Tensor:
        raise NotImplementedError


def _teacher_forward(teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():  # frozen teacher: no autograd state, eval-mode batch norm
        return teacher(x)


@torch.no_grad()
def _probe_maps(model: nn.Module, points: list[Point], probe: torch.Tensor) -> dict[Point, torch.Tensor]:
    was_training = model.training
    model.eval()  # eval mode: the probe must not move batch-norm statistics
    with FeatureCapture(model, points) as cap:
        model(probe)
        maps = dict(cap.maps)
    model.train(was_training)
    return maps


class CrossEntropy(Objective):
    """Softmax cross-entropy on the task labels."""

    def __init__(self, ctx: StageContext) -> None:
        super().__init__()
        self.student = [ctx.student]  # a list: not registered as a submodule of the objective

    def forward(self, x: torch.Tensor, y: torch.Tensor, progress: float) -> torch.Tensor:
        return F.cross_entropy(self.student[0](x), y)


class FSPObjective(HookedObjective):
    """Stage 1 of the paper: match the teacher's FSP matrices (equation 2), nothing else.

    The settings are cfg.fsp resolved through its style (config.FSPSettings.resolved). Teacher
    and student pairs come from the same layout; a teacher with more sections than the student
    contributes its first ones. Channel counts must match pair by pair unless cfg.fsp.adapter =
    "conv1x1", which learns a 1x1 projection of each mismatched student map onto the teacher's
    channels (a deviation from the paper).
    """

    def __init__(self, ctx: StageContext) -> None:
        super().__init__()
        assert ctx.teacher is not None
        s = ctx.cfg.fsp.resolved()
        self.settings = s
        self.student, self.teacher = [ctx.student], [ctx.teacher]
        self.s_pairs = pair_points(ctx.student, s.pairs)
        t_pairs = pair_points(ctx.teacher, s.pairs)
        if len(t_pairs) < len(self.s_pairs):
            raise BadInput(
                f"fsp.pairs: the teacher has {len(t_pairs)} sections, the student {len(self.s_pairs)}; "
                "pick a teacher with at least as many sections"
            )
        self.t_pairs = t_pairs[: len(self.s_pairs)]
        self.weights = s.pair_weights(len(self.s_pairs))  # lambda_i, BadInput on a wrong count
        s_maps = _probe_maps(ctx.student, [p for pr in self.s_pairs for p in pr], ctx.probe)
        t_maps = _probe_maps(ctx.teacher, [p for pr in self.t_pairs for p in pr], ctx.probe)
        self.adapters = nn.ModuleDict()
        for i, (sp, tp) in enumerate(zip(self.s_pairs, self.t_pairs)):
            for s_pt, t_pt in zip(sp, tp):
                c_s, c_t = s_maps[s_pt].shape[1], t_maps[t_pt].shape[1]
                if c_s == c_t:
                    continue
                if s.adapter != "conv1x1":
                    raise BadInput(
                        f"fsp.adapter: pair {i + 1} has {c_s} student channels at {s_pt.module} against "
                        f"{c_t} teacher channels at {t_pt.module}; give the student the teacher's widths "
                        "or set fsp.adapter=conv1x1 (learned 1x1 projections, not in the paper)"
                    )
                self.adapters[self._key(s_pt)] = nn.Conv2d(c_s, c_t, 1, bias=False).to(ctx.probe.device)
        self.hooks = [(ctx.teacher, [p for pr in self.t_pairs for p in pr]),
                      (ctx.student, [p for pr in self.s_pairs for p in pr])]

    @staticmethod
    def _key(p: Point) -> str:
        return f"{p.module}:{p.io}".replace(".", "_")

    def _adapt(self, p: Point, t: torch.Tensor) -> torch.Tensor:
        key = self._key(p)
        return self.adapters[key](t) if key in self.adapters else t

    def loss(self, x: torch.Tensor, y: torch.Tensor, caps: list[FeatureCapture]) -> torch.Tensor:
        tcap, scap = caps
        s = self.settings
        with torch.inference_mode():  # frozen teacher: neither its maps nor its matrices need autograd
            self.teacher[0](x)
            g_teacher = [fsp_matrix(a, b, s.pool) for a, b in tcap.pairs(self.t_pairs)]  # (B, m, n) each
        self.student[0](x)
        s_maps = [(self._adapt(a, scap.maps[a]), self._adapt(b, scap.maps[b])) for a, b in self.s_pairs]
        return fsp_loss_to(s_maps, g_teacher, pool=s.pool, distance=s.distance, weights=self.weights)


class HintObjective(HookedObjective):
    """FitNet stage 1: L = 1/2 ||u_T - r(v_S)||^2 (sum over the map, mean over examples).

    u_T: the teacher's middle-section output; v_S: the student's, through a learned 1x1
    regressor r onto the teacher's channels; the larger map is max-pooled to the smaller.
    """

    def __init__(self, ctx: StageContext) -> None:
        super().__init__()
        assert ctx.teacher is not None
        self.student, self.teacher = [ctx.student], [ctx.teacher]
        s_secs, t_secs = section_names(ctx.student), section_names(ctx.teacher)
        self.s_point = Point(s_secs[len(s_secs) // 2])
        self.t_point = Point(t_secs[len(t_secs) // 2])
        c_s = _probe_maps(ctx.student, [self.s_point], ctx.probe)[self.s_point].shape[1]
        c_t = _probe_maps(ctx.teacher, [self.t_point], ctx.probe)[self.t_point].shape[1]
        self.regressor = nn.Conv2d(c_s, c_t, 1, bias=False).to(ctx.probe.device)
        self.hooks = [(ctx.teacher, [self.t_point]), (ctx.student, [self.s_point])]

    def loss(self, x: torch.Tensor, y: torch.Tensor, caps: list[FeatureCapture]) -> torch.Tensor:
        tcap, scap = caps
        _teacher_forward(self.teacher[0], x)
        self.student[0](x)
        u = tcap.maps[self.t_point]  # (B, C_t, H_t, W_t)
        v = self.regressor(scap.maps[self.s_point])  # (B, C_t, H_s, W_s)
        u, v = match_spatial(u, v, "max")
        return 0.5 * (u - v).pow(2).sum(dim=(1, 2, 3)).mean()


MapLoss = Callable[[list[torch.Tensor], list[torch.Tensor]], torch.Tensor]  # (student maps, teacher maps) -> loss


class SectionMapsObjective(HookedObjective):
    """Cross-entropy plus a loss between the student's and the frozen teacher's section outputs: the
    building block of methods that match feature maps section by section (attention transfer's).

    ``map_loss(student_maps, teacher_maps)`` -> scalar, each a list of (B, C, H, W) maps, one per section of
    the student, in order; a teacher with more sections than the student contributes its first ones.
    """

    def __init__(self, ctx: StageContext, map_loss: MapLoss) -> None:
        super().__init__()
        assert ctx.teacher is not None
        self.student, self.teacher = [ctx.student], [ctx.teacher]
        s_secs, t_secs = section_names(ctx.student), section_names(ctx.teacher)
        if len(t_secs) < len(s_secs):
            raise BadInput(f"teacher: it has {len(t_secs)} sections, the student {len(s_secs)}; "
                           "pick a teacher with at least as many sections")
        self.s_points = [Point(n) for n in s_secs]
        self.t_points = [Point(n) for n in t_secs[: len(s_secs)]]
        self.map_loss = map_loss
        self.hooks = [(ctx.teacher, self.t_points), (ctx.student, self.s_points)]

    def loss(self, x: torch.Tensor, y: torch.Tensor, caps: list[FeatureCapture]) -> torch.Tensor:
        tcap, scap = caps
        _teacher_forward(self.teacher[0], x)
        logits = self.student[0](x)
        s_maps = [scap.maps[p] for p in self.s_points]
        t_maps = [tcap.maps[p].clone() for p in self.t_points]  # out of inference mode: autograd may read them
        return F.cross_entropy(logits, y) + self.map_loss(s_maps, t_maps)


def kd_term(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton KD: T^2 * KL(softmax(t / T) || softmax(s / T)), mean over examples. Logits (B, K)."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2


class CrossEntropyKD(Objective):
    """Cross-entropy plus w(progress) * KD, w linear from kd_weight_start to kd_weight_end."""

    def __init__(self, ctx: StageContext, w_start: float, w_end: float) -> None:
        super().__init__()
        self.student, self.teacher = [ctx.student], [ctx.teacher]
        self.temperature = ctx.cfg.kd_temperature
        self.w_start, self.w_end = w_start, w_end

    def forward(self, x: torch.Tensor, y: torch.Tensor, progress: float) -> torch.Tensor:
        t_logits = _teacher_forward(self.teacher[0], x).to(torch.float32)
        s_logits = self.student[0](x)
        if s_logits.shape != t_logits.shape:
            raise BadInput(
                f"teacher: KD needs the teacher's classes to be the student's: logits "
                f"{tuple(t_logits.shape[1:])} against {tuple(s_logits.shape[1:])}"
            )
        w = self.w_start + (self.w_end - self.w_start) * progress
        return F.cross_entropy(s_logits, y) + w * kd_term(s_logits, t_logits.clone(), self.temperature)


@dataclass(frozen=True)
class StageSpec:
    """One stage: its method's plan (length, lr schedule, objective name, teacher or not) and the factory
    of its objective."""

    plan: methods.StagePlan
    objective: Callable[[StageContext], Objective]

    @property
    def name(self) -> str:  # "init" (before the main task) or "main"
        return self.plan.name

    @property
    def steps(self) -> int:
        return self.plan.steps

    @property
    def lr(self) -> float:
        return self.plan.lr

    @property
    def milestones(self) -> tuple[float, ...]:  # fractions of ``steps`` where lr is multiplied by gamma
        return self.plan.milestones


def stage_specs(cfg: RunConfig) -> list[StageSpec]:
    """A run's stages, each with the factory of its objective (its method's ``objective``)."""
    method = methods.get(cfg.method)

    def factory(plan: methods.StagePlan) -> Callable[[StageContext], Objective]:
        return lambda ctx: method.objective(plan, ctx)  # type: ignore[return-value]

    return [StageSpec(p, factory(p)) for p in method.plan(cfg)]
