"""The committed reference results: their reports rebuild byte for byte from results/ alone, every test
recomputes from runs.parquet's columns, and every verdict carries its regime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_report import recompute_claims

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
    # the same set of tables, .tex included: a table the report no longer writes must not linger in the repo
    names = [sorted(p.name for p in (folder / "tables").iterdir()) for folder in (committed, out)]
    assert names[0] == names[1], f"{name}: the committed tables are not the ones the report writes"
    for rel in ("claims.json", "ablation.json", *(f"tables/{p.name}" for p in (out / "tables").iterdir())):
        if (out / rel).exists() or (committed / rel).exists():
            assert (out / rel).read_bytes() == (committed / rel).read_bytes(), f"{name}/{rel} differs"
    # report.md as well, with its data line: the digest of the records it was built from
    assert (out / "report.md").read_bytes() == (committed / "report.md").read_bytes(), f"{name}/report.md differs"
    md = (committed / "report.md").read_text()
    assert f"`benchmarks/{name}.toml`" in md  # a portable path, not the machine's
    assert f"Data: {len(list((ROOT / 'results' / name / 'runs').glob('*.json')))} run records, digest `" in md
    assert "/tmp/" not in md and "/work/" not in md and "/root/" not in md


@pytest.mark.skipif("default" not in COMMITTED, reason="results/default is not committed in this checkout")
def test_default_verdicts_carry_their_regime_and_recompute_from_parquet() -> None:
    df = pd.read_parquet(ROOT / "results" / "default" / "runs.parquet")
    claims = json.loads((ROOT / "reports" / "default" / "claims.json").read_text())
    md = (ROOT / "reports" / "default" / "report.md").read_text()
    assert recompute_claims(df, claims) >= 10  # every look and every accuracy test, to 1e-6
    last = df.sort_values(["run_id", "step"]).groupby("run_id").tail(1).set_index("run_id")
    for c in claims.values():
        reg = c["regime"]
        assert reg["epochs_per_run"] > 0 and reg["converged"] is not None and reg["description"] in md
        if not reg["converged"]:
            assert c["verdict"] == "inconclusive" and c["reason"].startswith("not converged")
        assert c["stopped_at_look"] is not None and c["design"]["description"] in md
        for name in ("doubling_gain", "doubling_gain_fsp"):
            gain = next(t for t in c["tests"] if t["name"] == name)
            two, one = last.loc[gain["treatment_runs"]], last.loc[gain["control_runs"]]
            assert set(two["budget"]) == {2 * reg["full_budget"]} and set(one["budget"]) == {reg["full_budget"]}
            assert list(two["seed"]) == list(one["seed"]) and gain["seeding"] == "paired"
    assert claims["better_accuracy"]["regime"]["has_headroom"] is not None
    # the records: every arm holds as many training subsets as runs, and each better-accuracy teacher trained on
    # exactly its student's images (same task, classes, images per class, size and subset draw)
    runs = ROOT / "results" / "default" / "runs"
    config = {p.stem: json.loads(p.read_text())["config"] for p in runs.glob("*.json")}
    data = ("task", "classes", "train_per_class", "image_size", "subset_seed")
    for key, c in claims.items():
        lk = c["looks"][-1]
        for arm in (lk["treatment_runs"], lk["control_runs"]):
            assert len({config[r]["subset_seed"] for r in arm}) == len(arm), key
        if key in ("better_accuracy", "network_minimization"):
            for r in lk["treatment_runs"]:
                teacher = last.loc[r, "teacher_run_id"]
                assert [config[teacher][k] for k in data] == [config[r][k] for k in data], (key, r)


@pytest.mark.skipif("default" not in COMMITTED, reason="results/default is not committed in this checkout")
def test_report_to_an_unwritable_folder_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = _report("default", blocker / "report")  # a folder inside a file cannot be made
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0] and "Traceback" not in res.stderr
