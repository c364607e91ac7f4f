"""Training methods as plug-ins: one module per method, found by name.

A method is a ``Method`` subclass registered with ``@register``: its name, whether it needs a teacher,
its label, its own settings (``RunConfig.options``, validated here), its stages (each
an objective name with its length and learning-rate schedule) and how each stage's objective is
built. Importing a method module needs no torch (config, grid, estimate and the report read methods
without it); an objective is built, with torch, only when a run trains.

The built-in methods are the modules of this package; another installed package adds its own through
the ``fspbench.methods`` entry-point group (``importlib.metadata``), whose entry points name a module
(or object) that registers methods when it is loaded. Nothing else in fspbench names a method.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from fspbench.errors import BadKey

if TYPE_CHECKING:  # annotations only: this package must import without torch
    from torch import nn

    from fspbench.config import RunConfig
    from fspbench.objectives import StageContext

ENTRY_POINTS = "fspbench.methods"
Option = bool | int | float | str


@dataclass(frozen=True)
class StagePlan:
    """One stage of a method for one run: its length in optimizer steps, lr schedule and objective.

    objective: a name that identifies the stage's work (the time estimate times each distinct one
    once); uses_teacher: whether that work runs the frozen teacher.
    kd_weights: (start, end) of a KD term's weight, linear over the stage, where the objective has one.
    """

    name: str  # "init" (before the main task) or "main"
    steps: int
    lr: float
    milestones: tuple[float, ...]  # fractions of ``steps`` where lr is multiplied by gamma
    objective: str
    uses_teacher: bool = False
    kd_weights: tuple[float, float] | None = None


class Method:
    """What fspbench knows of one training method. Subclasses set the class attributes and ``plan``.

    settings: the method's own options with their defaults (``RunConfig.options``; a run's options
    are checked against them: unknown keys and wrong types are refused).
    distils_logits: the method matches the teacher's logits, so teacher and student need the same classes.
    trains_teachers: a grid's teachers are trained with this method (one method says so: scratch).
    """

    name: ClassVar[str]
    needs_teacher: ClassVar[bool] = False
    label: ClassVar[str] = ""  # its name in prose (FSP, KD, ...)
    settings: ClassVar[dict[str, Option]] = {}
    distils_logits: ClassVar[bool] = False
    trains_teachers: ClassVar[bool] = False
    order: ClassVar[int] = 100  # where the report lists it (built-ins first)
    color: ClassVar[str] = ""  # its colour in the report's figures ("": the next of a cycle)

    def plan(self, cfg: RunConfig) -> list[StagePlan]:
        """The stages a run of this method trains, in order."""
        raise NotImplementedError

    def work(self, cfg: RunConfig, plan: StagePlan) -> dict[str, Any]:
        """Settings beyond the networks, batch and objective that change the work of one of this method's
        stages (the time estimate calibrates each distinct work once); none by default."""
        return {}

    def objective(self, plan: StagePlan, ctx: StageContext) -> nn.Module:
        """The objective (an ``objectives.Objective``) of one of this method's stages; torch is imported here."""
        raise NotImplementedError

    def validate(self, cfg: RunConfig) -> None:
        """Checks of a run's settings that only this method knows (BadInput naming the key)."""

    def teacher_mismatch(self, cfg: RunConfig, teacher: RunConfig, name: str) -> tuple[str, str] | None:
        """Why ``teacher``'s run cannot teach ``cfg``'s under this method: (key at fault, what is wrong)."""
        return None

    def option(self, cfg: RunConfig, key: str) -> Any:
        """A run's value of one of this method's settings: its options', else the default."""
        return dict(cfg.options).get(key, self.settings[key])

    def check_options(self, options: dict[str, Any]) -> None:
        """Refuse options this method does not have, or of the wrong type, naming the key."""
        for key, value in options.items():
            if key not in self.settings:
                known = ", ".join(f"options.{k}" for k in self.settings) or "none"
                close = difflib.get_close_matches(key, list(self.settings), n=1)
                hint = f" (did you mean options.{close[0]}?)" if close else ""
                raise BadKey(f"options.{key}", f"method {self.name!r} has no such setting{hint}; its settings: {known}")
            default = self.settings[key]
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) if isinstance(default, float) \
                else isinstance(value, type(default)) and (isinstance(default, bool) or not isinstance(value, bool))
            if not ok:
                raise BadKey(f"options.{key}", f"expected a {type(default).__name__} (like {default!r}), got {value!r}")


_REGISTRY: dict[str, Method] = {}
_loaded = False
M = TypeVar("M", bound=type[Method])


def register(cls: M) -> M:
    """Class decorator: make ``cls`` (a Method subclass) available under ``cls.name``."""
    if cls.name in _REGISTRY and type(_REGISTRY[cls.name]) is not cls:
        raise ValueError(f"method {cls.name!r} is registered twice ({type(_REGISTRY[cls.name]).__module__} "
                         f"and {cls.__module__})")
    _REGISTRY[cls.name] = cls()
    return cls


def _load() -> None:
    """Import the built-in method modules, then every ``fspbench.methods`` entry point (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{info.name}")
    for ep in entry_points(group=ENTRY_POINTS):
        ep.load()


def names() -> tuple[str, ...]:
    """Every method's name, in report order (``Method.order``: the built-in ones first), then by name."""
    _load()
    return tuple(sorted(_REGISTRY, key=lambda n: (_REGISTRY[n].order, n)))


def teacher_method() -> str:
    """The method a grid trains its teachers with."""
    _load()
    return next(n for n, m in _REGISTRY.items() if m.trains_teachers)


def get(name: str) -> Method:
    """The method called ``name``; BadInput naming the known ones (and the closest) otherwise."""
    _load()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise BadKey("method", f"unknown method {name!r}{hint}; expected one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def main_stage(cfg: RunConfig, objective: str, uses_teacher: bool = False,
               kd_weights: tuple[float, float] | None = None) -> StagePlan:
    """The main-task stage: ``cfg.steps`` at ``cfg.lr`` with ``cfg.milestones``."""
    return StagePlan("main", cfg.steps, cfg.lr, cfg.milestones, objective, uses_teacher, kd_weights)


def init_stage(cfg: RunConfig, ratio: float, lr: float, milestones: tuple[float, ...], objective: str) -> StagePlan:
    """A first stage (with the teacher): ``init_steps`` / ``init_lr`` / ``init_milestones`` where given,
    else ``ratio`` x the main budget and the method's own learning rates."""
    steps = cfg.init_steps if cfg.init_steps is not None else max(1, round(cfg.steps * ratio))
    lr = cfg.init_lr if cfg.init_lr is not None else lr
    ms = cfg.init_milestones if cfg.init_milestones is not None else milestones
    return StagePlan("init", steps, lr, ms, objective, True)


def stage_plans(cfg: RunConfig) -> list[StagePlan]:
    """The stages a run trains, in order."""
    return get(cfg.method).plan(cfg)


def init_steps(cfg: RunConfig) -> int:
    """Stage-1 steps of a run (0 for one-stage methods): what it spends before its main-task budget."""
    plans = stage_plans(cfg)
    return plans[0].steps if len(plans) > 1 else 0

