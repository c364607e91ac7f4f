"""Benchmark file (TOML) -> a grid of validated RunConfigs with their teacher/student links.

A benchmark file declares teachers, student groups and the claims to test:

    name = "smoke"                 # optional; the file stem by default
    description = "..."            # optional
    [defaults]                     # RunConfig keys for every run (teachers and students)
    [resources]                    # per Ray Tune trial: cpu > 0, gpu >= 0 (fractions allowed); optional
                                   # max_concurrent = N caps the trials at once (default: all the cluster holds)
    [design]                       # seeding, looks, error rate, smallest effect: the grid gives the seeds
    [teachers.<id>]                # trained by the baseline method; seeds = [...] + RunConfig keys
    [students.<group>]             # methods x archs x seeds x budgets; teacher = "<id>", teacher_seeds
                                   # = [...] (student seed k learns from teacher_seeds[k % len], so the
                                   # students split evenly over the teachers); + RunConfig keys (nested fsp
                                   # tables merge over [defaults]); method_settings = {fitnet = {...}}
                                   # holds RunConfig keys for one method's runs only
    [claims.<claim>]               # a claim kind's key (fspbench.claims)
    [ablation]                     # every arm's FSP students against a reference group's
    [tracking]                     # mlflow = "URI": the curves also to an MLflow server (fspbench.tracking)

Three steps, each one module: fspbench.schema checks every table's keys and values (a pydantic model per
table), fspbench.spec_check what the tables say of each other, into the typed BenchmarkSpec, and
``expand`` here turns the spec into runs.

``budgets`` is a list of main-task steps (RunConfig.steps) for every method of the group, or a
table of lists per method (``budgets = {fsp = [200], scratch = [200, 600]}``) so that a
fast-optimization group need not train FSP students at the long budget nobody compares.

Every problem raises BadInput with one line ``<file>: <key path>: <what is expected>`` (BadKey from the
steps, with the file's name added by ``_located``).
Run ids are content hashes (RunConfig.run_id), so the same file always gives the same ids;
a student's id includes its teacher's run id, and its ``teacher`` is the teacher's run record
``<results_dir>/runs/<teacher_run_id>.json`` (an absolute path, so Ray trials that change
their working directory still find it).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import fspbench
from fspbench import methods
from fspbench.claims import CONTROL
from fspbench.config import RunConfig, merge, read_toml_text, teacher_mismatch
from fspbench.errors import BadInput, BadKey
from fspbench.methods import init_steps
from fspbench.schema import MAX_SEEDS, build_config, validate
from fspbench.spec import AblationSpec, BenchmarkSpec, ClaimSpec, DesignSpec, GroupSpec, TeacherSpec, TrackingSpec
from fspbench.spec_check import to_spec
from fspbench.store import Location, location

TEACHER_SEED = 100_000  # the teacher of student seed s has seed TEACHER_SEED + s (one teacher per student seed)


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
    results_dir: Location  # students find their teachers' records in results_dir/runs (a folder or a bucket)
    resources: dict[str, float]  # {"cpu": ..., "gpu": ...} per trial
    teachers: list[GridRun]
    students: list[GridRun]
    claims: dict[str, ClaimSpec]  # claim key -> its checked table
    ablation: AblationSpec | None = None  # the checked [ablation] table
    max_concurrent: int | None = None  # [resources] max_concurrent: a cap on trials at once
    spec: BenchmarkSpec | None = None  # the parsed file, for expanding a [design] grid at later looks
    seeds: dict[str, int] = field(default_factory=dict)  # [design]: claim -> seeds per deciding arm expanded
    tracking: TrackingSpec = TrackingSpec()  # [tracking], or fspbench run --mlflow (with_mlflow)

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
    teachers, students = _located(str(bench.path), expand, bench.spec, bench.results_dir.absolute() / "runs", seeds)
    return replace(bench, teachers=teachers, students=students, seeds=dict(seeds))


def look_of(run: GridRun, look_every: int) -> int:
    """The look of a [design] grid that adds ``run``: the first whose expansion (``at_look`` with every
    claim at look x look_every seeds) holds it. Arm i's runs come at look i // look_every + 1, and an arm
    outside the claims has look_every runs, all at the first look."""
    return max(0, run.seed_index) // look_every + 1


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


def load_benchmark(name_or_path: str, results_dir: str | Location) -> Benchmark:
    """Read, validate and expand a benchmark file; every problem raises BadInput naming file and key."""
    path = resolve_benchmark(name_or_path)
    where = _display(path)
    try:
        text = read_toml_text(path.read_bytes())  # without a byte order mark (Windows editors write one)
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"{where}: cannot read the benchmark file: {err}") from None
    return benchmark_from_text(text, path.resolve(), results_dir, where)


def benchmark_from_text(text: str, path: Path, results_dir: str | Location, where: str | None = None) -> Benchmark:
    """Expand a benchmark file's text (e.g. the copy kept in grid.json); same checks as load_benchmark."""
    where = where or str(path)
    text = text.removeprefix("\ufeff")  # a byte order mark: read past, as by load_benchmark
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise BadInput(f"{where}: invalid TOML: {err}") from None
    file = validate(raw, where)
    spec = _located(where, to_spec, file, path, list(raw.get("claims", {})))
    runs_dir = location(results_dir).absolute() / "runs"
    seeds = first_look(spec)
    teachers, students = _located(where, expand, spec, runs_dir, seeds)
    return Benchmark(spec.name, path, text, runs_dir.parent, spec.resources, teachers, students, spec.claims,
                     spec.ablation, spec.max_concurrent, spec, seeds, spec.tracking)


def with_mlflow(bench: Benchmark, uri: str | None) -> Benchmark:
    """``bench`` with its curves also sent to the MLflow store at ``uri`` (over [tracking] mlflow); as it is
    when ``uri`` is None."""
    return replace(bench, tracking=replace(bench.tracking, mlflow=uri)) if uri else bench


def _located(where: str, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, with a BadKey as one line naming the file: ``<where>: <key path>: <what>``."""
    try:
        return fn(*args)
    except BadKey as err:
        raise BadInput(f"{where}: {err}") from None


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


# ---------------------------------------------------------------- the spec -> runs


def expand(spec: BenchmarkSpec, runs_dir: Location, seeds: dict[str, int] | None = None) -> tuple[list[GridRun],
                                                                                             list[GridRun]]:
    """The teachers' runs, then every group's students (a [design] grid: with ``seeds`` per claim, the first
    look's by default). A teacher/student mismatch or two equal runs is BadKey naming the table."""
    if spec.design is not None:
        teachers, students = _expand_design(spec, runs_dir, seeds or first_look(spec))
    else:
        teachers = [_teacher_run(spec, t, seed) for t in spec.teachers for seed in t.seeds]
        _check_distinct(teachers)
        students = [run for g in spec.groups for run in _expand_group(g, spec.defaults, teachers, runs_dir)]
    _check_distinct(teachers + students)
    return teachers, students


def _teacher_run(spec: BenchmarkSpec, t: TeacherSpec, seed: int, index: int = -1,
                 subset_seed: int | None = None) -> GridRun:
    """One teacher; ``subset_seed``: its training subset's draw (its student's, in a per-seed [design] grid)."""
    fixed: dict[str, Any] = {"role": "teacher", "method": methods.teacher_method(), "seed": seed}
    if subset_seed is not None:
        fixed["subset_seed"] = subset_seed
    cfg = build_config(spec.defaults, t.settings, f"teachers.{t.id}", fixed)
    return GridRun(cfg.run_id(), cfg, "teacher", t.id, "", index)


def _student_run(spec_defaults: dict[str, Any], g: GroupSpec, method: str, arch: str, seed: int, steps: int,
                 teacher: GridRun | None, runs_dir: Location, index: int = -1,
                 subset_seed: int | None = None) -> GridRun:
    """One student; its ``teacher`` is the teacher's run record (an absolute path: Ray trials that change their
    working directory still find it)."""
    key, t_id = f"students.{g.name}", teacher.run_id if teacher else ""
    fixed = {"role": "student", "method": method, "arch": arch, "seed": seed, "steps": steps,
             "teacher": str(runs_dir / f"{t_id}.json") if t_id else ""}
    if subset_seed is not None:
        fixed["subset_seed"] = subset_seed
    cfg = build_config(spec_defaults, merge(g.settings, g.method_settings.get(method, {})), key, fixed)
    if teacher is not None:
        wrong = teacher_mismatch(cfg, teacher.config, f"teacher {teacher.group}")
        if wrong is not None:  # found now, not after the teacher has trained
            raise BadKey(f"{key}.{wrong[0]}", wrong[1])
    return GridRun(cfg.run_id(t_id), cfg, "student", g.name, t_id, index)


def _expand_group(g: GroupSpec, defaults: dict[str, Any], teachers: list[GridRun], runs_dir: Location) -> list[GridRun]:
    """A seeded group: methods x archs x seeds x budgets, students split evenly over its teacher seeds."""
    by_seed = {t.config.seed: t for t in teachers if t.group == g.teacher}
    return [_student_run(defaults, g, method, arch, seed, steps,
                         by_seed[g.teacher_seeds[k % len(g.teacher_seeds)]]
                         if g.teacher and methods.get(method).needs_teacher else None, runs_dir)
            for method in g.methods for arch in g.archs for k, seed in enumerate(g.seeds)
            for steps in g.budgets[method]]


def _arm_sizes(spec: BenchmarkSpec, seeds: dict[str, int]) -> dict[tuple[str, str, str, int], int]:
    """(group, method, arch, budget) -> seeds of that arm: a claim's deciding arms get ``seeds[claim]``."""
    assert spec.design is not None
    base, out = spec.design.look_every, dict[tuple[str, str, str, int], int]()
    for c in spec.claims.values():  # the regime arms too: the regime is checked at every look
        for method, budget in (*c.deciding_arms(), *c.regime_arms()):
            key = (c.control if method == CONTROL else c.group, method, c.arch, budget)
            out[key] = max(out.get(key, base), seeds.get(c.key, base))
    return out


def _expand_design(spec: BenchmarkSpec, runs_dir: Location, seeds: dict[str, int]) -> tuple[list[GridRun],
                                                                                        list[GridRun]]:
    """Every arm (group, method, arch, budget) with the first look's seeds; a claim's deciding and regime arms
    with ``seeds[claim]``. Seeding: a paired group's arms share seed i (a claim's group after the first, when it
    has scratch students of its own: plus MAX_SEEDS x the block of its first method, a block no independent arm
    draws from); in an independent group each method draws its own block of seeds (MAX_SEEDS per block, in the
    order the file declares them). The teacher of student seed s has seed TEACHER_SEED + s, so every student has
    its own teacher. Subsets "per_seed": student seed s and its teacher train on training subset s
    (RunConfig.subset_seed), so an arm of n runs draws n subsets and a paired group's arms share subset i as they
    share seed i."""
    assert spec.design is not None
    base, arm_n, paired = spec.design.look_every, _arm_sizes(spec, seeds), group_seeding(spec)
    per_seed = spec.design.subsets == "per_seed"
    teachers_by_id = {t.id: t for t in spec.teachers}
    teachers: dict[str, GridRun] = {}
    students: list[GridRun] = []
    # groups of claims after the first one that train teacherless students of their own (which could repeat
    # another group's runs): their seeds are offset; a group whose control lives elsewhere shares seed i with it
    claim_groups = [g.name for g in spec.groups if any(c.group == g.name for c in spec.claims.values())
                    and any(not methods.get(m).needs_teacher for m in g.methods)]
    offset_groups = set(claim_groups[1:])
    first_block: dict[str, int] = {}
    for block, (g, method) in enumerate(((grp, m) for grp in spec.groups for m in grp.methods), start=1):
        first_block.setdefault(g.name, block)
        uses_teacher = bool(g.teacher) and methods.get(method).needs_teacher
        for arch in g.archs:
            for steps in g.budgets[method]:
                for i in range(arm_n.get((g.name, method, arch, steps), base)):
                    # a paired group's arms share seed i; a claim's group after the first is offset by its first
                    # method's block (its own), so two claims' scratch arms never repeat each other's runs (an
                    # ablation arm or a bf16 twin keeps seed i: it pairs with the first group's runs seed for seed)
                    offset = first_block[g.name] * MAX_SEEDS if g.name in offset_groups else 0
                    seed = offset + i if paired[g.name] else block * MAX_SEEDS + i
                    subset = seed if per_seed else None
                    t_run = None
                    if uses_teacher:
                        t_run = _teacher_run(spec, teachers_by_id[g.teacher], TEACHER_SEED + seed, i, subset)
                        t_run = teachers.setdefault(t_run.run_id, t_run)
                    students.append(_student_run(spec.defaults, g, method, arch, seed, steps, t_run, runs_dir, i,
                                                 subset))
    return sorted(teachers.values(), key=lambda r: (r.group, r.config.seed)), students


def _check_distinct(runs: list[GridRun]) -> None:
    seen: dict[str, GridRun] = {}
    for r in runs:
        if r.run_id in seen:
            a = seen[r.run_id]
            raise BadKey(f"{r.role}s.{r.group}", f"run {r.run_id} ({_describe(r)}) duplicates the same run in "
                                                 f"{a.role}s.{a.group} (every setting equal); drop one or change "
                                                 "a setting")
        seen[r.run_id] = r


def group_seeding(spec: BenchmarkSpec) -> dict[str, bool]:
    """Group name -> paired? in a [design] grid: its claims' seeding, else the [design] table's."""
    default = spec.design is not None and spec.design.seeding == "paired"
    out = {g.name: default for g in spec.groups}
    for c in spec.claims.values():
        out[c.group] = c.paired
    return out


def _describe(r: GridRun) -> str:
    c = r.config
    return f"{c.method} {c.arch} seed {c.seed} steps {c.steps}"
