"""A validated benchmark file (fspbench.schema) -> the typed BenchmarkSpec, checking what one table says of
another: a group's teacher and its seeds, a group's budgets per method, a claim's group, network and budgets
(its claim kind's own checks), the ablation's reference and arms. No run is built here (grid.expand does).

Every problem is BadKey(key path in the file, what is expected); schema.parse_file adds the file's name.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from fspbench import claims as claim_kinds
from fspbench import methods
from fspbench.config import RunConfig, merge
from fspbench.errors import BadKey
from fspbench.schema import GROUP_KEYS, RUN_KEYS, build_config, int_list, is_int, quote
from fspbench.spec import (
    SEEDINGS,
    AblationSpec,
    BenchmarkSpec,
    ClaimSpec,
    DesignSpec,
    GroupSpec,
    TeacherSpec,
    TrackingSpec,
)

TREATMENT, CONTROL = claim_kinds.TREATMENT, claim_kinds.CONTROL


def to_spec(f: Any, path: Path, claim_order: list[str]) -> BenchmarkSpec:
    """The file's tables (a schema.BenchmarkFile) as a BenchmarkSpec; ``claim_order``: the claims as the file
    lists them (their order in claims.json and the report)."""
    design = DesignSpec(**f.design.model_dump()) if f.design is not None else None
    defaults = f.defaults.given(RUN_KEYS)
    teachers = tuple(_teacher(tid, t, defaults) for tid, t in f.teachers.items())
    groups = {name: _group(name, g, teachers, design is None) for name, g in f.students.items()}
    teacher_tables = {t.id: merge(defaults, t.settings) for t in teachers}
    specs = {key: _claim(key, getattr(f.claims, key).given(claim_kinds.get(key).table_keys), groups, teacher_tables,
                         defaults, design) for key in claim_order if design is not None}
    _one_seeding_per_group(specs)
    if design is not None:
        specs = _family(design, specs)
        _subsets(design, defaults, teachers, groups)
    ablation = _ablation(f.ablation, groups) if f.ablation is not None else None
    r = f.resources
    return BenchmarkSpec(f.name or path.stem, f.description, {"cpu": r.cpu, "gpu": r.gpu}, defaults, teachers,
                         tuple(groups.values()), specs, ablation, r.max_concurrent, design,
                         TrackingSpec(f.tracking.mlflow))


def _teacher(tid: str, t: Any, defaults: dict[str, Any]) -> TeacherSpec:
    settings = t.given(RUN_KEYS)
    build_config(defaults, settings, f"teachers.{tid}", {"role": "teacher", "method": methods.teacher_method()})
    return TeacherSpec(tid, tuple(t.seeds or ()), settings)


def _group(name: str, g: Any, teachers: tuple[TeacherSpec, ...], seeded: bool) -> GroupSpec:
    key = f"students.{name}"
    budgets = _budgets(g.budgets, key, g.methods)
    for m in g.method_settings:
        if m not in g.methods:
            raise BadKey(f"{key}.method_settings.{m}", f"is not one of this group's methods ({', '.join(g.methods)})")
    method_settings = {m: s.given(RUN_KEYS) for m, s in g.method_settings.items()}
    settings = g.given(k for k in RUN_KEYS if k not in GROUP_KEYS)
    declared = sorted(t.id for t in teachers)
    needing = [m for m in g.methods if methods.get(m).needs_teacher]
    if g.teacher is None:
        if needing:
            raise BadKey(f"{key}.teacher", f"methods {', '.join(needing)} need a teacher; expected teacher = one of "
                                           f"the declared teachers ({', '.join(declared) or 'none'})")
        for leaf in ("teacher_seed", "teacher_seeds"):
            if getattr(g, leaf) is not None:
                raise BadKey(f"{key}.{leaf}", "given without a teacher; drop it or set teacher")
        return GroupSpec(name, "", (), g.methods, g.archs, tuple(g.seeds or ()), budgets, settings, method_settings)
    if g.teacher not in declared:
        raise BadKey(f"{key}.teacher", f"{quote(g.teacher)} is not a declared teacher "
                                       f"(declared: {', '.join(declared) or 'none'})")
    if not needing:
        users = ", ".join(n for n in methods.names() if methods.get(n).needs_teacher)
        raise BadKey(f"{key}.teacher", f"no method of this group uses a teacher ({', '.join(g.methods)}); drop "
                                       f"teacher or add one of {users} to methods")
    chosen = _teacher_seeds(g, key, next(t for t in teachers if t.id == g.teacher)) if seeded else ()
    return GroupSpec(name, g.teacher, chosen, g.methods, g.archs, tuple(g.seeds or ()), budgets, settings,
                     method_settings)


def _teacher_seeds(g: Any, key: str, teacher: TeacherSpec) -> tuple[int, ...]:
    """A seeded group's teacher_seed / teacher_seeds, checked against its teacher's seeds."""
    t_seeds = list(teacher.seeds)
    if g.teacher_seed is not None and g.teacher_seeds is not None:
        raise BadKey(f"{key}.teacher_seed", "given with teacher_seeds; keep one of the two")
    leaf = "teacher_seeds" if g.teacher_seeds is not None else "teacher_seed"
    try:
        chosen = (int_list(g.teacher_seeds, 0) if g.teacher_seeds is not None
                  else (t_seeds[0] if g.teacher_seed is None else g.teacher_seed,))
    except ValueError as err:
        raise BadKey(f"{key}.{leaf}", str(err)) from None
    for t_seed in chosen:
        if not is_int(t_seed) or t_seed not in t_seeds:
            raise BadKey(f"{key}.{leaf}", f"expected seeds of teacher {teacher.id} ({t_seeds}), got {t_seed!r}")
    return tuple(chosen)


def _budgets(value: Any, key: str, group_methods: tuple[str, ...]) -> dict[str, list[int]]:
    """``budgets = [...]`` for every method, or ``{fsp = [...], scratch = [...]}`` per method."""
    key = f"{key}.budgets"

    def budget_list(v: Any, where: str) -> list[int]:
        try:
            return list(int_list(v, 1))
        except ValueError as err:
            raise BadKey(where, str(err)) from None
    if isinstance(value, dict):
        for m in value:
            if m not in group_methods:
                raise BadKey(f"{key}.{m}", f"is not one of this group's methods ({', '.join(group_methods)})")
        missing = [m for m in group_methods if m not in value]
        if missing:
            raise BadKey(key, f"expected budgets for every method; missing {', '.join(missing)}")
        return {m: budget_list(value[m], f"{key}.{m}") for m in group_methods}
    budgets = budget_list(value, key)
    return {m: budgets for m in group_methods}


def _claim(claim: str, table: dict[str, Any], groups: dict[str, GroupSpec], teacher_tables: dict[str, dict[str, Any]],
           defaults: dict[str, Any], design: DesignSpec) -> ClaimSpec:
    """One [claims.<key>] table, checked against its group: the arms its test and its regime need."""
    key, kind = f"claims.{claim}", claim_kinds.get(claim)
    c = {**kind.defaults(design), **table}
    g = _claim_group(c, key, groups)
    own_group = g
    if c.get("control_group") is not None:
        g = _with_control(c, key, g, groups, defaults)
    # the group's own settings first (a bad value is named where the file sets it, not as a claim's misfit)
    build_config(defaults, g.settings, f"students.{g.name}", {"role": "student", "method": CONTROL, "arch": c["arch"]})
    kind.check(key, c, g, _filled(teacher_tables[g.teacher]) if g.teacher else None,
               _filled(merge(defaults, g.settings)))
    for m in (TREATMENT, CONTROL):  # the convergence check: both at 2F
        if 2 * c["budget"] not in g.budgets[m]:
            raise BadKey(f"{key}.group", f"the regime check trains {m} at twice the full budget; add "
                                         f"{2 * c['budget']} to group {g.name}'s budgets for {m}")
    if c["seeding"] not in SEEDINGS:
        raise BadKey(f"{key}.seeding", f"expected one of {', '.join(map(repr, SEEDINGS))}, got {quote(c['seeding'])}")
    for k in ("smallest_effect", "headroom"):
        v = table.get(k)
        if k in table and (not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0):
            raise BadKey(f"{key}.{k}", f"expected accuracy points > 0, got {v!r}")
    spec = ClaimSpec(claim, own_group.name, c["arch"], c["budget"], c["seeding"], design.look_every,
                     design.max_seeds, design.alpha, float(c["smallest_effect"]), short_budget=c.get("short_budget"),
                     headroom_gates=kind.headroom_gates, control_group=c.get("control_group") or "")
    # the kind's own keys where the table (or its defaults) has them, else ClaimSpec's defaults
    return replace(spec, headroom=float(c.get("headroom", spec.headroom)), margin=float(c.get("margin", spec.margin)),
                   target=float(c.get("target", spec.target)))


def _with_control(c: dict[str, Any], key: str, g: GroupSpec, groups: dict[str, GroupSpec],
                  defaults: dict[str, Any]) -> GroupSpec:
    """The claim's group as its checks see it when its scratch arm lives in ``control_group``: the control
    group's scratch budgets in place of its own (which has none); the two groups must train on the same images
    with the claim's network, so that scratch seed i is FSP seed i's partner."""
    name = c["control_group"]
    if not isinstance(name, str) or name not in groups or name == g.name:
        raise BadKey(f"{key}.control_group", f"expected another student group (groups: {', '.join(groups)}), got "
                                             f"{quote(name)}")
    ctrl = groups[name]
    if CONTROL not in ctrl.methods or c["arch"] not in ctrl.archs:
        raise BadKey(f"{key}.control_group", f"group {name} needs {CONTROL} students of {c['arch']}")
    if CONTROL in g.methods:
        raise BadKey(f"{key}.control_group", f"group {g.name} has {CONTROL} students of its own; drop control_group "
                                             f"or {CONTROL} from its methods")
    mine, theirs = _filled(merge(defaults, g.settings)), _filled(merge(defaults, ctrl.settings))
    for k in claim_kinds.DATA_KEYS:
        if mine[k] != theirs[k]:
            raise BadKey(f"{key}.control_group", f"group {name} trains on other images ({k} = {theirs[k]!r}, group "
                                                 f"{g.name}: {mine[k]!r}); its scratch students cannot be the control")
    return replace(g, methods=(*g.methods, CONTROL), budgets={**g.budgets, CONTROL: ctrl.budgets[CONTROL]})


def _family(design: DesignSpec, specs: dict[str, ClaimSpec]) -> dict[str, ClaimSpec]:
    """Each claim with its family (the [design]'s ``family``, else every claim of the file), correction and
    calibration; a claim outside the family keeps the full alpha and is labelled so."""
    family = design.family if design.family is not None else tuple(specs)
    for k in family:
        if k not in specs:
            raise BadKey("design.family", f"{quote(k)} is not a claim of this file (claims: {', '.join(specs)})")
    return {k: replace(c, family=family if k in family else (k,),
                       correction=design.correction if k in family else "none", calibrate=design.calibrate)
            for k, c in specs.items()}


def _subsets(design: DesignSpec, defaults: dict[str, Any], teachers: tuple[TeacherSpec, ...],
             groups: dict[str, GroupSpec]) -> None:
    """``subsets = "per_seed"`` gives every run its training subset: no table may set subset_seed then."""
    if design.subsets != "per_seed":
        return
    tables = {"defaults": defaults, **{f"teachers.{t.id}": t.settings for t in teachers},
              **{f"students.{g.name}": g.settings for g in groups.values()},
              **{f"students.{g.name}.method_settings.{m}": ms for g in groups.values()
                 for m, ms in g.method_settings.items()}}
    for where, table in tables.items():
        if "subset_seed" in table:
            raise BadKey(f"{where}.subset_seed", 'set by [design] (subsets = "per_seed": student seed i draws '
                                                 'its own training subset, its teacher the same); remove it, or '
                                                 'set subsets = "shared" in [design]')


def _filled(table: dict[str, Any]) -> dict[str, Any]:
    """A table with RunConfig's defaults for the keys a claim compares between a teacher and its students."""
    return {**{k: getattr(RunConfig, k) for k in (*claim_kinds.DATA_KEYS, "arch")}, **table}


def _claim_group(c: dict[str, Any], key: str, groups: dict[str, GroupSpec]) -> GroupSpec:
    """The claim's group, with FSP and scratch students and the claim's arch (filled in when it has one)."""
    gname = c.get("group")
    if not isinstance(gname, str) or gname not in groups:
        raise BadKey(f"{key}.group", f"{quote(gname)} is not a student group (groups: {', '.join(groups)})")
    g = groups[gname]
    needed = (TREATMENT,) if c.get("control_group") is not None else (TREATMENT, CONTROL)
    missing = [m for m in needed if m not in g.methods]
    if missing:
        raise BadKey(f"{key}.group", f"group {gname} lacks methods {', '.join(missing)}; the claim compares "
                                     f"{TREATMENT} and {CONTROL} students (or name the group of its {CONTROL} "
                                     "students with control_group)")
    if "arch" not in c:
        if len(g.archs) > 1:
            raise BadKey(f"{key}.arch", f"group {gname} has several archs; expected one of {', '.join(g.archs)}")
        c["arch"] = g.archs[0]
    if c["arch"] not in g.archs:
        raise BadKey(f"{key}.arch", f"expected one of group {gname}'s archs ({', '.join(g.archs)}), "
                                    f"got {quote(c['arch'])}")
    return g


def _one_seeding_per_group(specs: dict[str, ClaimSpec]) -> None:
    """One group, one seeding: its arms cannot be both paired and independent."""
    seeding: dict[str, ClaimSpec] = {}
    for c in specs.values():
        for group in dict.fromkeys((c.group, c.control)):
            other = seeding.setdefault(group, c)
            if other.seeding != c.seeding:
                raise BadKey(f"claims.{c.key}.seeding", f"group {group} is {other.seeding} for claims.{other.key}; "
                                                        "claims of one group share its seeding")


def _ablation(a: Any, groups: dict[str, GroupSpec]) -> AblationSpec:
    """The [ablation] table: every arm's FSP students against the reference group's, at one budget."""
    ref, budget = a.reference, a.budget
    if not isinstance(ref, str) or ref not in groups:
        raise BadKey("ablation.reference", f"{quote(ref)} is not a student group (groups: {', '.join(groups)})")
    if not is_int(budget):
        raise BadKey("ablation.budget", f"expected an integer main-task budget, got {quote(budget)}")
    for m in (TREATMENT, CONTROL):
        if m not in groups[ref].methods or budget not in groups[ref].budgets[m]:
            raise BadKey("ablation.reference", f"group {ref} needs {m} students at budget {budget}")
    arms = a.arms if a.arms is not None else [g for g, grp in groups.items() if g != ref and TREATMENT in grp.methods]
    if not isinstance(arms, list) or not arms or not all(isinstance(x, str) for x in arms):
        raise BadKey("ablation.arms", f"expected a non-empty list of student groups, got {arms!r}")
    for arm in arms:
        if arm not in groups or arm == ref or TREATMENT not in groups[arm].methods \
                or budget not in groups[arm].budgets[TREATMENT]:
            raise BadKey("ablation.arms", f"{quote(arm)}: expected a group other than the reference with "
                                          f"{TREATMENT} students at budget {budget}")
    return AblationSpec(ref, tuple(arms), budget, a.equivalence, a.converged_gain, a.correction)

