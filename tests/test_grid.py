"""Benchmark files -> grids: the presets' shapes and budgets, and one clear line for every malformed file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fspbench.grid import Benchmark, available_benchmarks, load_benchmark, resolve_benchmark
from fspbench.methods import METHODS

PRESETS = ("smoke", "default", "full", "paper")


def raw_of(b: Benchmark) -> dict:
    return tomllib.loads(b.text)


def expected_counts(raw: dict) -> tuple[int, int]:
    """Teachers: one run per seed. Students: methods x archs x seeds x budgets (budgets may be per method)."""
    teachers = sum(len(t["seeds"]) for t in raw.get("teachers", {}).values())
    students = 0
    for g in raw["students"].values():
        b = g["budgets"]
        per_arch_seed = sum(len(b[m]) for m in g["methods"]) if isinstance(b, dict) else len(g["methods"]) * len(b)
        students += per_arch_seed * len(g["archs"]) * len(g["seeds"])
    return teachers, students


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
    assert set(preset.claims) == {"fast_optimization", "better_accuracy", "cross_task_transfer"}


def test_preset_counts_by_hand() -> None:
    """The arithmetic spelled out once, so a preset edit that changes the grid is noticed."""
    counts = {n: (len(b.teachers), len(b.students)) for n in PRESETS for b in [load_benchmark(n, "/tmp/r")]}
    # main: (fsp 3 + scratch 5 + kd 1 + fitnet 1 budgets) x 2 seeds; cross: (1 + 3) x 2; bf16: 2 methods x 2 seeds;
    # the ablation arm: 2 seeds
    assert counts["smoke"] == (2 + 2, 10 * 2 + 4 * 2 + 2 * 2 + 2)
    # main: (fsp 3 + scratch 5 + kd 1 + fitnet 1) x 5 seeds; cross: (fsp 1 + scratch 3) x 5
    assert counts["default"] == counts["full"] == (2 + 2, 10 * 5 + 4 * 5)
    assert counts["paper"] == (3 + 1 + 1, (1 + 2) * 3 + 4 * 3 + 3 * 3 + 2 * 3)
    ablation = load_benchmark("ablation", "/tmp/r")
    # the reference group: fsp 1 + scratch 2 budgets; 7 arms of fsp; 5 seeds each
    assert (len(ablation.teachers), len(ablation.students)) == (2, (3 + 7) * 5)


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
    fsp = [s for s in b.students if s.config.method == "fsp"]
    assert len({(s.config.steps, s.config.init_steps, s.config.lr) for s in fsp}) == 1  # only the loss changes
    for g in [spec.reference, *spec.arms]:
        assert len({s.config.seed for s in fsp if s.group == g}) >= 5


def test_teacher_links(preset: Benchmark) -> None:
    teacher_ids = {t.run_id for t in preset.teachers}
    for t in preset.teachers:
        assert t.role == t.config.role == "teacher" and t.config.method == "scratch"
        assert t.teacher_run_id == "" and t.config.teacher == ""
        assert t.run_id == t.config.run_id()
    for s in preset.students:
        assert s.role == s.config.role == "student"
        if METHODS[s.config.method].needs_teacher:
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
    for claim in (c.to_dict() for c in preset.claims.values()):
        runs = [s for s in preset.students if s.group == claim["group"] and s.config.arch == claim["arch"]]
        methods = {s.config.method for s in runs}
        assert {"fsp", "scratch"} <= methods
        for key in ("budget", "short_budget"):
            if key in claim:
                for m in ("fsp", "scratch"):
                    assert any(s.config.method == m and s.config.steps == claim[key] for s in runs)
    fast = preset.claims["fast_optimization"].to_dict()
    assert set(fast) == {"group", "arch", "short_budget", "full_budget", "margin", "target", "converged_gain"}
    assert fast["short_budget"] < fast["full_budget"] and 0 < fast["target"] <= 1
    cross = preset.claims["cross_task_transfer"].to_dict()
    student = next(s for s in preset.students if s.group == cross["group"] and s.teacher_run_id)
    teacher = next(t for t in preset.teachers if t.run_id == student.teacher_run_id)
    tc, sc = teacher.config, student.config
    assert (tc.task, tc.classes) != (sc.task, sc.classes) or tc.weights
    if preset.name != "paper":
        assert set(tc.classes) == {0, 1, 2, 3, 4} and set(sc.classes) == {5, 6, 7, 8, 9}


@pytest.mark.parametrize("name", ["default", "full", "smoke"])
def test_design_of_the_presets(name: str) -> None:
    """Each claim at the full budget F with its regime check, FSP's stage 1 and short stage 2 at F/3, the
    compute-matched controls, the budget sweep, and two teacher seeds with the students split evenly."""
    b = load_benchmark(name, "/tmp/r")
    seeds = 2 if name == "smoke" else 5
    keys = ("fast_optimization", "better_accuracy", "cross_task_transfer")
    fast, better, cross = (b.claims[k].to_dict() for k in keys)
    full = fast["full_budget"]
    assert fast["short_budget"] * 3 == pytest.approx(full, abs=1) and better["budget"] == full
    for claim in (better, cross):
        f = claim["budget"]
        runs = [s for s in b.students if s.group == claim["group"]]
        budgets = {m: {s.config.steps for s in runs if s.config.method == m} for m in {s.config.method for s in runs}}
        init = {next(st.steps for st in METHODS["fsp"].stages(s.config) if st.name == "init")
                for s in runs if s.config.method == "fsp"}
        assert len(init) == 1 and 3 * init.pop() == pytest.approx(f, abs=1)  # stage 1 = F/3
        assert {f, 2 * f, f + round(f / 3)} <= budgets["scratch"]  # full, regime check, total steps matched
        assert f in budgets["fsp"]
        for m in budgets:  # every arm has its seeds
            for steps in budgets[m]:
                assert len({s.config.seed for s in runs if (s.config.method, s.config.steps) == (m, steps)}) \
                    >= (min(3, seeds) if steps == 2 * f else seeds), (m, steps)
        teachers = {s.teacher_run_id for s in runs if s.teacher_run_id}
        assert len(teachers) == 2  # two teacher seeds, students split evenly
        fsp_full = [s for s in runs if s.config.method == "fsp" and s.config.steps == f]
        split = [sum(s.teacher_run_id == t for s in fsp_full) for t in sorted(teachers)]
        assert max(split) - min(split) <= 1
    main = [s for s in b.students if s.group == better["group"]]
    assert {s.config.method for s in main} == {"fsp", "fitnet", "kd", "scratch"}
    sweep = {s.config.steps for s in main if s.config.method == "fsp"} & {s.config.steps for s in main
                                                                        if s.config.method == "scratch"}
    assert {round(full / 9), round(full / 3), full} <= sweep
    t_id = next(s.teacher_run_id for s in main if s.teacher_run_id)
    t_arch = next(t for t in b.teachers if t.run_id == t_id).config.arch
    assert _depth(t_arch) > _depth(better["arch"])  # a smaller student


def _depth(arch: str) -> int:
    return int(arch.removeprefix("resnet"))


def test_paper_settings() -> None:
    b = load_benchmark("paper", "/tmp/r")
    assert b.resources == {"cpu": 4.0, "gpu": 0.25}
    c10 = [t for t in b.teachers if t.group == "c10_r26"]
    assert {(t.config.arch, t.config.steps, t.config.lr, t.config.milestones) for t in c10} == {
        ("resnet26", 64000, 0.1, (0.5, 0.75))}
    fast = b.claims["fast_optimization"].to_dict()
    assert (fast["short_budget"], fast["full_budget"]) == (21000, 64000)
    fitnet = next(s for s in b.students if s.config.method == "fitnet" and s.config.task == "cifar10")
    assert METHODS["fitnet"].stages(fitnet.config)[0].steps == 35000
    c100 = [r for r in b.runs if r.config.task == "cifar100"]
    assert c100 and all(not r.config.augment and r.config.width == 4 for r in c100)
    cub = [s for s in b.students if s.config.task == "cub200" and s.config.method == "fsp"]
    assert cub and all(s.config.fsp.adapter == "conv1x1" and s.config.arch == "resnet20" for s in cub)
    assert all(len({s.config.seed for s in b.students if s.group == g}) >= 3 for g in {s.group for s in b.students})


# ---- malformed files -----------------------------------------------------------------------------

BASE = """
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
[claims.fast_optimization]
group = "g"
short_budget = 20
full_budget = 60
[claims.better_accuracy]
group = "g"
budget = 60
"""


def test_base_file_is_valid(tmp_path: Path) -> None:
    f = tmp_path / "tiny.toml"
    f.write_text(BASE)
    b = load_benchmark(str(f), tmp_path / "results")
    assert (len(b.teachers), len(b.students)) == (1, 8)
    assert b.claims["fast_optimization"].to_dict() == {
        "group": "g", "arch": "resnet8", "short_budget": 20, "full_budget": 60, "margin": 0.5, "target": 0.99,
        "converged_gain": 1.0}
    assert b.claims["better_accuracy"].to_dict() == {"group": "g", "arch": "resnet8", "budget": 60,
                                                     "converged_gain": 1.0}
    assert b.text == BASE and b.path == f.resolve()


def test_per_method_budgets_and_group_overrides(tmp_path: Path) -> None:
    f = tmp_path / "tiny.toml"
    text = BASE.replace("budgets = [20, 60]", 'budgets = { fsp = [20], scratch = [20, 60] }\nfsp = { pool = "avg" }')
    text = text.replace("\nbudget = 60", "\nbudget = 20")
    f.write_text(text.replace("[defaults]", '[defaults]\nfsp = { distance = "mse_mean" }'))
    b = load_benchmark(str(f), tmp_path)
    assert sorted((s.config.method, s.config.steps) for s in b.students if s.config.seed == 0) == [
        ("fsp", 20), ("scratch", 20), ("scratch", 60)]
    fsp = next(s for s in b.students if s.config.method == "fsp").config.fsp
    assert (fsp.pool, fsp.distance) == ("avg", "mse_mean")  # nested tables merge over [defaults]


def _sub(old: str, new: str):
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


def _add(section: str, line: str):
    return _sub(f"[{section}]\n", f"[{section}]\n{line}\n")


MALFORMED = [
    # (id, edit of BASE, substrings the one-line message must contain)
    ("unknown-top-key", lambda t: "teachrs = 1\n" + t, ["unknown key teachrs", "did you mean teachers"]),
    ("unknown-group-key", _sub("methods =", "methodz ="), ["unknown key students.g.methodz", "did you mean methods"]),
    ("unknown-resource-key", _add("resources", "gpus = 1"), ["unknown key resources.gpus"]),
    ("unknown-fsp-key", _add("students.g", 'fsp = { poool = "max" }'),
     ["unknown key students.g.fsp.poool", "did you mean pool"]),
    ("unknown-claim-key", _add("claims.fast_optimization", "margn = 1"), ["claims.fast_optimization.margn"]),
    ("unknown-claim", lambda t: t + '\n[claims.faster]\ngroup = "g"\n', ["claims.faster"]),
    ("ablation-unknown-reference", lambda t: t + '\n[ablation]\nreference = "h"\nbudget = 60\n',
     ["ablation.reference", "not a student group"]),
    ("ablation-no-arm", lambda t: t + '\n[ablation]\nreference = "g"\nbudget = 60\n', ["ablation.arms"]),
    ("ablation-unknown-key", lambda t: t + '\n[ablation]\nreference = "g"\nbudget = 60\nequivalenc = 1\n',
     ["unknown key ablation.equivalenc", "did you mean equivalence"]),
    ("teacher-seeds-unknown", _add("students.g", "teacher_seeds = [0, 7]"), ["students.g.teacher_seeds", "[0]"]),
    ("method-settings-not-a-method", _add("students.g", "method_settings = { kd = { init_lr = 0.1 } }"),
     ["students.g.method_settings.kd", "not one of this group's methods"]),
    ("converged-gain-negative", _add("claims.fast_optimization", "converged_gain = -1"),
     ["claims.fast_optimization.converged_gain", "> 0"]),
    ("wrong-type-group", _add("students.g", 'lr = "fast"'), ["students.g.lr", "expected a number"]),
    ("wrong-type-defaults", _sub("eval_every = 10", 'eval_every = "10"'), ["defaults.eval_every", "integer"]),
    ("wrong-type-teacher", _add("teachers.t14", "augment = 1"), ["teachers.t14.augment", "true or false"]),
    ("zero-budget", _sub("budgets = [20, 60]", "budgets = [0, 60]"), ["students.g.budgets", "integers > 0"]),
    ("negative-budget", _sub("budgets = [20, 60]", "budgets = [-20]"), ["students.g.budgets"]),
    ("float-budget", _sub("budgets = [20, 60]", "budgets = [20.5]"), ["students.g.budgets"]),
    ("zero-teacher-steps", _sub("steps = 40", "steps = 0"), ["teachers.t14.steps", "> 0"]),
    ("unknown-arch", _sub('archs = ["resnet8"]', 'archs = ["resnet9"]'), ["students.g.archs", "resnet9"]),
    ("unknown-teacher-arch", _sub('arch = "resnet14"', 'arch = "vgg16"'), ["teachers.t14.arch", "vgg16"]),
    ("unknown-method", _sub('"fsp", "scratch"]', '"fspp", "scratch"]'),
     ["students.g.methods", "fspp", "did you mean fsp"]),
    ("unknown-task", _sub('task = "fashion-mnist"', 'task = "mnist"'), ["defaults.task", "mnist"]),
    ("missing-teacher", _sub('teacher = "t14"', 'teacher = "t99"'),
     ['students.g.teacher', '"t99" is not a declared teacher (declared: t14)']),
    ("no-teacher-for-fsp", _sub('teacher = "t14"\n', ""), ["students.g.teacher", "need a teacher"]),
    ("bad-teacher-seed", _add("students.g", "teacher_seed = 3"), ["students.g.teacher_seed", "[0]"]),
    ("missing-seeds", _sub("seeds = [0, 1]\n", ""), ["students.g.seeds", "non-empty list of distinct integers >= 0"]),
    ("empty-seeds", _sub("seeds = [0]", "seeds = []"), ["teachers.t14.seeds", "non-empty list"]),
    ("negative-seed", _sub("seeds = [0, 1]", "seeds = [0, -1]"), ["students.g.seeds"]),
    ("duplicate-seeds", _sub("seeds = [0, 1]", "seeds = [1, 1]"), ["students.g.seeds", "distinct"]),
    ("grid-set-key", _add("students.g", 'arch = "resnet8"'),
     ["students.g.arch", "set by the grid", "use archs = [...]"]),
    ("grid-set-method-in-teacher", _add("teachers.t14", 'method = "fsp"'), ["teachers.t14.method"]),
    ("invalid-toml", _sub("[students.g]", "[students.g"), ["invalid TOML"]),
    ("claim-missing-group", _sub('group = "g"\nbudget', 'group = "h"\nbudget'),
     ["claims.better_accuracy.group", '"h"']),
    ("claim-missing-budget", _sub("\nbudget = 60", "\nbudget = 70"), ["claims.better_accuracy.budget", "70"]),
    ("claim-short-not-shorter", _sub("short_budget = 20", "short_budget = 60"), ["claims.fast_optimization"]),
    ("claim-bad-arch", _add("claims.better_accuracy", 'arch = "resnet20"'), ["claims.better_accuracy.arch"]),
    ("claim-group-lacks-scratch", _sub('"fsp", "scratch"]', '"fsp", "kd"]'), ["claims.fast_optimization.group"]),
    ("cross-task-same-task", lambda t: t + '\n[claims.cross_task_transfer]\ngroup = "g"\n',
     ["claims.cross_task_transfer.group", "another task"]),
    ("duplicate-runs", lambda t: t + "\n" + t[t.index("[students.g]"):t.index("[claims")].replace(
        "[students.g]", "[students.g2]"), ["students.g2", "students.g", "duplicates"]),
    ("duplicate-teachers", _sub("[students.g]", '[teachers.t2]\narch = "resnet14"\nseeds = [0]\nsteps = 40\n'
                                "[students.g]"), ["teachers.t2", "teachers.t14", "duplicates"]),
    ("zero-cpu", _sub("cpu = 1", "cpu = 0"), ["resources.cpu", "> 0"]),
    ("negative-gpu", _sub("gpu = 0.0", "gpu = -1"), ["resources.gpu", ">= 0"]),
    ("class-out-of-range", _add("students.g", "classes = [3, 12]"), ["students.g.classes", "0..9"]),
    ("budgets-table-missing-method", _sub("budgets = [20, 60]", "budgets = { fsp = [20] }"),
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

    bench = load_benchmark("default", tmp_path)
    cost = estimate_grid(bench, bench.runs, 2, 1).run_s

    by = {(r.group, r.config.method, r.config.steps, r.config.seed): r.run_id for r in bench.runs}
    t14, t14_04 = by[("t14", "scratch", 420, 0)], by[("t14_04", "scratch", 210, 0)]
    short, long_ = by[("main", "scratch", 140, 0)], by[("main", "scratch", 420, 0)]
    fsp, scratch = by[("main", "fsp", 420, 0)], by[("main", "scratch", 420, 0)]
    assert cost[t14] > cost[t14_04]  # longer
    assert cost[t14] > cost[long_]  # deeper
    # 3x the steps, less than 3x the seconds: the final evaluation of the full test set and the start are fixed
    assert 2 * cost[short] < cost[long_] < 3 * cost[short]
    assert cost[fsp] > cost[scratch]  # a stage 1 with the teacher's forward passes
