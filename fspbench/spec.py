"""What a benchmark file declares beyond its runs, as typed values: the claims and the ablation.

grid.py parses and checks the TOML into these (every default lives here, once); analysis.py
decides the claims from them. Neither torch nor pandas is needed to read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fspbench import claims

SEEDINGS = ("independent", "paired")
SUBSETS = ("per_seed", "shared")
CORRECTIONS = ("bonferroni", "none")  # across the claims of a family
CALIBRATIONS = ("bootstrap_t", "none")


def claim_alpha(alpha: float, family_size: int, correction: str) -> float:
    """One claim's one-sided level per side in a family of ``family_size`` claims: Bonferroni alpha / k (it holds
    under any dependence between the claims, which share the scratch arm)."""
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    return alpha / family_size if correction == "bonferroni" and family_size > 1 else alpha


@dataclass(frozen=True)
class DesignSpec:
    """The ``[design]`` table: how a grid's claims get their seeds and are decided (pre-registered).

    seeding: "independent" (each arm of a comparison draws its own seeds: Welch intervals) or
    "paired" (arms share seed k on purpose, same initial weights and batch order: paired intervals).
    look_every: seeds per arm added at each look; max_seeds: seeds per arm at the last look.
    alpha: one-sided error per side (Lan-DeMets O'Brien-Fleming-type spending over the looks).
    smallest_effect: the smallest effect of interest (points): the convergence threshold of the
    regime checks, and "no benefit as large as this" contradicts a superiority claim.
    headroom: the regime check of claims that need headroom (their ``headroom`` key): the teachers minus
    scratch students of the student's network, lower end of the repeated interval, in points.
    subsets: "per_seed" (student seed i trains on its own draw of training images, subset seed i, and its
    teacher on the same draw: the verdicts cover which images were drawn) or "shared" (one draw for all).
    family: the claims whose error is controlled together (None: every claim of the file).
    correction: "bonferroni" (each claim of the family at alpha / k per side) or "none".
    calibrate: "bootstrap_t" (each look's critical values never below the bootstrap-t ones: skew) or "none".
    """

    seeding: str
    look_every: int = 5
    max_seeds: int = 20
    alpha: float = 0.025
    smallest_effect: float = 0.5
    headroom: float = 2.0
    subsets: str = "per_seed"
    family: tuple[str, ...] | None = None
    correction: str = "bonferroni"
    calibrate: str = "bootstrap_t"

    @property
    def looks(self) -> int:
        return self.max_seeds // self.look_every


@dataclass(frozen=True)
class ClaimSpec:
    """One ``[claims.<key>]`` table, with the grid's [design] filled in where the claim does not override it.

    group, arch: the student group and network whose FSP and scratch students are compared.
    budget: the full main-task budget F at which the claim is decided (a "full_budget" key where the claim
    kind calls it so).
    short_budget: a non-inferiority claim's FSP stage-2 budget set against scratch at F (else None).
    margin: a non-inferiority claim's margin (accuracy points).
    target: fraction of scratch's full-budget mean accuracy that steps-to-target counts to.
    seeding, look_every, max_seeds, alpha, smallest_effect: as DesignSpec, for this claim (alpha: the
    family's level per side before its correction; ``claim_alpha`` after it).
    headroom: the teachers' lead over scratch that the regime check asks for (points; 0: not checked);
    it gates the claim's decisions only when ``headroom_gates``.
    control_group: a group whose scratch students (same network, same images, seed i) are this claim's control
    too, so two claims of one network share one scratch arm (e.g. the paper's two forms of better accuracy).
    """

    key: str
    group: str
    arch: str
    budget: int
    seeding: str = "independent"
    look_every: int = 5
    max_seeds: int = 20
    alpha: float = 0.025
    smallest_effect: float = 0.5
    headroom: float = 0.0
    short_budget: int | None = None
    margin: float = 0.5
    target: float = 0.99
    family: tuple[str, ...] = ()  # the claims whose error is controlled together (this one among them)
    correction: str = "none"  # across the family: "bonferroni" or "none"
    calibrate: str = "none"  # "bootstrap_t" or "none"
    headroom_gates: bool = True  # False: the teachers' lead is reported, not required
    control_group: str = ""  # the group whose scratch students are the control ("": the claim's own group)

    @property
    def control(self) -> str:
        """The group of the control arm (scratch): ``control_group``, else the claim's group."""
        return self.control_group or self.group

    @property
    def looks(self) -> int:
        return self.max_seeds // self.look_every

    @property
    def claim_alpha(self) -> float:
        """This claim's one-sided level per side: alpha, divided by the family's size under Bonferroni."""
        return claim_alpha(self.alpha, max(1, len(self.family)), self.correction)

    @property
    def paired(self) -> bool:
        return self.seeding == "paired"

    def deciding_arms(self) -> tuple[tuple[str, int], tuple[str, int]]:
        """(method, main-task budget) of the treatment and the control: the arms that get seeds at every look."""
        return claims.get(self.key).deciding_arms(self)

    def regime_arms(self) -> tuple[tuple[str, int], ...]:
        """(method, budget) of the convergence check: scratch and FSP (stage 2) at F and at 2F."""
        return claims.get(self.key).regime_arms(self)

    def to_dict(self) -> dict[str, Any]:
        """The table's keys as the file writes them (its claim kind's)."""
        return claims.get(self.key).to_dict(self)


@dataclass(frozen=True)
class AblationSpec:
    """The ``[ablation]`` table: every arm's FSP students against the reference group's, at one budget.

    equivalence: points within which an arm's difference counts as "no effect".
    """

    reference: str
    arms: tuple[str, ...]
    budget: int
    equivalence: float = 0.5
    converged_gain: float = 1.0
    correction: str = "bonferroni"  # [design] grids: across the arms ("bonferroni": alpha / arms per side, or "none")


@dataclass(frozen=True)
class TeacherSpec:
    """One ``[teachers.<id>]`` table: a teacher trained from scratch once per seed."""

    id: str
    seeds: tuple[int, ...]
    settings: dict[str, Any]  # RunConfig keys of this table, over [defaults]


@dataclass(frozen=True)
class GroupSpec:
    """One ``[students.<name>]`` table: methods x archs x seeds x budgets.

    teacher_seeds: student seed k learns from the teacher of seed teacher_seeds[k % len] (empty: no teacher).
    budgets: method -> its main-task budgets (steps). settings: RunConfig keys over [defaults];
    method_settings: method -> RunConfig keys for that method's runs only.
    """

    name: str
    teacher: str  # a TeacherSpec id, "" for none
    teacher_seeds: tuple[int, ...]
    methods: tuple[str, ...]
    archs: tuple[str, ...]
    seeds: tuple[int, ...]
    budgets: dict[str, list[int]]
    settings: dict[str, Any]
    method_settings: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class TrackingSpec:
    """The ``[tracking]`` table: mlflow, an MLflow tracking URI the curves also go to (None: none)."""

    mlflow: str | None = None


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark file, parsed and checked; grid.expand turns it into runs."""

    name: str
    description: str
    resources: dict[str, float]  # per trial: {"cpu": ..., "gpu": ...}
    defaults: dict[str, Any]  # RunConfig keys of [defaults]
    teachers: tuple[TeacherSpec, ...]
    groups: tuple[GroupSpec, ...]
    claims: dict[str, ClaimSpec]
    ablation: AblationSpec | None
    max_concurrent: int | None = None  # [resources] max_concurrent: at most this many trials at once
    design: DesignSpec | None = None  # [design]: present exactly when the grid has claims
    tracking: TrackingSpec = TrackingSpec()  # [tracking]
