"""The benchmark file's schema: one pydantic model per table, unknown keys refused with their key path.

``parse_file`` checks a benchmark file's tables in two steps:

1. ``BenchmarkFile.model_validate``: the shape of every table. Each model forbids unknown keys
   (``extra="forbid"``), and the error names the key's path with a did-you-mean from the model's own
   fields (``unknown key students.g.methodz (did you mean methods?)``); each value of the grid's own keys
   (seeds, budgets, looks, resources, points) is checked where it is declared. A table's RunConfig keys
   are fields too, so a misspelt one is refused here; their values are checked by ``build_config``
   (RunConfig's own checks), under the path of the table they came from.
2. ``fspbench.spec_check.to_spec``: what one table says about another (a group's teacher, a claim's
   group and budgets, the ablation's arms), into the typed BenchmarkSpec.

Every problem is one BadInput line ``<file>: <key path>: <what is expected>``.
"""

from __future__ import annotations

import difflib
import functools
import re
import types
import typing
from dataclasses import fields
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    model_validator,
)
from pydantic import field_validator as validator

from fspbench import claims, methods
from fspbench.config import FSPSettings, RunConfig, config_from_dict, merge
from fspbench.errors import BadInput, BadKey
from fspbench.mlflow_sink import uri_problem
from fspbench.registry import check_arch
from fspbench.spec import CALIBRATIONS, CORRECTIONS, SEEDINGS, SUBSETS

MAX_SEEDS = 1000  # seeds per arm at most: a student's seed is block * 1000 + its index in the arm
DESIGN_SET = "set by [design], which gives every run its seed (one teacher per student seed); remove it"
# RunConfig keys the grid sets itself -> what to do instead, per table
GRID_SET = {"role": "remove it", "method": "set methods = [...] in a student group",
            "seed": "set seeds = [...] in each teacher and student table",
            "teacher": 'set teacher = "<teacher id>" in a student group'}
TEACHER_SET = {"role": "remove it", "method": "remove it (teachers train from scratch)", "seed": "use seeds = [...]",
               "teacher": "remove it (teachers have no teacher)"}
STUDENT_SET = {"role": "remove it", "method": "use methods = [...]", "seed": "use seeds = [...]",
               "arch": "use archs = [...]", "steps": "use budgets = [...]"}
GROUP_OF = {"method": "methods", "seed": "seeds", "arch": "archs", "steps": "budgets"}  # RunConfig key -> group key
RUN_KEYS = tuple(f.name for f in fields(RunConfig))
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SET_BY = "set by the grid"  # the description that marks a field refused with its hint


def did_you_mean(key: str, known: typing.Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def quote(v: Any) -> str:
    return f'"{v}"' if isinstance(v, str) else repr(v)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ---------------------------------------------------------------- value types (checked where declared)


def _number(test: typing.Callable[[float], bool], expected: str) -> BeforeValidator:
    def check(v: Any) -> float:
        if not is_number(v) or not test(v):
            raise ValueError(f"expected {expected}, got {v!r}")
        return float(v)
    return BeforeValidator(check)


def int_list(value: Any, minimum: int) -> tuple[int, ...]:
    """A non-empty list of distinct integers >= minimum (seeds, budgets); ValueError saying so otherwise."""
    ok = (isinstance(value, list) and value and all(is_int(v) and v >= minimum for v in value)
          and len(set(value)) == len(value))
    if not ok:
        got = "nothing" if value is None else repr(value)
        bound = f">= {minimum}" if minimum == 0 else f"> {minimum - 1}"
        raise ValueError(f"expected a non-empty list of distinct integers {bound}, got {got}")
    return tuple(value)


def _names(check: typing.Callable[[str], None]) -> BeforeValidator:
    def names(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected a non-empty list of names, got {'nothing' if value is None else repr(value)}")
        if len(set(value)) != len(value):
            raise ValueError(f"expected distinct names, got {value!r}")
        for v in value:
            check(v)
        return tuple(value)
    return BeforeValidator(names)


def _method(name: str) -> None:
    if name not in methods.names():
        raise ValueError(f"unknown method {name!r}{did_you_mean(name, methods.names())}; "
                         f"expected names from {', '.join(methods.names())}")


def _arch(name: str) -> None:
    try:
        check_arch(name)
    except BadKey as err:
        raise ValueError(err.what) from None


Points = Annotated[float, _number(lambda v: v > 0, "accuracy points > 0")]
Seeds = Annotated[tuple[int, ...] | None, BeforeValidator(lambda v: None if v is None else int_list(v, 0))]


# ---------------------------------------------------------------- tables


class Table(BaseModel):
    """A table of the file: unknown keys refused, values never coerced (TOML's types are the file's)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def given(self, names: typing.Iterable[str]) -> dict[str, Any]:
        """The keys among ``names`` that the file sets, as it wrote them (nested tables as dicts)."""
        return {k: getattr(self, k).given(type(getattr(self, k)).model_fields) if isinstance(getattr(self, k), Table)
                else getattr(self, k) for k in names if k in self.model_fields_set}


def _model(name: str, base: type[Table], defs: dict[str, Any], validators: dict[str, Any] | None = None) -> Any:
    """A Table subclass with the fields ``defs`` (name -> (type, default)), made at import from a registry."""
    return create_model(name, __base__=base, __validators__=validators, **defs)


FSPTable = _model("FSPTable", Table, {f.name: (Any, None) for f in fields(FSPSettings)})


def _run_keys(name: str, base: type[Table], set_by: dict[str, str], also_refused: tuple[str, ...] = ()) -> Any:
    """``base`` with a field for each RunConfig key a table may set (values checked later, by build_config)
    and one for each key the grid sets itself, refused with ``set_by``'s hint."""
    own = {k: (FSPTable | None if k == "fsp" else Any, None) for k in RUN_KEYS
           if k not in set_by and k not in also_refused and k not in base.model_fields}
    refused = {k: (Any, Field(None, description=_SET_BY)) for k in set_by if k not in base.model_fields}

    def refuse(cls: type, v: Any, info: ValidationInfo) -> Any:
        raise ValueError(f"{_SET_BY}, not by this table; {set_by[str(info.field_name)]}")
    validators = {"refuse": validator(*refused)(refuse)} if refused else {}
    return _model(name, base, {**own, **refused}, validators)


def _design_seeds(v: Any, info: ValidationInfo) -> Any:
    """Seeds in a file without [design] (required); refused in a [design] grid, which gives them."""
    seeded = (info.context or {}).get("seeded", True)
    if not seeded and v is not None:
        raise ValueError(DESIGN_SET)
    if seeded and info.field_name == "seeds":
        return int_list(v, 0)
    return v


class _TeacherKeys(Table):
    seeds: Any = Field(None, validate_default=True)
    _seeds = validator("seeds")(_design_seeds)


MethodSettingsTable = _run_keys("MethodSettingsTable", Table, STUDENT_SET, also_refused=("teacher",))


class _GroupKeys(Table):
    teacher: str | None = None
    teacher_seed: Any = None
    teacher_seeds: Any = None
    methods: Annotated[tuple[str, ...], _names(_method)] = Field(None, validate_default=True)
    archs: Annotated[tuple[str, ...], _names(_arch)] = Field(None, validate_default=True)
    seeds: Any = Field(None, validate_default=True)
    budgets: Any = None  # a list, or a table of lists per method: checked against methods (spec_check)
    method_settings: dict[str, MethodSettingsTable] = {}  # type: ignore[valid-type]
    _seeds = validator("seeds", "teacher_seed", "teacher_seeds")(_design_seeds)


class _DefaultsKeys(Table):
    @model_validator(mode="after")
    def _alone_valid(self) -> Any:
        """The defaults alone must make a valid config: a bad value there is named before any table that uses it
        (BadKey, which pydantic lets through)."""
        build_config({}, self.given(RUN_KEYS), "defaults", {})
        return self


DefaultsTable = _run_keys("DefaultsTable", _DefaultsKeys, GRID_SET)
TeacherTable = _run_keys("TeacherTable", _TeacherKeys, TEACHER_SET)
GroupTable = _run_keys("GroupTable", _GroupKeys, STUDENT_SET)
GROUP_KEYS = tuple(_GroupKeys.model_fields)


class ResourcesTable(Table):
    """Per Ray Tune trial: cpu > 0, gpu >= 0 (fractions allowed); max_concurrent caps the trials at once."""

    cpu: Annotated[float, _number(lambda v: v > 0, "a number > 0")] = 1.0
    gpu: Annotated[float, _number(lambda v: v >= 0, "a number >= 0 (fractions allowed)")] = 0.0
    max_concurrent: int | None = None

    @validator("max_concurrent", mode="before")
    @classmethod
    def _cap(cls, v: Any) -> Any:
        if v is not None and not (is_int(v) and v >= 1):
            raise ValueError(f"expected an integer >= 1 (trials at once), got {v!r}")
        return v


class DesignTable(Table):
    """How a grid's claims get their seeds and are decided (spec.DesignSpec says what each key means)."""

    seeding: Any = Field(None, validate_default=True)
    look_every: Any = 5
    max_seeds: Any = 20
    alpha: Annotated[float, _number(lambda v: 0 < v < 0.5, "a one-sided error per side in (0, 0.5)")] = 0.025
    smallest_effect: Points = 0.5
    headroom: Points = 2.0

    @validator("seeding")
    @classmethod
    def _seeding(cls, v: Any) -> Any:
        if v not in SEEDINGS:
            raise ValueError(f"expected one of {', '.join(map(repr, SEEDINGS))} (how the arms get their seeds), "
                             f"got {quote(v)}")
        return v

    @validator("look_every")
    @classmethod
    def _look_every(cls, k: Any) -> Any:
        if not is_int(k) or k < 2:
            raise ValueError(f"expected an integer >= 2 (seeds per arm at each look), got {k!r}")
        return k

    @validator("max_seeds")
    @classmethod
    def _max_seeds(cls, n: Any, info: ValidationInfo) -> Any:
        k = info.data.get("look_every", 5)
        if not is_int(n) or n < k or n % k or n > MAX_SEEDS:
            raise ValueError(f"expected a multiple of look_every ({k}) up to {MAX_SEEDS}, got {n!r}")
        return n

    subsets: Any = "per_seed"
    family: Any = None
    correction: Any = "bonferroni"
    calibrate: Any = "bootstrap_t"

    @validator("subsets", "correction", "calibrate")
    @classmethod
    def _choice(cls, v: Any, info: ValidationInfo) -> Any:
        accepted = {"subsets": SUBSETS, "correction": CORRECTIONS, "calibrate": CALIBRATIONS}[str(info.field_name)]
        if v not in accepted:
            raise ValueError(f"expected one of {', '.join(map(repr, accepted))}, got {quote(v)}")
        return v

    @validator("family")
    @classmethod
    def _family(cls, v: Any) -> Any:
        if v is not None and (not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v)
                              or len(set(v)) != len(v)):
            raise ValueError(f"expected a non-empty list of distinct claim keys (the claims whose error is "
                             f"controlled together), got {v!r}")
        return tuple(v) if v is not None else None


class AblationTable(Table):
    """reference: the group whose FSP students every arm is set against; arms: the groups that change one FSP
    choice (default: every other group with FSP students); budget: their shared main-task budget; equivalence:
    points within which a change counts as "no effect"; converged_gain: the reference's 2x regime check."""

    reference: Any = None
    arms: Any = None
    budget: Any = None
    equivalence: Points = 0.5
    converged_gain: Points = 1.0
    correction: Any = "bonferroni"

    @validator("correction")
    @classmethod
    def _correction(cls, v: Any) -> Any:
        if v not in CORRECTIONS:
            raise ValueError(f"expected one of {', '.join(map(repr, CORRECTIONS))} (across the arms), got {quote(v)}")
        return v


class TrackingTable(Table):
    """Where a grid's curves go besides its TensorBoard files (fspbench.tracking): mlflow, an MLflow tracking
    URI (``fspbench run --mlflow`` overrides it)."""

    mlflow: str | None = None

    @validator("mlflow")
    @classmethod
    def _uri(cls, v: Any) -> Any:
        problem = uri_problem(v) if v is not None else None
        if problem:
            raise ValueError(problem)
        return v


def _claim_table(key: str) -> Any:
    """A ``[claims.<key>]`` table: its claim kind's keys (values checked by the kind, against its group)."""
    return _model(f"Claim_{key}", Table, {k: (Any, None) for k in claims.get(key).table_keys})


@functools.cache
def benchmark_model() -> Any:
    """The whole file's model (built once: the claim tables come from the claim registry)."""
    claims_table = _model("ClaimsTable", Table, {k: (_claim_table(k) | None, None) for k in claims.keys()})

    class BenchmarkFile(Table):
        name: str | None = None
        description: str = ""
        defaults: DefaultsTable = DefaultsTable()  # type: ignore[valid-type]
        resources: ResourcesTable = ResourcesTable()
        design: DesignTable | None = None
        teachers: dict[str, TeacherTable] = {}  # type: ignore[valid-type]
        students: dict[str, GroupTable] = Field(None, validate_default=True)  # type: ignore[valid-type]
        claims: claims_table = claims_table()  # type: ignore[valid-type]
        ablation: AblationTable | None = None
        tracking: TrackingTable = TrackingTable()

        @validator("name")
        @classmethod
        def _name(cls, v: Any) -> Any:
            if v is not None and not _NAME.match(v):
                raise ValueError(f"expected a name of letters, digits, '_', '-' or '.', got {v!r}")
            return v

        @validator("students", mode="before")
        @classmethod
        def _some(cls, v: Any) -> Any:
            if v is None or v == {}:
                raise ValueError("expected at least one [students.<name>] table")
            return v

    return BenchmarkFile


# ---------------------------------------------------------------- errors -> one line


def _unwrap(tp: Any) -> Any:
    """The model or dict inside Optional[...] / X | None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def known_keys(loc: tuple[str, ...]) -> list[str]:
    """The keys the table at ``loc`` accepts (the grid's set-by keys left out)."""
    tp: Any = benchmark_model()
    for part in loc:
        tp = _unwrap(tp)
        tp = typing.get_args(tp)[1] if typing.get_origin(tp) is dict else tp.model_fields[part].annotation
    tp = _unwrap(tp)
    if typing.get_origin(tp) is dict:
        tp = typing.get_args(tp)[1]
    return [k for k, f in tp.model_fields.items() if f.description != _SET_BY]


_TYPES = {"string_type": "a string", "int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
          "tuple_type": "a list", "list_type": "a list"}


def message(error: Any) -> str:
    """One pydantic error as ``<key path>: <what is expected>`` (or ``unknown key <path> ...``)."""
    loc = tuple(str(p) for p in error["loc"])
    path, kind, got = ".".join(loc), error["type"], error.get("input")
    if kind == "extra_forbidden":
        known = known_keys(loc[:-1])
        return f"unknown key {path}{did_you_mean(loc[-1], known)}; known keys: {', '.join(known)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{path}: expected a table [{path}], got {got!r}"
    if kind == "value_error":
        return f"{path}: {error['ctx']['error']}"
    return f"{path}: expected {_TYPES.get(kind, error['msg'])}, got {got!r}"


def validate(raw: dict[str, Any], where: str) -> Any:
    """The file's tables as a checked BenchmarkFile; BadInput ``<where>: <the first problem>`` otherwise (an
    unknown key before a value: a misspelt key is the likelier cause of a value that is missing)."""
    if raw.get("claims") and "design" not in raw:  # before the seeds, which a [design] grid does not list
        raise BadInput(f"{where}: design: the claims need a [design] table (seeding = \"paired\" or \"independent\", "
                       "look_every, max_seeds): the seeds and looks that decide them")
    try:
        return benchmark_model().model_validate(raw, context={"seeded": "design" not in raw})
    except ValidationError as err:
        errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
        raise BadInput(f"{where}: {message(errors[0])}") from None
    except BadKey as err:  # a RunConfig value of [defaults]
        raise BadInput(f"{where}: {err}") from None


# ---------------------------------------------------------------- RunConfigs from tables


def build_config(defaults: dict[str, Any], overrides: dict[str, Any], prefix: str, fixed: dict[str, Any]) -> RunConfig:
    """config_from_dict on defaults < overrides < fixed; a bad value is BadKey under the path of the table
    it came from (``fsp.pool`` -> ``students.g.fsp.pool``, or ``defaults.fsp.pool``)."""
    try:
        return config_from_dict({**merge(defaults, overrides), **fixed}, source="")
    except BadKey as err:
        raise BadKey(origin(err.key, overrides, prefix), err.what) from None


def origin(key: str, overrides: dict[str, Any], prefix: str) -> str:
    """The key path in the file of a RunConfig field set for a table at ``prefix``."""
    if key in GROUP_OF and prefix.startswith("students."):
        return f"{prefix}.{GROUP_OF[key]}"
    node: Any = overrides
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return f"defaults.{key}"
        node = node[part]
    return f"{prefix}.{key}"
