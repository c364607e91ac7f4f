"""What a benchmark file declares beyond its runs, as typed values: the claims and the ablation.

grid.py parses and checks the TOML into these (every default lives here, once); analysis.py
decides the claims from them. Neither torch nor pandas is needed to read them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ClaimSpec:
    """One ``[claims.<key>]`` table.

    group, arch: the student group and network whose FSP and scratch students are compared.
    budget: the full main-task budget F at which the claim is decided (fast_optimization's full_budget).
    short_budget: fast_optimization only: FSP's stage-2 budget set against scratch at F.
    margin: fast_optimization's non-inferiority margin (accuracy points).
    target: fraction of scratch's full-budget mean accuracy that steps-to-target counts to.
    converged_gain: the regime is converged when the upper end of the 95% interval of (scratch at 2F
    minus scratch at F) is below it (points).
    """

    key: str
    group: str
    arch: str
    budget: int
    converged_gain: float = 1.0
    short_budget: int | None = None
    margin: float = 0.5
    target: float = 0.99

    def to_dict(self) -> dict[str, Any]:
        """The table's keys as the file writes them (fast_optimization: short_budget and full_budget)."""
        d = asdict(self)
        d.pop("key")
        if self.key == "fast_optimization":
            d["full_budget"] = d.pop("budget")
        else:
            for k in ("short_budget", "margin", "target"):
                d.pop(k)
        return d


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
