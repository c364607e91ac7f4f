"""Benchmark file (TOML) -> a grid of validated RunConfigs with their teacher/student links.

A benchmark file declares teachers, student groups and the claims to test:

    name = "smoke"                 # optional; the file stem by default
    description = "..."            # optional
    [defaults]                     # RunConfig keys for every run (teachers and students)
    [resources]                    # per Ray Tune trial: cpu > 0, gpu >= 0 (fractions allowed); optional
                                   # max_concurrent = N caps the trials at once (default: all the cluster holds)
    [teachers.<id>]                # role = "teacher", method = "scratch"; seeds = [...] + RunConfig keys
    [students.<group>]             # methods x archs x seeds x budgets; teacher = "<id>", teacher_seeds
                                   # = [...] (student seed k learns from teacher_seeds[k % len], so the
                                   # students split evenly over the teachers); + RunConfig keys (nested fsp
                                   # tables merge over [defaults]); method_settings = {fitnet = {...}}
                                   # holds RunConfig keys for one method's runs only
    [claims.<claim>]               # a claim kind's key (fspbench.claims)

``budgets`` is a list of main-task steps (RunConfig.steps) for every method of the group, or a
table of lists per method (``budgets = {fsp = [200], scratch = [200, 600]}``) so that a
fast-optimization group need not train FSP students at the long budget nobody compares.

Every problem raises BadInput with one line ``<file>: <key path>: <what is expected>``.
Run ids are content hashes (RunConfig.run_id), so the same file always gives the same ids;
a student's id includes its teacher's run id, and its ``teacher`` is the teacher's run record
``<results_dir>/runs/<teacher_run_id>.json`` (an absolute path, so Ray trials that change
their working directory still find it).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import fspbench
from fspbench import claims as claim_kinds
from fspbench import methods
from fspbench.config import FSPSettings, RunConfig, config_from_dict, merge, teacher_mismatch
from fspbench.errors import BadInput
from fspbench.methods import init_steps
from fspbench.registry import check_arch
from fspbench.spec import SEEDINGS, AblationSpec, BenchmarkSpec, ClaimSpec, DesignSpec, GroupSpec, TeacherSpec

TOP_KEYS = ("name", "description", "defaults", "resources", "design", "teachers", "students", "claims", "ablation")
# [design]: how the claims get their seeds and are decided; with it, the grid gives every seed (docs/METHOD.md)
DESIGN_KEYS = ("seeding", "look_every", "max_seeds", "alpha", "smallest_effect", "headroom")
MAX_SEEDS = 1000  # seeds per arm at most: a student's seed is block * 1000 + its index in the arm
TEACHER_SEED = 100_000  # the teacher of student seed s has seed TEACHER_SEED + s (one teacher per student seed)
DESIGN_SET = "set by [design], which gives every run its seed (one teacher per student seed); remove it"
# [ablation]: reference = the group whose FSP students (the paper's style) every other arm is set against,
# with the scratch students and the 2x regime check; arms = the groups that change one FSP choice;
# budget = their shared main-task budget; equivalence = points within which a change counts as "no effect"
ABLATION_KEYS = ("reference", "arms", "budget", "equivalence", "converged_gain")
RESOURCE_DEFAULTS = {"cpu": 1.0, "gpu": 0.0}
GROUP_KEYS = ("teacher", "teacher_seed", "teacher_seeds", "methods", "archs", "seeds", "budgets", "method_settings")
# RunConfig keys the grid sets itself -> what to do instead
GRID_SET = {"role": "remove it", "method": "set methods = [...] in a student group",
            "seed": "set seeds = [...] in each teacher and student table",
            "teacher": 'set teacher = "<teacher id>" in a student group'}
TEACHER_SET = {"role": "remove it", "method": "remove it (teachers train from scratch)", "seed": "use seeds = [...]",
               "teacher": "remove it (teachers have no teacher)"}
STUDENT_SET = {"role": "remove it", "method": "use methods = [...]", "seed": "use seeds = [...]",
               "arch": "use archs = [...]", "steps": "use budgets = [...]"}
_FIELD_OF = {"method": "methods", "seed": "seeds", "arch": "archs", "steps": "budgets"}  # student table keys
CLAIM_METHODS = (claim_kinds.TREATMENT, claim_kinds.CONTROL)  # every claim compares FSP students with scratch ones
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_RUN_KEYS = tuple(f.name for f in fields(RunConfig))
_FSP_KEYS = tuple(f.name for f in fields(FSPSettings))


@dataclass(frozen=True)
class GridRun:
    """One run of the grid."""

    run_id: str
    config: RunConfig
    role: str  # "teacher" | "student"
    group: str  # teacher id for teachers, student group name for students
    teacher_run_id: str  # "" when none
    seed_index: int = -1  # [design] grids: the student's index in its arm (a teacher: its student's); else -1


@dataclass(frozen=True)
class Benchmark:
    """A loaded benchmark file: its runs (teachers, then students) and its claims."""

    name: str
    path: Path  # the file it was read from
    text: str  # the file's text, kept verbatim for the results
    results_dir: Path  # students find their teachers' records in results_dir/runs
    resources: dict[str, float]  # {"cpu": ..., "gpu": ...} per trial
    teachers: list[GridRun]
    students: list[GridRun]
    claims: dict[str, ClaimSpec]  # claim key -> its checked table
    ablation: AblationSpec | None = None  # the checked [ablation] table
    max_concurrent: int | None = None  # [resources] max_concurrent: a cap on trials at once
    spec: BenchmarkSpec | None = None  # the parsed file, for expanding a [design] grid at later looks
    seeds: dict[str, int] = field(default_factory=dict)  # [design]: claim -> seeds per deciding arm expanded

    @property
    def design(self) -> DesignSpec | None:
        return self.spec.design if self.spec else None

    @property
    def runs(self) -> list[GridRun]:
        """Teachers first, then students: a student's teacher always comes before it."""
        return [*self.teachers, *self.students]


def run_labels(bench: Benchmark) -> dict[str, dict[str, Any]]:
    """run id -> the grid's labels that runs.parquet carries: group, budget, init_steps, precision."""
    return {r.run_id: {"group": r.group, "budget": r.config.steps, "init_steps": init_steps(r.config),
                       "precision": r.config.precision, "seed_index": r.seed_index} for r in bench.runs}


def at_look(bench: Benchmark, seeds: dict[str, int]) -> Benchmark:
    """The same [design] grid expanded with ``seeds`` (claim -> seeds per deciding arm): the runs of
    every look up to the one where each claim has that many seeds."""
    if bench.spec is None or bench.spec.design is None:
        raise ValueError("at_look needs a benchmark with a [design] table")
    loader = _Loader(str(bench.path), bench.results_dir)
    teachers, students = loader.expand(bench.spec, seeds)
    return replace(bench, teachers=teachers, students=students, seeds=dict(seeds))


def first_look(spec: BenchmarkSpec) -> dict[str, int]:
    """Seeds per deciding arm of every claim at the first look."""
    return {k: spec.design.look_every for k in spec.claims} if spec.design else {}


def benchmarks_dir() -> Path:
    """The presets folder next to the package (a source checkout or an editable install)."""
    return Path(fspbench.__file__).resolve().parent.parent / "benchmarks"


def available_benchmarks() -> list[str]:
    d = benchmarks_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def resolve_benchmark(name_or_path: str) -> Path:
    """A preset name ("smoke" -> benchmarks/smoke.toml) or the path of an existing file."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    preset = benchmarks_dir() / f"{name_or_path}.toml"
    if "/" not in name_or_path and not name_or_path.endswith(".toml") and preset.is_file():
        return preset
    names = ", ".join(available_benchmarks()) or "none"
    raise BadInput(
        f"{name_or_path}: no such benchmark file or preset; expected a path to a .toml file or one of: {names}"
    )


def load_benchmark(name_or_path: str, results_dir: str | Path) -> Benchmark:
    """Read, validate and expand a benchmark file; every problem raises BadInput naming file and key."""
    path = resolve_benchmark(name_or_path)
    where = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"{where}: cannot read the benchmark file: {err}") from None
    return benchmark_from_text(text, path.resolve(), results_dir, where)


def benchmark_from_text(text: str, path: Path, results_dir: str | Path, where: str | None = None) -> Benchmark:
    """Expand a benchmark file's text (e.g. the copy kept in grid.json); same checks as load_benchmark."""
    where = where or str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise BadInput(f"{where}: invalid TOML: {err}") from None
    return _Loader(where, Path(results_dir)).load(raw, path, text)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def portable_path(path: Path) -> str:
    """A benchmark file as results should name it: relative to the repository (benchmarks/default.toml)
    when it is inside it, else its file name, so committed results carry no machine's absolute path."""
    try:
        return str(path.resolve().relative_to(benchmarks_dir().parent))
    except ValueError:
        return path.name


def _did_you_mean(key: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Loader:
    def __init__(self, where: str, results_dir: Path) -> None:
        self.where = where
        self.runs_dir = results_dir.absolute() / "runs"
        self.seeded = True  # False in a [design] grid: the design gives the seeds, the tables may not

    def fail(self, key: str, what: str) -> BadInput:
        return BadInput(f"{self.where}: {key}: {what}")

    def unknown(self, key: str, known: tuple[str, ...] | list[str], leaf: str) -> BadInput:
        return BadInput(f"{self.where}: unknown key {key}{_did_you_mean(leaf, known)}; known keys: "
                        f"{', '.join(known)}")

    # ---- the whole file ----------------------------------------------------------------------

    def load(self, raw: dict[str, Any], path: Path, text: str) -> Benchmark:
        """Two steps: the file's tables into a checked BenchmarkSpec, then the spec into runs."""
        spec = self.parse(raw, path)
        seeds = first_look(spec)
        teachers, students = self.expand(spec, seeds)
        return Benchmark(spec.name, path, text, self.runs_dir.parent, spec.resources, teachers, students, spec.claims,
                         spec.ablation, spec.max_concurrent, spec, seeds)

    def parse(self, raw: dict[str, Any], path: Path) -> BenchmarkSpec:
        """Every table and key checked, the claims and the ablation against the groups; no run built yet."""
        for key in raw:
            if key not in TOP_KEYS:
                raise self.unknown(key, TOP_KEYS, key)
        name = raw.get("name", path.stem)
        if not isinstance(name, str) or not _NAME.match(name):
            raise self.fail("name", f"expected a name of letters, digits, '_', '-' or '.', got {name!r}")
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise self.fail("description", f"expected a string, got {description!r}")
        resources = self.resources(raw.get("resources", {}))
        max_concurrent = self.max_concurrent(raw.get("resources", {}))
        defaults = self.table(raw, "defaults", required=False)
        self.check_keys(defaults, "defaults", allowed=[k for k in _RUN_KEYS if k not in GRID_SET], set_by=GRID_SET)
        self.build({}, defaults, "defaults", {})  # the defaults alone must make a valid config

        design = self.design(raw["design"]) if "design" in raw else None
        if raw.get("claims") and design is None:
            raise self.fail("design", 'the claims need a [design] table (seeding = "paired" or "independent", '
                                      "look_every, max_seeds): the seeds and looks that decide them")
        self.seeded = design is None  # without [design] the tables list their seeds
        teachers = []
        for tid, table in self.table(raw, "teachers", required=False).items():
            key = f"teachers.{tid}"
            table = self.sub_table(table, key)
            self.check_keys(table, key, allowed=["seeds", *(k for k in _RUN_KEYS if k not in TEACHER_SET)],
                            set_by=TEACHER_SET if self.seeded else {**TEACHER_SET, "seeds": DESIGN_SET})
            seeds = tuple(self.seeds(table, key)) if self.seeded else ()
            settings = {k: v for k, v in table.items() if k != "seeds"}
            self.build(defaults, settings, key, {"role": "teacher", "method": "scratch"})  # a valid teacher
            teachers.append(TeacherSpec(tid, seeds, settings))
        groups = {gname: self.group(gname, self.sub_table(table, f"students.{gname}"), teachers)
                  for gname, table in self.table(raw, "students", required=True).items()}
        teacher_tables = {t.id: merge(defaults, t.settings) for t in teachers}
        claims = self.claims(raw.get("claims", {}), groups, teacher_tables, defaults, design)
        ablation = self.ablation(raw["ablation"], groups) if "ablation" in raw else None
        return BenchmarkSpec(name, description, resources, defaults, tuple(teachers), tuple(groups.values()),
                             claims, ablation, max_concurrent, design)

    def expand(self, spec: BenchmarkSpec, seeds: dict[str, int] | None = None) -> tuple[list[GridRun], list[GridRun]]:
        """The teachers' runs, then every group's students; a [design] grid with ``seeds`` per claim."""
        if spec.design is not None:
            return self.expand_design(spec, seeds or first_look(spec))
        teachers: list[GridRun] = []
        for t in spec.teachers:
            for seed in t.seeds:
                cfg = self.build(spec.defaults, t.settings, f"teachers.{t.id}",
                                 {"role": "teacher", "method": "scratch", "seed": seed})
                teachers.append(GridRun(cfg.run_id(), cfg, "teacher", t.id, ""))
        self.check_distinct(teachers)
        students = [run for g in spec.groups for run in self.expand_group(g, spec.defaults, teachers)]
        self.check_distinct(teachers + students)
        return teachers, students

    # ---- [design] grids: the design gives every seed --------------------------------------------

    def design(self, value: Any) -> DesignSpec:
        table = self.sub_table(value, "design")
        for k in table:
            if k not in DESIGN_KEYS:
                raise self.unknown(f"design.{k}", DESIGN_KEYS, k)
        if table.get("seeding") not in SEEDINGS:
            raise self.fail("design.seeding", f"expected one of {', '.join(map(repr, SEEDINGS))} (how the arms "
                                              f"get their seeds), got {_quote(table.get('seeding'))}")
        d = DesignSpec(table["seeding"])
        k, n = table.get("look_every", d.look_every), table.get("max_seeds", d.max_seeds)
        if not _is_int(k) or k < 2:
            raise self.fail("design.look_every", f"expected an integer >= 2 (seeds per arm at each look), got {k!r}")
        if not _is_int(n) or n < k or n % k or n > MAX_SEEDS:
            raise self.fail("design.max_seeds", f"expected a multiple of look_every ({k}) up to {MAX_SEEDS}, got {n!r}")
        alpha = table.get("alpha", d.alpha)
        if not _is_number(alpha) or not 0 < alpha < 0.5:
            raise self.fail("design.alpha", f"expected a one-sided error per side in (0, 0.5), got {alpha!r}")
        for key in ("smallest_effect", "headroom"):
            v = table.get(key, getattr(d, key))
            if not _is_number(v) or v <= 0:
                raise self.fail(f"design.{key}", f"expected accuracy points > 0, got {v!r}")
        return DesignSpec(table["seeding"], k, n, float(alpha), float(table.get("smallest_effect", d.smallest_effect)),
                          float(table.get("headroom", d.headroom)))

    def expand_design(self, spec: BenchmarkSpec, seeds: dict[str, int]) -> tuple[list[GridRun], list[GridRun]]:
        """Every arm (group, method, arch, budget) with the first look's seeds; a claim's deciding arms with
        ``seeds[claim]``. Seeding: a paired group's arms share seed i; in an independent group each method
        draws its own block of seeds (1000 per block, in the order the file declares them). The teacher of
        student seed s has seed TEACHER_SEED + s, so every student has its own teacher."""
        assert spec.design is not None
        base = spec.design.look_every
        arm_n: dict[tuple[str, str, str, int], int] = {}
        for c in spec.claims.values():
            for method, budget in c.deciding_arms():
                key = (c.group, method, c.arch, budget)
                arm_n[key] = max(arm_n.get(key, base), seeds.get(c.key, base))
        paired = group_seeding(spec)
        teachers_by_id = {t.id: t for t in spec.teachers}
        teachers: dict[str, GridRun] = {}
        students: list[GridRun] = []
        block = 0
        for g in spec.groups:
            key = f"students.{g.name}"
            for method in g.methods:
                block += 1
                overrides = merge(g.settings, g.method_settings.get(method, {}))
                uses_teacher = bool(g.teacher) and _needs_teacher(method)
                for arch in g.archs:
                    for steps in g.budgets[method]:
                        for i in range(arm_n.get((g.name, method, arch, steps), base)):
                            seed = i if paired[g.name] else block * MAX_SEEDS + i
                            t_run = (self.design_teacher(spec, teachers_by_id[g.teacher], TEACHER_SEED + seed, i,
                                                         teachers) if uses_teacher else None)
                            t_id = t_run.run_id if t_run else ""
                            fixed = {"role": "student", "method": method, "arch": arch, "seed": seed, "steps": steps,
                                     "teacher": str(self.runs_dir / f"{t_id}.json") if t_id else ""}
                            cfg = self.build(spec.defaults, overrides, key, fixed)
                            if t_run is not None:
                                self.check_pair(key, cfg, t_run)
                            students.append(GridRun(cfg.run_id(t_id), cfg, "student", g.name, t_id, i))
        out = sorted(teachers.values(), key=lambda r: (r.group, r.config.seed))
        self.check_distinct(out + students)
        return out, students

    def design_teacher(self, spec: BenchmarkSpec, t: TeacherSpec, seed: int, index: int,
                       made: dict[str, GridRun]) -> GridRun:
        cfg = self.build(spec.defaults, t.settings, f"teachers.{t.id}", {"role": "teacher", "method": "scratch",
                                                                          "seed": seed})
        run = GridRun(cfg.run_id(), cfg, "teacher", t.id, "", index)
        return made.setdefault(run.run_id, run)

    def ablation(self, value: Any, groups: dict[str, GroupSpec]) -> AblationSpec:
        """The [ablation] table: every arm's FSP students against the reference group's, at one budget."""
        table = self.sub_table(value, "ablation")
        for k in table:
            if k not in ABLATION_KEYS:
                raise self.unknown(f"ablation.{k}", ABLATION_KEYS, k)
        defaults = AblationSpec("", (), 0)
        a = {"equivalence": defaults.equivalence, "converged_gain": defaults.converged_gain, **table}
        ref = a.get("reference")
        if not isinstance(ref, str) or ref not in groups:
            raise self.fail("ablation.reference", f"{_quote(ref)} is not a student group (groups: {', '.join(groups)})")
        budget = a.get("budget")
        if not _is_int(budget):
            raise self.fail("ablation.budget", f"expected an integer main-task budget, got {_quote(budget)}")
        for m in ("fsp", "scratch"):
            if m not in groups[ref].methods or budget not in groups[ref].budgets[m]:
                raise self.fail("ablation.reference", f"group {ref} needs {m} students at budget {budget}")
        arms = a.get("arms", [g for g, grp in groups.items() if g != ref and "fsp" in grp.methods])
        if not isinstance(arms, list) or not arms or not all(isinstance(x, str) for x in arms):
            raise self.fail("ablation.arms", f"expected a non-empty list of student groups, got {arms!r}")
        for arm in arms:
            if arm not in groups or arm == ref or "fsp" not in groups[arm].methods \
                    or budget not in groups[arm].budgets["fsp"]:
                raise self.fail("ablation.arms", f"{_quote(arm)}: expected a group other than the reference with fsp "
                                                 f"students at budget {budget}")
        for k in ("equivalence", "converged_gain"):
            if not _is_number(a[k]) or a[k] <= 0:
                raise self.fail(f"ablation.{k}", f"expected accuracy points > 0, got {a[k]!r}")
        return AblationSpec(ref, tuple(arms), budget, float(a["equivalence"]), float(a["converged_gain"]))

    def expand_group(self, group: GroupSpec, defaults: dict[str, Any], teachers: list[GridRun]) -> list[GridRun]:
        """The group's runs: methods x archs x seeds x budgets, students split evenly over teacher seeds."""
        key = f"students.{group.name}"
        by_seed = {t.config.seed: t for t in teachers if t.group == group.teacher}
        out: list[GridRun] = []
        for method in group.methods:
            overrides = merge(group.settings, group.method_settings.get(method, {}))
            for arch in group.archs:
                for k, seed in enumerate(group.seeds):
                    teacher_run = by_seed[group.teacher_seeds[k % len(group.teacher_seeds)]] if (
                        _needs_teacher(method) and group.teacher) else None
                    t_id = teacher_run.run_id if teacher_run else ""
                    t_path = str(self.runs_dir / f"{t_id}.json") if t_id else ""
                    for steps in group.budgets[method]:
                        fixed = {"role": "student", "method": method, "arch": arch, "seed": seed,
                                 "steps": steps, "teacher": t_path}
                        cfg = self.build(defaults, overrides, key, fixed)
                        if teacher_run is not None:
                            self.check_pair(key, cfg, teacher_run)
                        out.append(GridRun(cfg.run_id(t_id), cfg, "student", group.name, t_id))
        return out

    # ---- tables and keys ---------------------------------------------------------------------

    def table(self, raw: dict[str, Any], key: str, required: bool) -> dict[str, Any]:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table [{key}], got {value!r}")
        if required and not value:
            raise self.fail(key, f"expected at least one [{key}.<name>] table")
        return value

    def sub_table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table [{key}], got {value!r}")
        return value

    def check_keys(self, table: dict[str, Any], prefix: str, allowed: list[str],
                   set_by: dict[str, str]) -> None:
        for k, v in table.items():
            if k in set_by:
                raise self.fail(f"{prefix}.{k}", f"set by the grid, not by this table; {set_by[k]}")
            if k not in allowed:
                raise self.unknown(f"{prefix}.{k}", allowed, k)
            if k == "fsp" and isinstance(v, dict):
                for fk in v:
                    if fk not in _FSP_KEYS:
                        raise self.unknown(f"{prefix}.fsp.{fk}", _FSP_KEYS, fk)

    def resources(self, value: Any) -> dict[str, float]:
        if not isinstance(value, dict):
            raise self.fail("resources", f"expected a table [resources] with cpu and gpu, got {value!r}")
        out = dict(RESOURCE_DEFAULTS)
        for k, v in value.items():
            if k == "max_concurrent":  # not a trial's resource: a cap on the grid (max_concurrent below)
                continue
            if k not in RESOURCE_DEFAULTS:
                raise self.unknown(f"resources.{k}", (*RESOURCE_DEFAULTS, "max_concurrent"), k)
            ok = _is_number(v) and (v > 0 if k == "cpu" else v >= 0)
            if not ok:
                bound = "> 0" if k == "cpu" else ">= 0 (fractions allowed)"
                raise self.fail(f"resources.{k}", f"expected a number {bound}, got {v!r}")
            out[k] = float(v)
        return out

    def max_concurrent(self, value: Any) -> int | None:
        """[resources] max_concurrent: at most this many trials at once, however many the cluster holds."""
        v = value.get("max_concurrent") if isinstance(value, dict) else None
        if v is not None and not (_is_int(v) and v >= 1):
            raise self.fail("resources.max_concurrent", f"expected an integer >= 1 (trials at once), got {v!r}")
        return v

    def int_list(self, value: Any, key: str, minimum: int) -> list[int]:
        ok = (isinstance(value, list) and value and all(_is_int(v) and v >= minimum for v in value)
              and len(set(value)) == len(value))
        if not ok:
            got = "nothing" if value is None else repr(value)
            bound = f">= {minimum}" if minimum == 0 else f"> {minimum - 1}"
            raise self.fail(key, f"expected a non-empty list of distinct integers {bound}, got {got}")
        return list(value)

    def seeds(self, table: dict[str, Any], prefix: str) -> list[int]:
        return self.int_list(table.get("seeds"), f"{prefix}.seeds", 0)

    def name_list(self, table: dict[str, Any], prefix: str, leaf: str, check: Any) -> list[str]:
        value = table.get(leaf)
        key = f"{prefix}.{leaf}"
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            got = "nothing" if value is None else repr(value)
            raise self.fail(key, f"expected a non-empty list of names, got {got}")
        if len(set(value)) != len(value):
            raise self.fail(key, f"expected distinct names, got {value!r}")
        for v in value:
            check(key, v)
        return list(value)

    def check_method(self, key: str, method: str) -> None:
        if method not in methods.names():
            raise self.fail(key, f"unknown method {method!r}{_did_you_mean(method, methods.names())}; "
                                 f"expected names from {', '.join(methods.names())}")

    def check_arch(self, key: str, arch: str) -> None:
        try:
            check_arch(arch)
        except BadInput as err:
            raise self.fail(key, str(err).removeprefix("arch: ")) from None

    # ---- student groups ----------------------------------------------------------------------

    def group(self, gname: str, table: dict[str, Any], teachers: list[TeacherSpec]) -> GroupSpec:
        key = f"students.{gname}"
        allowed = [*GROUP_KEYS, *(k for k in _RUN_KEYS if k not in STUDENT_SET and k != "teacher")]
        set_by = STUDENT_SET if self.seeded else {**STUDENT_SET, **dict.fromkeys(
            ("seeds", "teacher_seed", "teacher_seeds"), DESIGN_SET)}
        self.check_keys(table, key, allowed=allowed, set_by=set_by)
        methods = self.name_list(table, key, "methods", self.check_method)
        archs = self.name_list(table, key, "archs", self.check_arch)
        seeds = self.seeds(table, key) if self.seeded else []
        budgets = self.budgets(table.get("budgets"), key, methods)
        declared = sorted({t.id for t in teachers})
        needing = [m for m in methods if _needs_teacher(m)]
        teacher = table.get("teacher")
        method_settings = self.method_settings(table, key, methods)
        if teacher is None:
            if needing:
                raise self.fail(f"{key}.teacher", f"methods {', '.join(needing)} need a teacher; expected "
                                f"teacher = one of the declared teachers ({', '.join(declared) or 'none'})")
            for leaf in ("teacher_seed", "teacher_seeds"):
                if leaf in table:
                    raise self.fail(f"{key}.{leaf}", "given without a teacher; drop it or set teacher")
            return GroupSpec(gname, "", (), tuple(methods), tuple(archs), tuple(seeds), budgets,
                             self.overrides(table), method_settings)
        if not isinstance(teacher, str) or teacher not in declared:
            raise self.fail(f"{key}.teacher", f"{_quote(teacher)} is not a declared teacher "
                                              f"(declared: {', '.join(declared) or 'none'})")
        if not needing:
            raise self.fail(f"{key}.teacher", f"no method of this group uses a teacher ({', '.join(methods)}); "
                                              "drop teacher or add fsp, fitnet or kd to methods")
        chosen = self.teacher_seeds(table, key, teacher, teachers) if self.seeded else []
        return GroupSpec(gname, teacher, tuple(chosen), tuple(methods), tuple(archs), tuple(seeds), budgets,
                         self.overrides(table), method_settings)

    def teacher_seeds(self, table: dict[str, Any], key: str, teacher: str, teachers: list[TeacherSpec]) -> list[int]:
        """A seeded group's teacher_seed / teacher_seeds, checked against its teacher's seeds."""
        t_seeds = list(next(t.seeds for t in teachers if t.id == teacher))
        if "teacher_seed" in table and "teacher_seeds" in table:
            raise self.fail(f"{key}.teacher_seed", "given with teacher_seeds; keep one of the two")
        if "teacher_seeds" in table:
            chosen = self.int_list(table["teacher_seeds"], f"{key}.teacher_seeds", 0)
        else:
            chosen = [table.get("teacher_seed", t_seeds[0])]
        leaf = "teacher_seeds" if "teacher_seeds" in table else "teacher_seed"
        for t_seed in chosen:
            if not _is_int(t_seed) or t_seed not in t_seeds:
                raise self.fail(f"{key}.{leaf}", f"expected seeds of teacher {teacher} ({t_seeds}), got {t_seed!r}")
        return chosen

    def method_settings(self, table: dict[str, Any], key: str, methods: list[str]) -> dict[str, dict[str, Any]]:
        """``method_settings = {fitnet = {init_lr = 0.01}}``: RunConfig keys for one method's runs only."""
        value = table.get("method_settings", {})
        if not isinstance(value, dict):
            raise self.fail(f"{key}.method_settings", f"expected a table of method -> settings, got {value!r}")
        allowed = [k for k in _RUN_KEYS if k not in STUDENT_SET and k != "teacher"]
        for m, sub in value.items():
            if m not in methods:
                raise self.fail(f"{key}.method_settings.{m}", f"is not one of this group's methods "
                                                              f"({', '.join(methods)})")
            self.check_keys(self.sub_table(sub, f"{key}.method_settings.{m}"), f"{key}.method_settings.{m}",
                            allowed=allowed, set_by=STUDENT_SET)
        return value

    def budgets(self, value: Any, key: str, methods: list[str]) -> dict[str, list[int]]:
        key = f"{key}.budgets"
        if isinstance(value, dict):
            for m in value:
                if m not in methods:
                    raise self.fail(f"{key}.{m}", f"is not one of this group's methods ({', '.join(methods)})")
            missing = [m for m in methods if m not in value]
            if missing:
                raise self.fail(key, f"expected budgets for every method; missing {', '.join(missing)}")
            return {m: self.int_list(value[m], f"{key}.{m}", 1) for m in methods}
        budgets = self.int_list(value, key, 1)
        return {m: budgets for m in methods}

    @staticmethod
    def overrides(table: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in table.items() if k not in GROUP_KEYS}

    # ---- configs -----------------------------------------------------------------------------

    def build(self, defaults: dict[str, Any], overrides: dict[str, Any], prefix: str,
              fixed: dict[str, Any]) -> RunConfig:
        """config_from_dict on defaults < overrides < fixed; errors name the table the value came from."""
        raw = {**merge(defaults, overrides), **fixed}
        try:
            cfg = config_from_dict(raw, source="\0")
        except BadInput as err:
            msg = str(err).removeprefix("\0: ")
            field = msg.split(":", 1)[0]
            raise BadInput(f"{self.where}: {self.origin(field, overrides, prefix)}{msg[len(field):]}") from None
        return cfg

    @staticmethod
    def origin(field: str, overrides: dict[str, Any], prefix: str) -> str:
        """The key path in the file of a RunConfig field (``fsp.pool`` -> ``students.g.fsp.pool``)."""
        if field in _FIELD_OF and prefix.startswith("students."):
            return f"{prefix}.{_FIELD_OF[field]}"
        node: Any = overrides
        for part in field.split("."):
            if not isinstance(node, dict) or part not in node:
                return f"defaults.{field}"
            node = node[part]
        return f"{prefix}.{field}"

    def check_pair(self, key: str, cfg: RunConfig, teacher: GridRun) -> None:
        """Teacher/student mismatches that would only fail after the teacher is trained."""
        wrong = teacher_mismatch(cfg, teacher.config, f"teacher {teacher.group}")
        if wrong is not None:
            raise self.fail(f"{key}.{wrong[0]}", wrong[1])

    def check_distinct(self, runs: list[GridRun]) -> None:
        seen: dict[str, GridRun] = {}
        for r in runs:
            if r.run_id in seen:
                a = seen[r.run_id]
                raise self.fail(
                    f"{r.role}s.{r.group}",
                    f"run {r.run_id} ({_describe(r)}) duplicates the same run in {a.role}s.{a.group} "
                    "(every setting equal); drop one or change a setting",
                )
            seen[r.run_id] = r

    # ---- claims ------------------------------------------------------------------------------

    def claims(self, value: Any, groups: dict[str, GroupSpec], teacher_tables: dict[str, dict[str, Any]],
               defaults: dict[str, Any], design: DesignSpec | None) -> dict[str, ClaimSpec]:
        if not isinstance(value, dict):
            raise self.fail("claims", f"expected a table [claims], got {value!r}")
        out: dict[str, ClaimSpec] = {}
        for claim, table in value.items():
            key = f"claims.{claim}"
            if claim not in claim_kinds.keys():
                raise self.unknown(key, claim_kinds.keys(), claim)
            assert design is not None  # parse refuses claims without [design]
            out[claim] = self.claim(claim, self.sub_table(table, key), groups, teacher_tables, defaults, design)
        seeding: dict[str, ClaimSpec] = {}
        for c in out.values():  # one group, one seeding: its arms cannot be both paired and independent
            other = seeding.setdefault(c.group, c)
            if other.seeding != c.seeding:
                raise self.fail(f"claims.{c.key}.seeding", f"group {c.group} is {other.seeding} for claims."
                                f"{other.key}; claims of one group share its seeding")
        return out

    def claim(self, claim: str, table: dict[str, Any], groups: dict[str, GroupSpec],
              teacher_tables: dict[str, dict[str, Any]], defaults: dict[str, Any], design: DesignSpec) -> ClaimSpec:
        """One [claims.<key>] table, checked against its group: the arms its test and its regime need."""
        key, kind = f"claims.{claim}", claim_kinds.get(claim)
        for k in table:
            if k not in kind.table_keys:
                raise self.unknown(f"{key}.{k}", kind.table_keys, k)
        c = {**kind.defaults(design), **table}
        g = self.claim_group(c, key, groups)
        kind.check(self, key, c, g, teacher_tables[g.teacher] if g.teacher else None, merge(defaults, g.settings))
        for m in CLAIM_METHODS:  # the convergence check: both at 2F
            if 2 * c["budget"] not in g.budgets[m]:
                raise self.fail(f"{key}.group", f"the regime check trains {m} at twice the full budget; add "
                                                f"{2 * c['budget']} to group {g.name}'s budgets for {m}")
        if c["seeding"] not in SEEDINGS:
            raise self.fail(f"{key}.seeding", f"expected one of {', '.join(map(repr, SEEDINGS))}, got "
                                              f"{_quote(c['seeding'])}")
        for k in ("smallest_effect", "headroom"):
            if k in table and (not _is_number(table[k]) or table[k] <= 0):
                raise self.fail(f"{key}.{k}", f"expected accuracy points > 0, got {table[k]!r}")
        d = ClaimSpec("", "", "", 0)  # the defaults of the optional keys
        return ClaimSpec(claim, g.name, c["arch"], c["budget"], c["seeding"], design.look_every, design.max_seeds,
                         design.alpha, float(c["smallest_effect"]), float(c.get("headroom", 0.0)),
                         c.get("short_budget"), float(c.get("margin", d.margin)), float(c.get("target", d.target)))

    def claim_group(self, c: dict[str, Any], key: str, groups: dict[str, GroupSpec]) -> GroupSpec:
        """The claim's group, with FSP and scratch students and the claim's arch (filled in when it has one)."""
        gname = c.get("group")
        if not isinstance(gname, str) or gname not in groups:
            raise self.fail(f"{key}.group", f"{_quote(gname)} is not a student group (groups: {', '.join(groups)})")
        g = groups[gname]
        missing = [m for m in CLAIM_METHODS if m not in g.methods]
        if missing:
            raise self.fail(f"{key}.group", f"group {gname} lacks methods {', '.join(missing)}; "
                                            f"the claim compares {' and '.join(CLAIM_METHODS)} students")
        if "arch" not in c:
            if len(g.archs) > 1:
                raise self.fail(f"{key}.arch", f"group {gname} has several archs; expected one of {', '.join(g.archs)}")
            c["arch"] = g.archs[0]
        if c["arch"] not in g.archs:
            raise self.fail(f"{key}.arch", f"expected one of group {gname}'s archs ({', '.join(g.archs)}), "
                                           f"got {_quote(c['arch'])}")
        return g

    def claim_budget(self, c: dict[str, Any], key: str, leaf: str, g: GroupSpec, methods: tuple[str, ...]) -> None:
        v = c.get(leaf)
        if not _is_int(v):
            raise self.fail(f"{key}.{leaf}", f"expected an integer budget of group {g.name}, got {_quote(v)}")
        for m in methods:
            if v not in g.budgets[m]:
                raise self.fail(f"{key}.{leaf}", f"{v} is not a budget of the {m} students of group {g.name} "
                                                 f"(budgets: {g.budgets[m]})")


def group_seeding(spec: BenchmarkSpec) -> dict[str, bool]:
    """Group name -> paired? in a [design] grid: its claims' seeding, else the [design] table's."""
    default = spec.design is not None and spec.design.seeding == "paired"
    out = {g.name: default for g in spec.groups}
    for c in spec.claims.values():
        out[c.group] = c.paired
    return out


def _needs_teacher(method: str) -> bool:
    return methods.get(method).needs_teacher


def _quote(v: Any) -> str:
    return f'"{v}"' if isinstance(v, str) else repr(v)


def _describe(r: GridRun) -> str:
    c = r.config
    return f"{c.method} {c.arch} seed {c.seed} steps {c.steps}"
