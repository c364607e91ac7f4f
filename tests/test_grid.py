"""Benchmark files -> grids: the presets' shapes and budgets, and one clear line for every malformed file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fspbench import methods
from fspbench.grid import Benchmark, at_look, available_benchmarks, load_benchmark, look_of, resolve_benchmark

PRESETS = ("smoke", "default", "full", "paper")


def raw_of(b: Benchmark) -> dict:
    return tomllib.loads(b.text)


def expected_counts(raw: dict) -> tuple[int, int]:
    """At the first look: students = methods x archs x budgets x the first look's seeds (budgets may be per method);
    one teacher per student seed that uses a teacher (a paired group's methods share seed i, and so teacher i).
    Files without [design] list their seeds: one teacher run per listed seed."""
    design = raw.get("design")
    if design is None:
        teachers = sum(len(t["seeds"]) for t in raw.get("teachers", {}).values())
    students, teacher_seeds = 0, set()
    # a claim's group after the first with scratch students of its own draws offset seeds (and so its own teachers)
    claim_groups = [n for n, g in raw["students"].items() if "scratch" in g["methods"]
                    and any(c["group"] == n for c in raw.get("claims", {}).values())]
    for name, g in raw["students"].items():
        b = g["budgets"]
        per_arch_seed = sum(len(b[m]) for m in g["methods"]) if isinstance(b, dict) else len(g["methods"]) * len(b)
        n = design["look_every"] if design else len(g["seeds"])
        students += per_arch_seed * len(g["archs"]) * n
        if design and g.get("teacher"):
            paired = {c.get("seeding", design["seeding"]) for c in raw.get("claims", {}).values()
                      if c["group"] == name} or {design["seeding"]}
            users = [m for m in g["methods"] if m != "scratch"]
            offset = name if name in claim_groups[1:] else ""
            streams = [f"paired{offset}"] if paired == {"paired"} else [f"{name}/{m}" for m in users]
            teacher_seeds |= {(g["teacher"], s, i) for s in streams for i in range(n)}
    return (len(teacher_seeds) if design else teachers), students


@pytest.fixture(scope="module", params=PRESETS)
def preset(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Benchmark:
    return load_benchmark(request.param, tmp_path_factory.mktemp("results"))


def test_presets_are_found() -> None:
    assert set(PRESETS) <= set(available_benchmarks())
    for name in PRESETS:
        assert resolve_benchmark(name).name == f"{name}.toml"


def test_preset_counts(preset: Benchmark) -> None:
    teachers, students = expected_counts(raw_of(preset))
    assert (len(preset.teachers), len(preset.students)) == (teachers, students)
    assert preset.runs == [*preset.teachers, *preset.students]
    assert preset.name == preset.path.stem
    assert set(preset.claims) == {"fast_optimization", "better_accuracy", "network_minimization",
                                  "cross_task_transfer"}
    assert preset.design is not None and preset.design.max_seeds % preset.design.look_every == 0


def test_preset_counts_by_hand() -> None:
    """The arithmetic of the first look spelled out once, so a preset edit that changes the grid is noticed."""
    counts = {n: (len(b.teachers), len(b.students)) for n in PRESETS for b in [load_benchmark(n, "/tmp/r")]}
    # smoke, 2 seeds: main (fsp 4 + scratch 5 + kd 1 + fitnet 1 + at 1 budgets), small (fsp 2: its control is
    # main's scratch), cross (2 + 3), bf16 (1 + 1), the ablation arm (1); teachers: one per paired seed of t8 (main,
    # bf16 and the arm share them), of t14 (small), and one per cross FSP seed (independent)
    assert counts["smoke"] == (2 + 2 + 2, (12 + 2 + 5 + 2 + 1) * 2)
    look1 = {n: load_benchmark(n, "/tmp/r").design.look_every for n in PRESETS}
    k = look1["default"]
    # default: main (fsp 3 + scratch 4 + kd + fitnet), small (fsp 2), cross (2 + 3); a teacher table each
    assert counts["default"] == (3 * k, (9 + 2 + 5) * k)
    # full, 10 seeds: fast (fsp 3 + scratch 2, independent: its own teachers), main (fsp 4 + scratch 5 + kd + fitnet,
    # a ResNet-20 teacher per paired seed), cross (2 + 3, paired)
    k = look1["full"]
    assert counts["full"] == (3 * k, (5 + 11 + 5) * k)
    # paper, 3 seeds: c10_fast (3 + 3), c10_minimize (2 + 2 + 1 + 1), c100 (3), cub (2 + 2); a teacher per paired
    # seed of each group (c10_minimize, a second claim group with scratch students of its own, draws offset seeds,
    # so it no longer shares c10_fast's teachers)
    k = look1["paper"]
    assert counts["paper"] == (4 * k, (6 + 6 + 3 + 4) * k)
    ablation = load_benchmark("ablation", "/tmp/r")
    # a [design] grid of one look: the reference (fsp 2 + scratch 2 budgets) and 7 arms of fsp, 10 paired seeds,
    # one teacher per seed shared by every arm
    k = ablation.design.look_every
    assert (len(ablation.teachers), len(ablation.students)) == (k, (4 + 7) * k)


def test_worst_case_adds_only_the_deciding_and_regime_arms(tmp_path: Path) -> None:
    b = load_benchmark("default", tmp_path)
    d = b.design
    last = at_look(b, {c: d.max_seeds for c in b.claims})
    new = [r for r in last.students if r.run_id not in {x.run_id for x in b.students}]
    arms = {(r.group, r.config.method, r.config.steps) for r in new}
    assert arms == {(c.control if m == "scratch" else c.group, m, s) for c in b.claims.values()
                    for m, s in (*c.deciding_arms(), *c.regime_arms())}
    assert all(r.seed_index >= d.look_every for r in new)
    assert len(last.teachers) == 3 * d.max_seeds  # one per FSP student seed: main, small and cross


def test_each_run_comes_at_the_look_that_adds_it(preset: Benchmark) -> None:
    """grid.look_of, from one expansion at the last look, against expanding the grid at every look."""
    d = preset.design
    if d is None:
        pytest.skip(f"{preset.name} has no [design]: one expansion, no looks")
    last = at_look(preset, {c: d.max_seeds for c in preset.claims})
    before: set[str] = set()
    for look in range(1, d.looks + 1):
        now = {r.run_id for r in at_look(preset, {c: look * d.look_every for c in preset.claims}).runs}
        assert {r.run_id for r in last.runs if look_of(r, d.look_every) == look} == now - before
        before = now
    assert before == {r.run_id for r in last.runs}


def test_ablation_preset_changes_one_fsp_choice_per_arm() -> None:
    b = load_benchmark("ablation", "/tmp/r")
    spec = b.ablation
    assert spec is not None and spec.reference == "paper" and len(spec.arms) == 7
    ident = {g: {s.config.fsp.identity()["pairs"] + "/" + s.config.fsp.identity()["pool"] + "/" +
                 s.config.fsp.identity()["distance"] + "/" + str(s.config.fsp.identity()["weights"])
                 for s in b.students if s.group == g and s.config.method == "fsp"} for g in [spec.reference,
                                                                                              *spec.arms]}
    assert all(len(v) == 1 for v in ident.values())  # one setting per arm
    assert len({v.pop() for v in ident.values()}) == 8  # all different
    fsp = [s for s in b.students if s.config.method == "fsp" and s.config.steps == spec.budget]
    assert len({(s.config.steps, s.config.init_steps, s.config.lr) for s in fsp}) == 1  # only the loss changes
    for g in [spec.reference, *spec.arms]:  # paired: every arm has seed i, subset i and teacher i of the reference
        mine = {(s.config.seed, s.config.subset_seed, s.teacher_run_id) for s in fsp if s.group == g}
        assert mine == {(s.config.seed, s.config.subset_seed, s.teacher_run_id) for s in fsp
                        if s.group == spec.reference} and len(mine) == b.design.max_seeds


def test_teacher_links(preset: Benchmark) -> None:
    teacher_ids = {t.run_id for t in preset.teachers}
    for t in preset.teachers:
        assert t.role == t.config.role == "teacher" and t.config.method == "scratch"
        assert t.teacher_run_id == "" and t.config.teacher == ""
        assert t.run_id == t.config.run_id()
    for s in preset.students:
        assert s.role == s.config.role == "student"
        if methods.get(s.config.method).needs_teacher:
            assert s.teacher_run_id in teacher_ids
            assert Path(s.config.teacher).is_absolute()
            assert s.config.teacher.endswith(f"runs/{s.teacher_run_id}.json")
        else:
            assert s.teacher_run_id == "" and s.config.teacher == ""
        assert s.run_id == s.config.run_id(s.teacher_run_id)


def test_ids_stable_and_distinct(preset: Benchmark, tmp_path: Path) -> None:
    again = load_benchmark(str(preset.path), tmp_path / "elsewhere")  # another results dir: same ids
    assert [r.run_id for r in again.runs] == [r.run_id for r in preset.runs]
    ids = [r.run_id for r in preset.runs]
    assert len(set(ids)) == len(ids)


def test_claims_reference_the_grid(preset: Benchmark) -> None:
    for spec in preset.claims.values():
        claim = spec.to_dict()
        runs = [s for s in preset.students if s.group in (spec.group, spec.control) and s.config.arch == claim["arch"]]
        assert {"fsp"} <= {s.config.method for s in runs if s.group == spec.group}
        assert {"scratch"} <= {s.config.method for s in runs if s.group == spec.control}
        f = claim.get("budget", claim.get("full_budget"))
        for m in ("fsp", "scratch"):  # the deciding budget and the regime check's 2F
            for steps in (f, 2 * f):
                assert any(s.config.method == m and s.config.steps == steps for s in runs), (m, steps)
        if spec.key in ("better_accuracy", "network_minimization"):  # the teacher saw exactly its student's images
            by_id = {t.run_id: t for t in preset.teachers}
            for s in runs:
                if s.teacher_run_id and s.group == spec.group:
                    t = by_id[s.teacher_run_id].config
                    assert (t.task, t.classes, t.train_per_class, t.image_size, t.subset_seed) == (
                        s.config.task, s.config.classes, s.config.train_per_class, s.config.image_size,
                        s.config.subset_seed)
    fast = preset.claims["fast_optimization"].to_dict()
    assert set(fast) == {"group", "arch", "short_budget", "full_budget", "margin", "target", "seeding", "look_every",
                         "max_seeds", "alpha", "smallest_effect"}
    assert fast["short_budget"] < fast["full_budget"] and 0 < fast["target"] <= 1
    # the paper's Table 1: the teacher is the students' own network
    fast_run = next(s for s in preset.students if s.group == fast["group"] and s.teacher_run_id)
    assert next(t for t in preset.teachers if t.run_id == fast_run.teacher_run_id).config.arch == fast["arch"]
    cross = preset.claims["cross_task_transfer"].to_dict()
    student = next(s for s in preset.students if s.group == cross["group"] and s.teacher_run_id)
    teacher = next(t for t in preset.teachers if t.run_id == student.teacher_run_id)
    tc, sc = teacher.config, student.config
    assert (tc.task, tc.classes) != (sc.task, sc.classes) or tc.weights
    if preset.name != "paper":
        assert set(tc.classes) == {0, 1, 2, 3, 4} and set(sc.classes) == {5, 6, 7, 8, 9}
    # one teacher per student seed: every FSP student of a claim's deciding arm has its own
    for c in preset.claims.values():
        (m, b), _ = c.deciding_arms()
        fsp = [s for s in preset.students if (s.group, s.config.method, s.config.steps) == (c.group, m, b)]
        assert len({s.teacher_run_id for s in fsp}) == len(fsp) == preset.design.look_every


@pytest.mark.parametrize("name", ["default", "full", "smoke"])
def test_design_of_the_presets(name: str) -> None:
    """Each claim at the full budget F with its regime checks (scratch and FSP at 2F), FSP's stage 1 and short
    stage 2 at F/3, the compute-matched controls and the budget sweep beside better_accuracy."""
    b = load_benchmark(name, "/tmp/r")
    fast = b.claims["fast_optimization"].to_dict()
    full = fast["full_budget"]
    assert fast["short_budget"] * 3 == pytest.approx(full, abs=1)
    for key in ("better_accuracy", "network_minimization", "cross_task_transfer"):
        c = b.claims[key]
        f = c.budget
        fsp = [s for s in b.students if s.group == c.group and s.config.method == "fsp"]
        scratch = {s.config.steps for s in b.students if s.group == c.control and s.config.method == "scratch"}
        init = {next(st.steps for st in methods.get("fsp").plan(s.config) if st.name == "init") for s in fsp}
        assert len(init) == 1 and 3 * init.pop() == pytest.approx(f, abs=1)  # stage 1 = F/3
        assert {f, 2 * f} <= scratch and {f, 2 * f} <= {s.config.steps for s in fsp}  # full and the regime check
    # one group sets FSP beside KD, FitNet, total-steps-matched scratch and the budget sweep
    main = next(g for g in {s.group for s in b.students}
                if {"kd", "fitnet"} <= {s.config.method for s in b.students if s.group == g})
    runs = [s for s in b.students if s.group == main]
    extra = {"at"} if name == "smoke" else set()  # attention transfer beside KD and FitNet in the smoke grid
    assert {s.config.method for s in runs} == {"fsp", "fitnet", "kd", "scratch"} | extra
    f = next(c.budget for c in b.claims.values() if c.group == main and c.key != "fast_optimization")
    scratch = {s.config.steps for s in runs if s.config.method == "scratch"}
    assert f + round(f / 3) in scratch  # total steps matched
    sweep = {s.config.steps for s in runs if s.config.method == "fsp"} & scratch
    assert {round(f / 3), f} <= sweep
    assert b.claims["better_accuracy"].headroom == 2.0 or name == "smoke"


def test_paper_settings() -> None:
    b = load_benchmark("paper", "/tmp/r")
    assert b.resources == {"cpu": 4.0, "gpu": 0.25}
    c10 = [t for t in b.teachers if t.group == "c10_r26"]
    assert {(t.config.arch, t.config.steps, t.config.lr, t.config.milestones) for t in c10} == {
        ("resnet26", 64000, 0.1, (0.5, 0.75))}
    fast = b.claims["fast_optimization"].to_dict()
    assert (fast["short_budget"], fast["full_budget"]) == (21000, 64000)
    fitnet = next(s for s in b.students if s.config.method == "fitnet" and s.config.task == "cifar10")
    assert methods.get("fitnet").plan(fitnet.config)[0].steps == 35000
    c100 = [r for r in b.runs if r.config.task == "cifar100"]
    assert c100 and all(not r.config.augment and r.config.width == 4 for r in c100)
    cub = [s for s in b.students if s.config.task == "cub200" and s.config.method == "fsp"]
    assert cub and all(s.config.fsp.adapter == "conv1x1" and s.config.arch == "resnet20" for s in cub)
    assert b.design.look_every == 3 and b.design.max_seeds == 9
    assert all(len({s.config.seed for s in b.students if s.group == g}) == 3 for g in {s.group for s in b.students})


# ---- malformed files -----------------------------------------------------------------------------

BASE = """
name = "tiny"
[defaults]
task = "fashion-mnist"
eval_every = 10
[resources]
cpu = 1
gpu = 0.0
[design]
seeding = "independent"
look_every = 2
max_seeds = 6
[teachers.t8]
arch = "resnet8"
steps = 40
[students.g]
teacher = "t8"
methods = ["fsp", "scratch"]
archs = ["resnet8"]
budgets = [20, 60, 120]
init_steps = 20
[claims.fast_optimization]
group = "g"
short_budget = 20
full_budget = 60
[claims.better_accuracy]
group = "g"
budget = 60
"""

# a grid whose tables list their seeds (no [design], so no claims)
SEEDED = """
name = "tiny"
[defaults]
task = "fashion-mnist"
eval_every = 10
[resources]
cpu = 1
gpu = 0.0
[teachers.t14]
arch = "resnet14"
seeds = [0]
steps = 40
[students.g]
teacher = "t14"
methods = ["fsp", "scratch"]
archs = ["resnet8"]
seeds = [0, 1]
budgets = [20, 60]
init_steps = 20
"""


def test_base_file_is_valid(tmp_path: Path) -> None:
    f = tmp_path / "tiny.toml"
    f.write_text(BASE)
    b = load_benchmark(str(f), tmp_path / "results")
    # the first look: 2 methods x 3 budgets x 2 seeds, and a teacher for each FSP student seed
    assert (len(b.teachers), len(b.students)) == (2, 12)
    common = {"arch": "resnet8", "seeding": "independent", "look_every": 2, "max_seeds": 6, "alpha": 0.025,
              "smallest_effect": 0.5}
    assert b.claims["fast_optimization"].to_dict() == {"group": "g", "short_budget": 20, "full_budget": 60,
                                                       "margin": 0.5, "target": 0.99, **common}
    assert b.claims["better_accuracy"].to_dict() == {"group": "g", "budget": 60, "headroom": 2.0, **common}
    assert b.text == BASE and b.path == f.resolve()
    seeded = tmp_path / "seeded.toml"
    seeded.write_text(SEEDED)
    assert [len(r) for r in (load_benchmark(str(seeded), tmp_path).teachers,
                             load_benchmark(str(seeded), tmp_path).students)] == [1, 8]


def test_design_seeds_independent_and_paired(tmp_path: Path) -> None:
    """Independent: each method its own block of seeds and its own teachers; paired: seed i in every arm and one
    teacher i. Either way one teacher per student seed, budgets of one method share their seeds, and the seed
    index says the order in which the looks add them."""
    f = tmp_path / "tiny.toml"
    f.write_text(BASE)
    b = load_benchmark(str(f), tmp_path)
    arms = {(r.config.method, r.config.steps) for r in b.students}
    seeds = {arm: sorted(r.config.seed for r in b.students if (r.config.method, r.config.steps) == arm)
             for arm in arms}
    assert seeds[("fsp", 60)] == seeds[("fsp", 120)] == [1000, 1001]
    assert seeds[("scratch", 60)] == [2000, 2001]
    assert sorted(t.config.seed for t in b.teachers) == [101000, 101001]
    later = at_look(b, {"fast_optimization": 4, "better_accuracy": 2})
    grown = {arm: sum(1 for r in later.students if (r.config.method, r.config.steps) == arm) for arm in arms}
    # the deciding arms and the regime arms (scratch and FSP at F and 2F: checked at every look) of the open claim
    assert grown == {("fsp", 20): 4, ("scratch", 60): 4, ("fsp", 60): 4, ("fsp", 120): 4, ("scratch", 20): 2,
                     ("scratch", 120): 4}
    # subsets per seed: student seed s draws training subset s, its teacher the same one
    by_id = {t.run_id: t for t in later.teachers}
    assert all(r.config.subset_seed == r.config.seed for r in later.students)
    assert all(by_id[r.teacher_run_id].config.subset_seed == r.config.subset_seed
               for r in later.students if r.teacher_run_id)
    for arm in arms:
        sel = [r for r in later.students if (r.config.method, r.config.steps) == arm]
        assert len({r.config.subset_seed for r in sel}) == len(sel)  # an arm of n runs draws n subsets
    assert {r.run_id for r in b.runs} <= {r.run_id for r in later.runs}  # earlier looks' runs are reused
    assert sorted(s.seed_index for s in later.students if (s.config.method, s.config.steps) == ("fsp", 20)) == \
        [0, 1, 2, 3]
    f.write_text(BASE.replace('seeding = "independent"', 'seeding = "paired"'))
    p = load_benchmark(str(f), tmp_path)
    assert {s.config.seed for s in p.students} == {0, 1}
    assert sorted(t.config.seed for t in p.teachers) == [100000, 100001]
    fsp = [s for s in p.students if s.config.method == "fsp"]
    assert all(s.teacher_run_id == next(t.run_id for t in p.teachers if t.config.seed == 100000 + s.config.seed)
               for s in fsp)


def test_per_method_budgets_and_group_overrides(tmp_path: Path) -> None:
    f = tmp_path / "tiny.toml"
    text = BASE.replace("budgets = [20, 60, 120]", 'budgets = { fsp = [20, 60, 120], scratch = [20, 60, 120, 80] }'
                        '\nfsp = { pool = "avg" }')
    f.write_text(text.replace("[defaults]", '[defaults]\nfsp = { distance = "mse_mean" }'))
    b = load_benchmark(str(f), tmp_path)
    assert sorted(s.config.steps for s in b.students if s.seed_index == 0 and s.config.method == "scratch") == [
        20, 60, 80, 120]
    fsp = next(s for s in b.students if s.config.method == "fsp").config.fsp
    assert (fsp.pool, fsp.distance) == ("avg", "mse_mean")  # nested tables merge over [defaults]


def _sub(old: str, new: str):
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


def _add(section: str, line: str):
    return _sub(f"[{section}]\n", f"[{section}]\n{line}\n")


def _seeded(edit):
    """An edit of SEEDED instead of BASE."""
    def on_seeded(_: str) -> str:
        return edit(SEEDED)
    return on_seeded


MALFORMED = [
    # (id, edit of BASE, substrings the one-line message must contain)
    ("unknown-top-key", lambda t: "teachrs = 1\n" + t, ["unknown key teachrs", "did you mean teachers"]),
    ("unknown-group-key", _sub("methods =", "methodz ="), ["unknown key students.g.methodz", "did you mean methods"]),
    ("unknown-resource-key", _add("resources", "gpus = 1"), ["unknown key resources.gpus"]),
    ("unknown-fsp-key", _add("students.g", 'fsp = { poool = "max" }'),
     ["unknown key students.g.fsp.poool", "did you mean pool"]),
    ("unknown-claim-key", _add("claims.fast_optimization", "margn = 1"), ["claims.fast_optimization.margn"]),
    ("unknown-claim", lambda t: t + '\n[claims.faster]\ngroup = "g"\n', ["claims.faster"]),
    ("unknown-design-key", _add("design", "looks = 3"), ["unknown key design.looks", "look_every"]),
    ("design-seeding-missing", _sub('seeding = "independent"\n', ""), ["design.seeding", "paired", "independent"]),
    ("design-seeding-unknown", _sub('seeding = "independent"', 'seeding = "blocked"'), ["design.seeding", "blocked"]),
    ("design-max-not-multiple", _sub("max_seeds = 6", "max_seeds = 5"), ["design.max_seeds", "multiple of look_every"]),
    ("design-look-every-one", _sub("look_every = 2", "look_every = 1"), ["design.look_every", ">= 2"]),
    ("design-alpha", _add("design", "alpha = 0.7"), ["design.alpha", "(0, 0.5)"]),
    ("design-effect", _add("design", "smallest_effect = 0"), ["design.smallest_effect", "> 0"]),
    ("claims-without-design", lambda t: t.replace(t[t.index("[design]"):t.index("[teachers")], ""),
     ["design", "the claims need a [design] table"]),
    ("design-seeds-in-group", _add("students.g", "seeds = [0, 1]"), ["students.g.seeds", "set by [design]"]),
    ("design-teacher-seeds", _add("students.g", "teacher_seeds = [0]"), ["students.g.teacher_seeds", "[design]"]),
    ("design-seeds-in-teacher", _add("teachers.t8", "seeds = [0]"), ["teachers.t8.seeds", "one teacher per student"]),
    ("claim-seeding-unknown", _add("claims.better_accuracy", 'seeding = "both"'), ["claims.better_accuracy.seeding"]),
    ("claims-of-one-group-disagree", _add("claims.better_accuracy", 'seeding = "paired"'),
     ["claims.better_accuracy.seeding", "share its seeding"]),
    ("claim-without-regime-arms", _sub("budgets = [20, 60, 120]", "budgets = [20, 60]"),
     ["claims.fast_optimization.group", "twice the full budget", "120"]),
    ("fast-teacher-of-another-network", _sub('arch = "resnet8"\nsteps = 40', 'arch = "resnet14"\nsteps = 40'),
     ["claims.fast_optimization.group", "Table 1", "resnet14"]),
    ("claim-headroom-negative", _add("claims.better_accuracy", "headroom = -1"), ["claims.better_accuracy.headroom"]),
    ("claim-margin-zero", _add("claims.fast_optimization", "margin = 0"), ["claims.fast_optimization.margin", "> 0"]),
    ("ablation-unknown-reference", lambda t: t + '\n[ablation]\nreference = "h"\nbudget = 60\n',
     ["ablation.reference", "not a student group"]),
    ("ablation-no-arm", lambda t: t + '\n[ablation]\nreference = "g"\nbudget = 60\n', ["ablation.arms"]),
    ("ablation-unknown-key", lambda t: t + '\n[ablation]\nreference = "g"\nbudget = 60\nequivalenc = 1\n',
     ["unknown key ablation.equivalenc", "did you mean equivalence"]),
    ("teacher-seeds-unknown", _seeded(_add("students.g", "teacher_seeds = [0, 7]")),
     ["students.g.teacher_seeds", "[0]"]),
    ("method-settings-not-a-method", _add("students.g", "method_settings = { kd = { init_lr = 0.1 } }"),
     ["students.g.method_settings.kd", "not one of this group's methods"]),
    ("wrong-type-group", _add("students.g", 'lr = "fast"'), ["students.g.lr", "expected a number"]),
    ("wrong-type-defaults", _sub("eval_every = 10", 'eval_every = "10"'), ["defaults.eval_every", "integer"]),
    ("wrong-type-teacher", _add("teachers.t8", "augment = 1"), ["teachers.t8.augment", "true or false"]),
    ("zero-budget", _sub("budgets = [20, 60, 120]", "budgets = [0, 60]"), ["students.g.budgets", "integers > 0"]),
    ("negative-budget", _sub("budgets = [20, 60, 120]", "budgets = [-20]"), ["students.g.budgets"]),
    ("float-budget", _sub("budgets = [20, 60, 120]", "budgets = [20.5]"), ["students.g.budgets"]),
    ("zero-teacher-steps", _sub("steps = 40", "steps = 0"), ["teachers.t8.steps", "> 0"]),
    ("unknown-arch", _sub('archs = ["resnet8"]', 'archs = ["resnet9"]'), ["students.g.archs", "resnet9"]),
    ("unknown-teacher-arch", _sub('arch = "resnet8"\nsteps', 'arch = "vgg16"\nsteps'), ["teachers.t8.arch", "vgg16"]),
    ("unknown-method", _sub('"fsp", "scratch"]', '"fspp", "scratch"]'),
     ["students.g.methods", "fspp", "did you mean fsp"]),
    ("unknown-task", _sub('task = "fashion-mnist"', 'task = "mnist"'), ["defaults.task", "mnist"]),
    ("missing-teacher", _sub('teacher = "t8"', 'teacher = "t99"'),
     ['students.g.teacher', '"t99" is not a declared teacher (declared: t8)']),
    ("no-teacher-for-fsp", _sub('teacher = "t8"\n', ""), ["students.g.teacher", "need a teacher"]),
    ("bad-teacher-seed", _seeded(_add("students.g", "teacher_seed = 3")), ["students.g.teacher_seed", "[0]"]),
    ("missing-seeds", _seeded(_sub("seeds = [0, 1]\n", "")),
     ["students.g.seeds", "non-empty list of distinct integers >= 0"]),
    ("empty-seeds", _seeded(_sub("seeds = [0]", "seeds = []")), ["teachers.t14.seeds", "non-empty list"]),
    ("negative-seed", _seeded(_sub("seeds = [0, 1]", "seeds = [0, -1]")), ["students.g.seeds"]),
    ("duplicate-seeds", _seeded(_sub("seeds = [0, 1]", "seeds = [1, 1]")), ["students.g.seeds", "distinct"]),
    ("grid-set-key", _add("students.g", 'arch = "resnet8"'),
     ["students.g.arch", "set by the grid", "use archs = [...]"]),
    ("grid-set-method-in-teacher", _add("teachers.t8", 'method = "fsp"'), ["teachers.t8.method"]),
    ("invalid-toml", _sub("[students.g]", "[students.g"), ["invalid TOML"]),
    ("claim-missing-group", _sub('group = "g"\nbudget', 'group = "h"\nbudget'),
     ["claims.better_accuracy.group", '"h"']),
    ("claim-missing-budget", _sub("\nbudget = 60", "\nbudget = 70"), ["claims.better_accuracy.budget", "70"]),
    ("claim-short-not-shorter", _sub("short_budget = 20", "short_budget = 60"), ["claims.fast_optimization"]),
    ("claim-bad-arch", _add("claims.better_accuracy", 'arch = "resnet20"'), ["claims.better_accuracy.arch"]),
    ("claim-group-lacks-scratch", _sub('"fsp", "scratch"]', '"fsp", "kd"]'), ["claims.fast_optimization.group"]),
    ("cross-task-same-task", lambda t: t + '\n[claims.cross_task_transfer]\ngroup = "g"\nbudget = 60\n',
     ["claims.cross_task_transfer.group", "another task"]),
    ("duplicate-runs", _seeded(lambda t: t + "\n" + t[t.index("[students.g]"):].replace(
        "[students.g]", "[students.g2]")), ["students.g2", "students.g", "duplicates"]),
    ("duplicate-teachers", _seeded(_sub("[students.g]", '[teachers.t2]\narch = "resnet14"\nseeds = [0]\n'
                                                        'steps = 40\n[students.g]')),
     ["teachers.t2", "teachers.t14", "duplicates"]),
    ("zero-cpu", _sub("cpu = 1", "cpu = 0"), ["resources.cpu", "> 0"]),
    ("negative-gpu", _sub("gpu = 0.0", "gpu = -1"), ["resources.gpu", ">= 0"]),
    ("class-out-of-range", _add("students.g", "classes = [3, 12]"), ["students.g.classes", "0..9"]),
    ("budgets-table-missing-method", _sub("budgets = [20, 60, 120]", "budgets = { fsp = [20] }"),
     ["students.g.budgets", "scratch"]),
    ("width-mismatch", _add("students.g", "width = 2"), ["students.g.fsp.adapter", "conv1x1"]),
    ("no-students", lambda t: t[: t.index("[students.g]")], ["students", "at least one"]),
    ("bad-name", _sub('name = "tiny"', 'name = "a/b"'), ["name"]),
]


@pytest.mark.parametrize("edit,needles", [pytest.param(e, n, id=i) for i, e, n in MALFORMED])
def test_malformed_file_raises_one_line(tmp_path: Path, edit, needles: list[str]) -> None:
    from fspbench.errors import BadInput

    f = tmp_path / "broken.toml"
    f.write_text(edit(BASE))
    with pytest.raises(BadInput) as info:
        load_benchmark(str(f), tmp_path / "results")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(str(f)) or msg.startswith("broken.toml"), msg
    for needle in needles:
        assert needle in msg, msg


def test_missing_file_and_unknown_preset(tmp_path: Path) -> None:
    from fspbench.errors import BadInput

    with pytest.raises(BadInput, match="nope") as info:
        resolve_benchmark("nope")
    for name in PRESETS:
        assert name in str(info.value)
    missing = str(tmp_path / "missing.toml")
    with pytest.raises(BadInput) as info:
        load_benchmark(missing, tmp_path)
    assert str(info.value).startswith(missing) and "smoke" in str(info.value)


@pytest.mark.slow
def test_calibrated_seconds_order_deeper_longer_and_distilled_runs_first(tmp_path) -> None:
    """Runs start longest-first: their calibrated seconds grow with steps, depth and a teacher's forward passes."""
    from fspbench.estimate import estimate_grid

    bench = load_benchmark("full", tmp_path)
    cost = estimate_grid(bench, bench.runs, 2, 1).run_s

    by = {(r.group, r.config.method, r.config.steps, r.seed_index): r.run_id for r in bench.runs}
    t20, t8 = by[("t20", "scratch", 12600, 0)], by[("t8", "scratch", 12600, 0)]
    t8_04 = by[("t8_04", "scratch", 6300, 0)]
    short, long_ = by[("main", "scratch", 4200, 0)], by[("main", "scratch", 12600, 0)]
    fsp, scratch = by[("main", "fsp", 12600, 0)], by[("main", "scratch", 12600, 0)]
    assert cost[t8] > cost[t8_04]  # longer
    assert cost[t20] > cost[t8]  # deeper
    # 3x the steps, less than 3x the seconds: the final evaluation of the full test set and the start are fixed
    assert 2 * cost[short] < cost[long_] < 3 * cost[short]
    assert cost[fsp] > cost[scratch]  # a stage 1 with the teacher's forward passes
