"""The paper's claims as plug-ins: one module per claim kind, found by its key.

A claim kind is a ``ClaimKind`` subclass registered with ``@register``: its key (the ``[claims.<key>]``
table and the claims.json entry), its title in the report, its table's keys and their defaults, the
checks of its table against the grid, the arms it decides between and its rule (superiority or
non-inferiority), the descriptive tests beside the deciding one, and the published effects the report
sets it beside. grid, spec, analysis and the report ask this registry; nothing else names a claim.
Every claim sets FSP students (TREATMENT) against scratch students (CONTROL) of one group and network.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from fspbench.errors import BadKey

if TYPE_CHECKING:  # annotations only: no pandas at import
    import pandas as pd

    from fspbench.comparisons import Test
    from fspbench.spec import ClaimSpec, DesignSpec

TREATMENT, CONTROL = "fsp", "scratch"  # the methods every claim compares
COMMON_KEYS = ("group", "arch", "seeding", "smallest_effect", "control_group")  # keys every claim's table accepts
AddTest = Callable[..., None]  # add(name, treatment runs, control runs, role="control")
Published = tuple[str, str, str, float | None]  # source, setting, regime, effect in points (None: unverified)


class ClaimKind:
    """One kind of claim. Subclasses set the class attributes and override what differs."""

    key: ClassVar[str]
    title: ClassVar[str]
    order: ClassVar[int] = 100
    rule: ClassVar[str] = "superiority"  # or "noninferiority" (at -margin)
    what: ClassVar[str] = ""  # the deciding difference in words
    decides: ClassVar[str] = "fsp_vs_scratch"  # the deciding test's name in claims.json
    keys: ClassVar[tuple[str, ...]] = ("budget",)  # the table's own keys beside COMMON_KEYS
    published: ClassVar[tuple[Published, ...]] = ()
    sweep_at_full: ClassVar[bool] = False  # the budget sweep includes the full budget itself
    headroom_gates: ClassVar[bool] = True  # a ``headroom`` key is a regime check (False: reported beside it)

    @property
    def table_keys(self) -> tuple[str, ...]:
        return (*COMMON_KEYS[:2], *self.keys, *COMMON_KEYS[2:])

    def defaults(self, design: DesignSpec) -> dict[str, Any]:
        """The table's optional keys that the [design] (or the claim) fills in when the file leaves them out."""
        return {"seeding": design.seeding, "smallest_effect": design.smallest_effect}

    def check(self, key: str, c: dict[str, Any], group: Any, teacher: dict[str, Any] | None,
              students: dict[str, Any]) -> None:
        """Check the table ``c`` (defaults filled in) against its group and set ``c["budget"]`` (F); raise
        ``BadKey(key path, what)`` where it does not fit. The default: ``budget`` (else the largest budget
        FSP and scratch share) must be a budget of both."""
        if "budget" not in c:
            common = sorted(set(group.budgets[TREATMENT]) & set(group.budgets[CONTROL]))
            if not common:
                raise BadKey(f"{key}.budget", f"group {group.name} has no budget shared by {TREATMENT} and "
                                                   f"{CONTROL}")
            c["budget"] = common[-1]
        claim_budget(c, key, "budget", group, (TREATMENT, CONTROL))

    def deciding_arms(self, spec: ClaimSpec) -> tuple[tuple[str, int], tuple[str, int]]:
        """(method, main-task budget) of the treatment and the control: the arms that get seeds at every look."""
        return (TREATMENT, spec.budget), (CONTROL, spec.budget)

    def regime_arms(self, spec: ClaimSpec) -> tuple[tuple[str, int], ...]:
        """(method, budget) of the convergence check: scratch and FSP (stage 2) at F and at 2F."""
        f = spec.budget
        return (CONTROL, f), (CONTROL, 2 * f), (TREATMENT, f), (TREATMENT, 2 * f)

    def to_dict(self, spec: ClaimSpec) -> dict[str, Any]:
        """The table's keys as the file writes them."""
        d = asdict(spec)
        for k in ("key", "short_budget", "margin", "target", "family", "correction", "calibrate", "headroom_gates"):
            d.pop(k)
        if not d["control_group"]:
            d.pop("control_group")
        return d

    def boundaries(self, spec: ClaimSpec) -> list[float]:
        """The lines the report draws beside the intervals: 0 and the decision's other boundary."""
        return [0.0, -spec.margin] if self.rule == "noninferiority" else [0.0, spec.smallest_effect]

    def descriptive(self, add: AddTest, df: pd.DataFrame, runs: pd.DataFrame, spec: ClaimSpec,
                    select: Callable[..., pd.DataFrame]) -> tuple[list[Test], float | None]:
        """The claim's own descriptive tests beside the deciding one, on the first look's seeds (``add`` keeps
        a comparison; tests it builds itself are returned), and its target accuracy if it has one."""
        return [], None


class TeacherOnOwnImages(ClaimKind):
    """The two forms of better accuracy: a teacher trained on the students' own images, its lead over the scratch
    students (``headroom``) checked beside the claim, and the baselines (KD, FitNet, total steps) beside it."""

    keys: ClassVar[tuple[str, ...]] = ("budget", "headroom")

    def defaults(self, design: DesignSpec) -> dict[str, Any]:
        return {**super().defaults(design), "headroom": design.headroom}

    def descriptive(self, add: AddTest, df: pd.DataFrame, runs: pd.DataFrame, spec: ClaimSpec,
                    select: Callable[..., pd.DataFrame]) -> tuple[list[Test], float | None]:
        baselines(add, runs, spec, select)
        return [], None


def claim_budget(c: dict[str, Any], key: str, leaf: str, g: Any, methods: tuple[str, ...]) -> None:
    """``c[leaf]`` must be a budget of every one of ``methods`` in group ``g`` (a spec.GroupSpec)."""
    v = c.get(leaf)
    if not isinstance(v, int) or isinstance(v, bool):
        got = f'"{v}"' if isinstance(v, str) else repr(v)
        raise BadKey(f"{key}.{leaf}", f"expected an integer budget of group {g.name}, got {got}")
    for m in methods:
        if v not in g.budgets[m]:
            raise BadKey(f"{key}.{leaf}", f"{v} is not a budget of the {m} students of group {g.name} "
                                          f"(budgets: {g.budgets[m]})")


DATA_KEYS = ("task", "classes", "train_per_class", "image_size")  # what decides a run's training images


def same_images(key: str, group: Any, teacher: dict[str, Any] | None, students: dict[str, Any], what: str) -> None:
    """The paper's better-accuracy teachers trained on the students' own data: teacher and students must draw
    the same training images (the grid gives a student and its teacher one subset seed). BadKey where not.
    ``teacher`` and ``students``: their tables with every DATA_KEYS key and ``arch`` filled in (spec_check)."""
    if teacher is None:
        raise BadKey(f"{key}.group", f"group {group.name} has no teacher; {what} distils one")

    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, (list, tuple)) else v
    for k in DATA_KEYS:
        t, s = plain(teacher.get(k)), plain(students.get(k))
        if t != s:
            raise BadKey(f"{key}.group", f"{what} distils a teacher trained on the students' own images (the "
                                         f"paper's); teacher {group.teacher} has {k} = {t!r}, group {group.name}'s "
                                         f"students {k} = {s!r}")


def teacher_arch(teacher: dict[str, Any] | None) -> str:
    return str(teacher.get("arch", "")) if teacher is not None else ""


# FSP minus scratch as others measured it on CIFAR (source, setting, regime, scratch, FSP), in percent
_REPDISTILLER = "RepDistiller (CIFAR-100)", "240 epochs, FSP stage 30 epochs"
_KDZOO = "Knowledge-Distillation-Zoo", "200 epochs after a 50-epoch FSP stage"
_SAME_NETWORK = ((_KDZOO[0], "ResNet-20 -> ResNet-20, CIFAR-10", _KDZOO[1], 92.37, 92.76),
                 (_KDZOO[0], "ResNet-20 -> ResNet-20, CIFAR-100", _KDZOO[1], 68.92, 69.61))
_SMALLER = tuple((_REPDISTILLER[0], setting, _REPDISTILLER[1], scratch, fsp) for setting, scratch, fsp in (
    ("wrn-40-2 -> wrn-16-2", 73.26, 72.91), ("resnet56 -> resnet20", 69.06, 69.95),
    ("resnet110 -> resnet20", 69.06, 70.11), ("resnet110 -> resnet32", 71.14, 71.89),
    ("resnet32x4 -> resnet8x4", 72.50, 72.62), ("vgg13 -> vgg8", 70.36, 70.23))) + (
    (_KDZOO[0], "ResNet-110 -> ResNet-20, CIFAR-10", _KDZOO[1], 92.37, 92.78),
    (_KDZOO[0], "ResNet-110 -> ResNet-20, CIFAR-100", _KDZOO[1], 68.92, 69.78))
PUBLISHED_SAME_NETWORK: tuple[Published, ...] = tuple(
    (src, setting, regime, fsp - scratch) for src, setting, regime, scratch, fsp in _SAME_NETWORK)
PUBLISHED_SMALLER: tuple[Published, ...] = tuple(
    (src, setting, regime, fsp - scratch) for src, setting, regime, scratch, fsp in _SMALLER)


def arch_depth(arch: str) -> int:
    """Layers of a CIFAR ResNet name (resnet<6n+2>), 0 for other networks."""
    tail = arch.removeprefix("resnet")
    return int(tail) if arch.startswith("resnet") and tail.isdigit() else 0


def baselines(add: AddTest, runs: pd.DataFrame, spec: ClaimSpec, select: Callable[..., pd.DataFrame]) -> None:
    """Scratch with FSP's stage 1 added (total steps matched), and FSP against every other method of the group
    (the baselines the benchmark file puts there: KD and FitNet in the presets) at F."""
    g, a, f, k = spec.group, spec.arch, spec.budget, spec.look_every
    fsp_f = select(runs, g, TREATMENT, a, f, k)
    init = int(fsp_f["init_steps"].max()) if not fsp_f.empty else 0
    if init:
        add(f"{TREATMENT}_vs_{CONTROL}_total_steps", fsp_f, select(runs, g, CONTROL, a, f + init, k))
    for other in sorted(set(runs.loc[runs["group"] == g, "method"]) - {TREATMENT, CONTROL}):
        add(f"{TREATMENT}_vs_{other}", fsp_f, select(runs, g, other, a, f, k))


_REGISTRY: dict[str, ClaimKind] = {}
_loaded = False
K = TypeVar("K", bound=type[ClaimKind])


def register(cls: K) -> K:
    """Class decorator: make ``cls`` available under ``cls.key``."""
    _REGISTRY[cls.key] = cls()
    return cls


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            importlib.import_module(f"{__name__}.{info.name}")


def keys() -> tuple[str, ...]:
    """Every claim's key, in the report's order."""
    _load()
    return tuple(sorted(_REGISTRY, key=lambda k: (_REGISTRY[k].order, k)))


def get(key: str) -> ClaimKind:
    _load()
    return _REGISTRY[key]
