"""The report from a finished smoke results folder: files, recomputable tests, byte stability, the HTML
in a real headless browser, and the CLI on a folder without results."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fspbench.report import build_report

CLAIM_KEYS = ("fast_optimization", "better_accuracy", "cross_task_transfer")
VERDICTS = {"supported", "contradicted", "inconclusive", "not_run"}


@pytest.fixture(scope="module")
def report(smoke_results: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report") / "smoke"
    return out, build_report(smoke_results, out)


def test_report_files(report: tuple[Path, dict]) -> None:
    out, summary = report
    md = (out / "report.md").read_text()
    figures = sorted((out / "figures").iterdir())
    stems = {p.stem for p in figures}
    assert {"curves_fast_optimization", "final_accuracy", "steps_to_target"} <= stems
    for stem in stems:
        for ext in ("png", "svg"):
            f = out / "figures" / f"{stem}.{ext}"
            assert f.is_file() and f.stat().st_size > 0, f
            assert f"figures/{stem}.{ext}" in md, f"{f.name} not referenced in report.md"
    csvs = sorted((out / "tables").glob("*.csv"))
    assert {p.stem for p in csvs} >= {"verdicts", "tests", "groups", "paper", "fsp_settings", "environment"}
    for csv in csvs:
        assert csv.stat().st_size > 0 and csv.with_suffix(".tex").stat().st_size > 0
    assert md.index("## Verdicts") < md.index("## Claim 1")
    paper = pd.read_csv(out / "tables" / "paper.csv", dtype=str)
    unverified = paper[paper["source"].str.contains("unverified")]
    assert len(unverified) and (unverified["paper"] == "not available").all()
    assert set(summary["verdicts"]) == set(CLAIM_KEYS)

    claims = json.loads((out / "claims.json").read_text())
    assert set(claims) == set(CLAIM_KEYS)
    for key in CLAIM_KEYS:
        c = claims[key]
        assert c["verdict"] in VERDICTS
        assert f"{key}: {c['verdict']}" in md and c["rule"] in md  # each verdict with its rule
        for t in c["tests"]:
            for field in ("metric", "estimate", "ci", "n", "treatment_runs", "control_runs"):
                assert field in t, (key, field)
            assert len(t["ci"]) == 2


def test_accuracy_differences_recompute_from_parquet(report: tuple[Path, dict], smoke_results: Path) -> None:
    out, _ = report
    df = pd.read_parquet(smoke_results / "runs.parquet")
    final = df.sort_values(["run_id", "step"]).groupby("run_id").tail(1).set_index("run_id")["test_acc"].fillna(0.0)
    claims = json.loads((out / "claims.json").read_text())
    checked = 0
    for c in claims.values():
        for t in c["tests"]:
            if t["metric"] != "final_acc_diff":
                continue
            diff = 100 * (final[t["treatment_runs"]].mean() - final[t["control_runs"]].mean())
            assert t["estimate"] == pytest.approx(diff, abs=1e-6), t["name"]
            assert t["n"] == len(t["treatment_runs"]) + len(t["control_runs"])
            checked += 1
    assert checked >= 3


def test_precision_table_sets_bf16_beside_fp32(report: tuple[Path, dict], smoke_results: Path) -> None:
    """The smoke grid's bf16 group against the fp32 runs of the same settings, recomputed from the run records."""
    out, _ = report
    table = pd.read_csv(out / "tables" / "precision.csv")
    assert sorted(table["method"]) == ["fsp", "scratch"]
    assert (table["n_fp32"] == 2).all() and (table["n_bf16"] == 2).all()
    assert "## Precision: bf16 autocast against fp32" in (out / "report.md").read_text()
    records = [json.loads(p.read_text()) for p in (smoke_results / "runs").glob("*.json")]
    for row in table.itertuples():
        acc = {prec: [100 * r["final"]["test_acc"] for r in records
                      if r["method"] == row.method and r["config"]["steps"] == 40 and r["role"] == "student"
                      and r["config"]["precision"] == prec and not r["config"]["classes"]]
               for prec in ("fp32", "bf16")}
        assert len(acc["fp32"]) == len(acc["bf16"]) == 2
        assert row.diff == pytest.approx(sum(acc["bf16"]) / 2 - sum(acc["fp32"]) / 2, abs=1e-3)
        assert row.ci_low <= row.diff <= row.ci_high


def test_building_twice_is_byte_identical(report: tuple[Path, dict], smoke_results: Path, tmp_path: Path) -> None:
    out, _ = report
    again = tmp_path / "again"
    build_report(smoke_results, again)
    assert (again / "claims.json").read_bytes() == (out / "claims.json").read_bytes()
    names = sorted(p.name for p in (out / "tables").glob("*.csv"))
    assert names == sorted(p.name for p in (again / "tables").glob("*.csv"))
    for name in names:
        assert (again / "tables" / name).read_bytes() == (out / "tables" / name).read_bytes(), name


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


def test_cli_report_prints_verdicts(smoke_results: Path, tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "fspbench.cli", "report", str(smoke_results),
                          "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines[:3]] == list(CLAIM_KEYS)
    assert all(ln.split(": ")[1] in VERDICTS for ln in lines[:3])
    assert lines[3].startswith("report: ") and (tmp_path / "r" / "report.md").is_file()
