"""The report from a finished smoke results folder: files, recomputable tests, byte stability, the HTML
in a real headless browser, and the CLI on a folder without results."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from fspbench.report import build_report

pytestmark = pytest.mark.slow  # reports built from a real grid (the smoke grid on Ray, or the committed results)

CLAIM_KEYS = ("fast_optimization", "better_accuracy", "network_minimization", "cross_task_transfer")
VERDICTS = {"supported", "contradicted", "inconclusive", "not_run"}


@pytest.fixture(scope="module")
def report(smoke_results: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report") / "smoke"
    return out, build_report(smoke_results, out)


@pytest.mark.slow  # the smoke grid on Ray
def test_smoke_grid_records_its_hardware_and_an_estimate_within_25_percent(smoke_results: Path,
                                                                          report: tuple[Path, dict]) -> None:
    grid = json.loads((smoke_results / "grid.json").read_text())
    est = grid["estimate"]
    assert est["runs"] == grid["trained_runs"] and est["slots"] == grid["concurrent_slots"]
    print(f"smoke: estimated {est['wall_time_s']} s, measured {grid['wall_time_s']} s on "
          f"{grid['hardware']['cpu_capability']}")
    assert 0.75 <= grid["wall_time_s"] / est["wall_time_s"] <= 1.25
    texts = [p.read_text() for p in (smoke_results / "runs").glob("*.json")]
    records = [json.loads(t) for t in texts]
    assert all(r["env"]["hardware"] == grid["hardware"] for r in records)
    # portable results: no record names the folder by its absolute path (teachers are relative to runs/)
    assert not [t for t in texts if str(smoke_results.resolve()) in t]
    assert {r["teacher"] for r in records if r["teacher"]} == {f"{r['teacher_run_id']}.json" for r in records
                                                               if r["teacher_run_id"]}
    env = pd.read_csv(report[0] / "tables" / "environment.csv").set_index("item")["value"]
    assert env["torch CPU capability"] == grid["hardware"]["cpu_capability"]
    assert env["last run: estimated / measured wall time (s)"].startswith(f"{est['wall_time_s']:.0f} / ")


def test_report_files(report: tuple[Path, dict]) -> None:
    out, summary = report
    md = (out / "report.md").read_text()
    figures = sorted((out / "figures").iterdir())
    stems = {p.stem for p in figures}
    assert {"forest", "looks", "teacher_gains", "budget_sweep", "curves_fast_optimization", "final_accuracy",
            "steps_to_target"} <= stems
    for stem in stems:
        for ext in ("png", "svg"):
            f = out / "figures" / f"{stem}.{ext}"
            assert f.is_file() and f.stat().st_size > 0, f
            assert f"figures/{stem}.{ext}" in md, f"{f.name} not referenced in report.md"
    csvs = sorted((out / "tables").glob("*.csv"))
    assert {p.stem for p in csvs} >= {"verdicts", "tests", "looks", "teacher_gains", "stage1", "groups",
                                      "fsp_settings", "environment", *(f"effects_{k}" for k in CLAIM_KEYS)}
    for csv in csvs:
        assert csv.stat().st_size > 0 and csv.with_suffix(".tex").stat().st_size > 0
    assert md.index("## Verdicts") < md.index("figures/forest.png") < md.index("## Claim 1")
    effects = pd.read_csv(out / "tables" / "effects_better_accuracy.csv", dtype=str)
    assert (effects.loc[effects["source"].str.contains("unverified"), "effect"] == "not available").all()
    assert effects["source"].str.startswith("this run").sum() == 1
    assert set(summary["verdicts"]) == set(CLAIM_KEYS)

    claims = json.loads((out / "claims.json").read_text())
    assert set(claims) == set(CLAIM_KEYS)
    seedings = {"fast_optimization": "paired", "better_accuracy": "paired", "network_minimization": "paired",
                "cross_task_transfer": "independent"}
    for key in CLAIM_KEYS:
        c = claims[key]
        assert c["verdict"] in VERDICTS and c["design"]["seeding"] == seedings[key]
        assert c["design"]["interval"].startswith("paired t" if seedings[key] == "paired" else "Welch t")
        assert f"{key}: {c['verdict']}" in md and c["rule"] in md  # each verdict with its rule
        assert c["design"]["description"] in md  # ... its design, and where it stopped
        assert f"look {c['stopped_at_look']} of 2, {c['n_per_arm']} seeds per arm, {seedings[key]}" in md
        reg = c["regime"]  # ... and its regime: epochs per run, both doubling gains, the headroom
        assert reg["epochs_per_run"] > 0 and len(reg["doubling_gain_ci"]) == 2 and reg["converged"] in (True, False)
        assert len(reg["doubling_gain_fsp_ci"]) == 2 and reg["description"] in md
        if key in ("better_accuracy", "network_minimization"):  # reported for the first, a gate for the second
            assert reg["has_headroom"] in (True, False) and len(reg["headroom_ci"]) == 2
            assert reg["headroom_gates"] is (key == "network_minimization")
        if not reg["converged"]:
            assert c["verdict"] == "inconclusive" and "not converged" in c["reason"]
        # one family of four, Bonferroni, and the sensitivity to the plain t
        assert c["design"]["family"] == list(CLAIM_KEYS) and c["design"]["correction"] == "bonferroni"
        assert c["design"]["alpha_per_side"] == pytest.approx(0.025 / 4, abs=1e-6)
        assert c["sensitivity"]["plain_t"]["verdict"] in (*VERDICTS, "open")
        roles = {t["role"] for t in c["tests"]}
        assert {"decides", "regime"} <= roles and "teacher" not in roles
        for t in c["tests"]:
            for field in ("metric", "estimate", "ci", "n", "treatment_runs", "control_runs", "seeding"):
                assert field in t, (key, field)
            assert len(t["ci"]) == 2
        for look in c["looks"]:
            for field in ("n_per_arm", "estimate", "repeated_ci", "critical_value", "error_spent", "alpha_spent"):
                assert field in look, (key, field)
        assert c["power"]["seeds_per_arm"] is None or c["power"]["seeds_per_arm"] >= 2
        # one teacher per FSP student of the deciding test
        main = c["tests"][0]
        assert main["role"] == "decides"
        assert len({g["teacher_run_id"] for g in c["teacher_gains"]}) == len(main["treatment_runs"])
    # the smoke reaches its second look: a claim open after look 1 gets 4 seeds per arm
    assert max(c["stopped_at_look"] or 0 for c in claims.values()) == 2
    assert any(c["looks"][-1]["n_per_arm"] == 4 for c in claims.values())
    assert set(claims["fast_optimization"]["verdict_by_margin"]) == {"0.25", "0.5", "1"}
    to_target = [t for t in claims["fast_optimization"]["tests"] if t["role"] == "to_target"]
    assert len(to_target) == 3 and all(t["treatment_runs"] != t["control_runs"] for t in to_target)


def _interval(a: np.ndarray, b: np.ndarray, paired: bool, level: float = 0.95) -> tuple[float, float, float, float]:
    """(estimate, se, df, low, high) by scipy alone: the paired t on a - b, or Welch's t."""
    res = sps.ttest_rel(a, b) if paired else sps.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(level)
    est = float(np.mean(a - b)) if paired else float(a.mean() - b.mean())
    se = (ci.high - ci.low) / 2 / sps.t.ppf(0.5 + level / 2, res.df)
    return est, se, float(res.df), ci.low, ci.high


def _calibrated(a: np.ndarray, b: np.ndarray, paired: bool, crit: float, p: float, j: int,
                cal: dict | None) -> tuple[float, float]:
    """The look's (low-side, high-side) critical values as claims.json's calibration states them, with numpy
    alone: the studentised bootstrap quantiles, never below the t critical value."""
    n = len(a)
    if cal is None or n < cal["min_n"] or p * cal["resamples"] < cal["min_tail"]:
        return crit, crit
    rng = np.random.default_rng(cal["seed"] + j)
    if paired:
        d = a - b
        ds = d[rng.integers(0, n, size=(cal["resamples"], n))]
        t_star = (ds.mean(axis=1) - d.mean()) / (ds.std(axis=1, ddof=1) / np.sqrt(n))
    else:
        xa = a[rng.integers(0, n, size=(cal["resamples"], n))]
        xb = b[rng.integers(0, len(b), size=(cal["resamples"], len(b)))]
        se = np.sqrt(xa.var(axis=1, ddof=1) / n + xb.var(axis=1, ddof=1) / len(b))
        t_star = (xa.mean(axis=1) - xb.mean(axis=1) - (a.mean() - b.mean())) / se
    t_star = t_star[np.isfinite(t_star)]
    return max(crit, float(np.quantile(t_star, 1 - p))), max(crit, float(-np.quantile(t_star, p)))


def recompute_claims(df: pd.DataFrame, claims: dict) -> int:
    """Every look and every accuracy test of claims.json from runs.parquet's columns, with scipy only (not
    fspbench): estimates, SEs and df to 1e-6; each repeated interval from its t critical value, the critical
    value from its z boundary, and the z boundaries against the multivariate normal integral. Returns the
    number of intervals checked."""
    last = df.sort_values(["run_id", "step"]).groupby("run_id").tail(1).set_index("run_id")
    final = 100 * last["test_acc"].fillna(0.0)
    checked = 0
    for c in claims.values():
        if c["design"] is None:
            continue
        paired = c["design"]["seeding"] == "paired"
        frac = np.array([lk["n_per_arm"] / c["design"]["max_seeds"] for lk in c["looks"]])
        if c["design"]["correction"] == "bonferroni":  # the family's level split evenly over its claims
            assert c["design"]["alpha_per_side"] == pytest.approx(
                c["design"]["family_alpha_per_side"] / len(c["design"]["family"]), abs=1e-6)
        spent = 2 - 2 * sps.norm.cdf(sps.norm.isf(c["design"]["alpha_per_side"] / 2) / np.sqrt(frac))
        for j, lk in enumerate(c["looks"]):
            a, b = final[lk["treatment_runs"]].to_numpy(), final[lk["control_runs"]].to_numpy()
            assert list(last.loc[lk["treatment_runs"], "seed_index"]) == list(range(lk["n_per_arm"]))
            est, se, dof, _, _ = _interval(a, b, paired)
            assert (lk["estimate"], lk["se"], lk["df"]) == pytest.approx((est, se, dof), abs=1e-6)
            # the critical value from the z boundary (both design constants, stored to 6 decimals: at 1 df a
            # rounding of z by 5e-7 moves c by 1e-6 of itself), the interval from the critical value
            crit = lk["critical_value"]
            assert crit == pytest.approx(sps.t.isf(sps.norm.sf(lk["z_boundary"]), dof), rel=1e-5)
            low_c, high_c = _calibrated(a, b, paired, crit, sps.norm.sf(lk["z_boundary"]), j,
                                        c["design"].get("calibration"))
            assert (lk["critical_value_low"], lk["critical_value_high"]) == pytest.approx((low_c, high_c), rel=1e-5)
            # never narrower than the t interval at the claim's (corrected) level
            assert min(lk["critical_value_low"], lk["critical_value_high"]) >= crit - 1e-6
            assert lk["repeated_ci"] == pytest.approx([est - low_c * se, est + high_c * se], rel=1e-6, abs=1e-6)
            assert lk["alpha_spent"] == pytest.approx(spent[j], abs=1e-6)
            t = frac[: j + 1]
            cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
            z = [look["z_boundary"] for look in c["looks"][: j + 1]]
            below = sps.multivariate_normal.cdf(z, np.zeros(j + 1), cov) if j else sps.norm.cdf(z[0])
            assert 1 - below == pytest.approx(spent[j], abs=1e-4)
            checked += 1
        for t in c["tests"]:
            if t["metric"] not in ("final_acc_diff", "doubling_gain") or t["role"] == "decides":
                continue
            a, b = final[t["treatment_runs"]].to_numpy(), final[t["control_runs"]].to_numpy()
            # the regime checks' intervals are 90% (two one-sided tests at 0.05), the others 95%
            words = t["extra"].get("interval") or "95% interval"
            level = float(words.split("%")[0]) / 100 if words[0].isdigit() else 0.95
            est, _, _, low, high = _interval(a, b, t["seeding"] == "paired", level)
            assert t["estimate"] == pytest.approx(est, abs=1e-6), t["name"]
            assert t["ci"] == pytest.approx([low, high], abs=1e-6), t["name"]
            assert t["n"] == len(a) + len(b)
            checked += 1
        main = c["tests"][0]
        assert main["ci"] == c["looks"][-1]["repeated_ci"] and main["treatment_runs"] == c["looks"][-1][
            "treatment_runs"]
        # a deciding test compares arms that share seeds only when the claim declares the paired design
        treat, ctrl = last.loc[main["treatment_runs"]], last.loc[main["control_runs"]]
        shared = set(treat["seed"]) & set(ctrl["seed"])
        assert (shared == set(treat["seed"])) if paired else not shared
        # ... and it has as many distinct teachers as runs
        assert treat["teacher_run_id"].nunique() == len(treat)
        # one group, or the control arm of the group the claim names (control_group: the same images and seeds)
        assert treat["group"].nunique() == 1 and ctrl["group"].nunique() == 1
        assert set(ctrl["group"]) == {c["design"].get("control_group") or treat["group"].iloc[0]}
        assert set(treat["method"]) == {"fsp"} and set(ctrl["method"]) == {"scratch"}
        assert f"fsp {treat['init_steps'].iloc[0]}+{treat['budget'].iloc[0]} steps" in main["budget"]
    return checked


@pytest.mark.slow  # the smoke grid on Ray
def test_every_look_and_test_recomputes_from_parquet_alone(report: tuple[Path, dict], smoke_results: Path) -> None:
    out, _ = report
    df = pd.read_parquet(smoke_results / "runs.parquet")
    claims = json.loads((out / "claims.json").read_text())
    assert recompute_claims(df, claims) >= 15
    fast = claims["fast_optimization"]
    ratio = next(t for t in fast["tests"] if t["metric"] == "main_steps_to_target_ratio")
    target = ratio["extra"]["target_acc"]
    steps = {}
    for rid in ratio["treatment_runs"] + ratio["control_runs"]:
        curve = df[(df["run_id"] == rid) & (df["stage"] == "main")].sort_values("step")
        acc = curve["curve_acc"].to_numpy()
        k = int(np.argmax(acc >= target))
        if acc[k] < target:
            steps[rid] = float("nan")
        elif k == 0:
            steps[rid] = float(curve["stage_step"].iloc[0])
        else:  # linear interpolation between the two points around the crossing
            x0, x1 = curve["stage_step"].iloc[k - 1], curve["stage_step"].iloc[k]
            steps[rid] = float(x0 + (target - acc[k - 1]) / (acc[k] - acc[k - 1]) * (x1 - x0))
    if ratio["estimate"] is not None:
        geo = np.exp(np.mean(np.log([steps[r] for r in ratio["treatment_runs"]]))
                     - np.mean(np.log([steps[r] for r in ratio["control_runs"]])))
        assert ratio["estimate"] == pytest.approx(geo, abs=1e-6)


@pytest.mark.slow  # the smoke grid on Ray
def test_precision_table_sets_bf16_beside_fp32(report: tuple[Path, dict], smoke_results: Path) -> None:
    """The smoke grid's bf16 group against the fp32 runs of the same settings, recomputed from the run records."""
    out, _ = report
    grid = json.loads((smoke_results / "grid.json").read_text())
    if grid["skipped"]["groups"]:
        assert not (out / "tables" / "precision.csv").exists()
        not_run = pd.read_csv(out / "tables" / "precision_not_run.csv")
        assert list(not_run["group"]) == ["bf16"] and "no native bf16" in not_run["status"].iloc[0]
        pytest.skip(f"this machine has no native bf16 ({grid['hardware']['bf16_source']}): the bf16 group is skipped")
    table = pd.read_csv(out / "tables" / "precision.csv")
    assert sorted(table["method"]) == ["fsp", "scratch"]
    assert (table["n_fp32"] == 2).all() and (table["n_bf16"] == 2).all()  # the twins share seeds: paired
    assert "## Precision: bf16 autocast against fp32" in (out / "report.md").read_text()
    records = [json.loads(p.read_text()) for p in (smoke_results / "runs").glob("*.json")]
    for row in table.itertuples():
        acc = {prec: [100 * r["final"]["test_acc"] for r in records
                      if r["method"] == row.method and r["config"]["steps"] == 18 and r["role"] == "student"
                      and r["config"]["precision"] == prec and not r["config"]["classes"]
                      and r["config"]["fsp"]["style"] == "paper"  # not the ablation arm's students
                      and r["seed"] in (0, 1)]  # the bf16 twins' seeds (fast optimization may add more)
               for prec in ("fp32", "bf16")}
        assert len(acc["fp32"]) == len(acc["bf16"]) == 2
        assert row.diff == pytest.approx(sum(acc["bf16"]) / 2 - sum(acc["fp32"]) / 2, abs=1e-3)
        assert row.ci_low <= row.diff <= row.ci_high


@pytest.mark.slow  # the smoke grid on Ray
def test_building_twice_is_byte_identical(report: tuple[Path, dict], smoke_results: Path, tmp_path: Path) -> None:
    out, _ = report
    again = tmp_path / "again"
    build_report(smoke_results, again)
    assert (again / "claims.json").read_bytes() == (out / "claims.json").read_bytes()
    names = sorted(p.name for p in (out / "tables").glob("*.csv"))
    assert names == sorted(p.name for p in (again / "tables").glob("*.csv"))
    for name in names:
        assert (again / "tables" / name).read_bytes() == (out / "tables" / name).read_bytes(), name
    assert (again / "report.md").read_bytes() == (out / "report.md").read_bytes()  # its data digest included


@pytest.mark.slow  # the smoke grid on Ray
def test_html_images_load_in_headless_chromium(report: tuple[Path, dict], tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    out, _ = report
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained
    res = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", "--virtual-time-budget=5000", (out / "report.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    m = re.search(r"images=(\d+) loaded=(\d+)", res.stdout)
    assert m, f"no image count in the DOM dump; stderr: {res.stderr[-2000:]}"
    n_images, loaded = int(m.group(1)), int(m.group(2))
    assert n_images == page.count("<img ") and n_images >= 3
    assert loaded == n_images


def test_cli_report_on_empty_dir_exits_2(tmp_path: Path) -> None:
    empty, out = tmp_path / "empty", tmp_path / "out"
    empty.mkdir()
    res = subprocess.run([sys.executable, "-m", "fspbench.cli", "report", str(empty), "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "runs.parquet" in lines[0] and "fspbench run" in lines[0], res.stderr
    assert not out.exists()


@pytest.mark.slow  # the smoke grid on Ray
def test_cli_report_prints_verdicts(smoke_results: Path, tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "fspbench.cli", "report", str(smoke_results),
                          "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    k = len(CLAIM_KEYS)
    assert [ln.split(":")[0] for ln in lines[:k]] == list(CLAIM_KEYS)
    assert all(ln.split(": ")[1].split(" ")[0] in VERDICTS for ln in lines[:k])
    assert all("; regime: " in ln and "epochs per run" in ln for ln in lines[:k])  # no verdict without its regime
    assert lines[k].startswith("report: ") and (tmp_path / "r" / "report.md").is_file()
    # then the records it was built from and their digest, as report.md names them
    data = re.fullmatch(r"data: (\d+) run records, digest ([0-9a-f]{12})", lines[k + 1])
    assert data and int(data[1]) == len(list((smoke_results / "runs").glob("*.json"))), lines[k + 1:]
    assert f"Data: {data[1]} run records, digest `{data[2]}`" in (tmp_path / "r" / "report.md").read_text()
