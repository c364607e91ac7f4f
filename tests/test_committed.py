"""The committed reference results: their reports rebuild byte for byte from results/ alone, every test
recomputes from runs.parquet's columns, and every verdict carries its regime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

pytestmark = pytest.mark.slow  # reports built from a real grid (the smoke grid on Ray, or the committed results)

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = [name for name in ("default", "ablation") if (ROOT / "results" / name / "runs.parquet").is_file()]


def _report(name: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fspbench.cli", "report", str(ROOT / "results" / name),
                           "--out", str(out)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module", params=COMMITTED)
def rebuilt(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("rebuilt") / request.param
    res = _report(request.param, out)
    assert res.returncode == 0, res.stderr[-3000:]
    return request.param, out


def test_committed_report_rebuilds_identically(rebuilt: tuple[str, Path]) -> None:
    name, out = rebuilt
    committed = ROOT / "reports" / name
    for rel in ("claims.json", "ablation.json", *(f"tables/{p.name}" for p in (out / "tables").glob("*.csv"))):
        if (out / rel).exists() or (committed / rel).exists():
            assert (out / rel).read_bytes() == (committed / rel).read_bytes(), f"{name}/{rel} differs"
    md = (committed / "report.md").read_text()
    assert f"`benchmarks/{name}.toml`" in md  # a portable path, not the machine's
    assert "/tmp/" not in md and "/work/" not in md and "/root/" not in md


@pytest.mark.skipif("default" not in COMMITTED, reason="results/default is not committed in this checkout")
def test_default_verdicts_carry_their_regime_and_recompute_from_parquet() -> None:
    df = pd.read_parquet(ROOT / "results" / "default" / "runs.parquet")
    last = df.sort_values(["run_id", "step"]).groupby("run_id").tail(1).set_index("run_id")
    final = 100 * last["test_acc"].fillna(0.0)
    claims = json.loads((ROOT / "reports" / "default" / "claims.json").read_text())
    md = (ROOT / "reports" / "default" / "report.md").read_text()
    for key, c in claims.items():
        reg = c["regime"]
        assert reg["epochs_per_run"] > 0 and reg["converged"] is not None and reg["description"] in md
        if not reg["converged"]:
            assert c["verdict"] == "inconclusive" and c["reason"].startswith("not converged")
        for t in c["tests"]:
            if t["metric"] not in ("final_acc_diff", "doubling_gain"):
                continue
            a, b = final[t["treatment_runs"]].to_numpy(), final[t["control_runs"]].to_numpy()
            ci = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
            assert t["estimate"] == pytest.approx(a.mean() - b.mean(), abs=1e-6), (key, t["name"])
            assert t["ci"] == pytest.approx([ci.low, ci.high], abs=1e-6), (key, t["name"])
        gain = next(t for t in c["tests"] if t["role"] == "regime")
        two, one = last.loc[gain["treatment_runs"]], last.loc[gain["control_runs"]]
        assert set(two["budget"]) == {2 * reg["full_budget"]} and set(one["budget"]) == {reg["full_budget"]}
        assert set(two["method"]) == set(one["method"]) == {"scratch"} and len(two) >= 3
    # no arm is censored by the design: FSP at the full budget and scratch at the full budget both reach the target
    for t in claims["fast_optimization"]["tests"]:
        if t["role"] == "to_target":
            rows = last.loc[t["treatment_runs"]]
            assert set(rows["budget"]) == {claims["fast_optimization"]["regime"]["full_budget"]}
            assert t["extra"]["control_reached"] == len(t["control_runs"])
            if t["estimate"] is not None:
                steps = {}
                for rid in t["treatment_runs"] + t["control_runs"]:
                    curve = df[df["run_id"] == rid].sort_values("step")
                    hit = curve[curve["curve_acc"] >= t["extra"]["target_acc"]].iloc[0]
                    col = {"main_steps_to_target_ratio": "stage_step", "steps_to_target_ratio": "step",
                           "time_to_target_ratio": "wall_time_s"}[t["metric"]]
                    steps[rid] = float(hit[col])
                geo = np.exp(np.mean(np.log([steps[r] for r in t["treatment_runs"]]))
                             - np.mean(np.log([steps[r] for r in t["control_runs"]])))
                assert t["estimate"] == pytest.approx(geo, abs=1e-6)


@pytest.mark.skipif("default" not in COMMITTED, reason="results/default is not committed in this checkout")
def test_report_to_an_unwritable_folder_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = _report("default", blocker / "report")  # a folder inside a file cannot be made
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0] and "Traceback" not in res.stderr
