"""The report's data integrity end to end: runs.parquet is derived from the run records, so `fspbench report`
checks every row against them and refuses a mismatch (or rebuilds the table with --rebuild), refuses a record
that does not match its checksum, and names the digest of the records it was built from.

A copy of a committed results folder (its records, runs.parquet and grid.json) is altered in each test and
reported with the real command."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from helpers import run_cli

from fspbench.grid import run_labels
from fspbench.report.build import load_results
from fspbench.report.integrity import first_mismatch
from fspbench.results import RunRecord, runs_table

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = [name for name in ("default", "ablation") if (ROOT / "results" / name / "runs.parquet").is_file()]
FAST = "ablation"  # the committed grid whose report builds quickest (about 4 CPU seconds against 15)
DIGEST = re.compile(r"^Data: (\d+) run records, digest `([0-9a-f]{12})`", re.MULTILINE)

pytestmark = pytest.mark.skipif(FAST not in COMMITTED, reason="results/ablation is not committed in this checkout")


def _copy(name: str, tmp_path: Path) -> Path:
    """What the report reads of a committed results folder (not its checkpoints or Ray's files), in tmp_path."""
    src, dst = ROOT / "results" / name, tmp_path / name
    shutil.copytree(src / "runs", dst / "runs")
    for file in ("runs.parquet", "grid.json"):
        shutil.copy2(src / file, dst / file)
    return dst


def _one_line(res) -> str:
    """The refusal: exit 2, one line on stderr and no traceback."""
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    return lines[0]


def _digest(md: Path) -> tuple[int, str]:
    """(records, digest) from a report.md's data line."""
    m = DIGEST.search(md.read_text())
    assert m, f"{md}: no data line"
    return int(m.group(1)), m.group(2)


def _fsp_acc_raised(results: Path) -> pd.DataFrame:
    """runs.parquet with 0.05 added to the FSP rows' test_acc, written back; returns the original table."""
    df = pd.read_parquet(results / "runs.parquet")
    edited = df.copy()
    edited.loc[edited["method"] == "fsp", "test_acc"] += 0.05
    edited.to_parquet(results / "runs.parquet", index=False)
    return df


@pytest.mark.parametrize("name", COMMITTED)
def test_edited_parquet_is_refused_naming_the_first_mismatch(name: str, tmp_path: Path) -> None:
    results = _copy(name, tmp_path)
    df = _fsp_acc_raised(results)
    res = run_cli("report", str(results), "--out", str(tmp_path / "report"))
    line = _one_line(res)
    # the first mismatch in run and step order: the first FSP run's first row with an accuracy
    first = df[(df["method"] == "fsp") & df["test_acc"].notna()].sort_values(["run_id", "step"]).iloc[0]
    assert "runs.parquet: does not match the run records" in line
    assert f"run {first.run_id}, step {first.step}, column test_acc: " in line
    acc = float(first.test_acc)
    assert f"{acc + 0.05!r} in runs.parquet, {acc!r} in its record runs/{first.run_id}.json" in line
    assert f"fspbench report {results} --rebuild" in line  # how to fix it
    assert not (tmp_path / "report").exists()  # nothing written, so no report changed silently


@pytest.mark.slow  # a full report of the committed ablation grid
def test_rebuild_restores_the_table_and_the_committed_verdicts(tmp_path: Path) -> None:
    results = _copy(FAST, tmp_path)
    _fsp_acc_raised(results)
    res = run_cli("report", str(results), "--out", str(tmp_path / "report"), "--rebuild")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "runs.parquet: rebuilt from the run records (it differed: run " in res.stdout
    committed = ROOT / "results" / FAST / "runs.parquet"
    assert (results / "runs.parquet").read_bytes() == committed.read_bytes()  # as `fspbench run` wrote it
    # the verdicts and every number of claims.json are the committed report's
    assert (tmp_path / "report" / "claims.json").read_bytes() == (ROOT / "reports" / FAST / "claims.json").read_bytes()


def test_hand_edited_record_is_refused_naming_the_file(tmp_path: Path) -> None:
    results = _copy(FAST, tmp_path)
    path = sorted((results / "runs").glob("student-*-fsp-*.json"))[0]
    raw = json.loads(path.read_text())
    raw["final"]["test_acc"] += 0.05  # by hand: its sha256 is left as it was
    path.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    for extra in ((), ("--rebuild",)):  # rebuilding the table never launders an altered record
        res = run_cli("report", str(results), "--out", str(tmp_path / "report"), *extra)
        line = _one_line(res)
        assert line.startswith(f"fspbench: error: {path}: does not match its sha256"), line
        assert f"fspbench run BENCHMARK --results {results}" in line and "restore the file" in line
        assert not (tmp_path / "report").exists()
    assert (results / "runs.parquet").read_bytes() == (ROOT / "results" / FAST / "runs.parquet").read_bytes()


@pytest.mark.slow  # two full reports of the committed ablation grid
def test_digest_is_the_committed_reports_and_changes_with_a_record(tmp_path: Path) -> None:
    results = _copy(FAST, tmp_path)
    committed = _digest(ROOT / "reports" / FAST / "report.md")
    res = run_cli("report", str(results), "--out", str(tmp_path / "same"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert _digest(tmp_path / "same" / "report.md") == committed
    assert f"data: {committed[0]} run records, digest {committed[1]}" in res.stdout
    # the digest is the sha256 over "<run_id> <sha256>" lines of the records in run-id order, short form
    records = sorted((json.loads(p.read_text()) for p in (results / "runs").glob("*.json")), key=lambda r: r["run_id"])
    lines = "".join(f"{r['run_id']} {r['sha256']}\n" for r in records)
    assert committed == (len(records), hashlib.sha256(lines.encode()).hexdigest()[:12])

    # a legitimate change: a record rewritten through RunRecord (its checksum holds), its last accuracy changed
    path = sorted((results / "runs").glob("student-*-fsp-*.json"))[0]
    rec = RunRecord.load(path)
    assert rec.final is not None and rec.curve[-1].test_acc is not None
    acc = rec.curve[-1].test_acc - 0.01
    replace(rec, curve=(*rec.curve[:-1], replace(rec.curve[-1], test_acc=acc)),
            final=replace(rec.final, test_acc=acc)).write(path)
    stale = _one_line(run_cli("report", str(results), "--out", str(tmp_path / "changed")))
    assert f"run {rec.run_id}, step {rec.curve[-1].step}, column test_acc: " in stale  # the table now lags the record
    res = run_cli("report", str(results), "--out", str(tmp_path / "changed"), "--rebuild")
    assert res.returncode == 0, res.stderr[-3000:]
    n, digest = _digest(tmp_path / "changed" / "report.md")
    assert n == committed[0] and digest != committed[1]
    assert pd.read_parquet(results / "runs.parquet").set_index(["run_id", "step"]).loc[
        (rec.run_id, rec.curve[-1].step), "test_acc"] == acc


def _tables(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A committed runs.parquet and the table its records give."""
    results = ROOT / "results" / name
    df, _, bench = load_results(results)
    records = [RunRecord.load(p) for r in bench.runs if (p := results / "runs" / f"{r.run_id}.json").is_file()]
    return df, runs_table(records, run_labels(bench))


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda df: df, None),  # the committed table is what the records give, to the bit
    (lambda df: df.iloc[::-1], None),  # row order is not content
    (lambda df: df[df["run_id"] != df["run_id"].iloc[-1]], "0 rows in runs.parquet, "),
    (lambda df: df.drop(index=df.index[-1]), "rows in runs.parquet, "),
    (lambda df: pd.concat([df, df.assign(run_id="student-made-up")]), "no run record of the grid"),
    (lambda df: df.assign(status=df["status"].where(df.index != 7, "failed")), "column status: 'failed' in "),
    (lambda df: df.assign(group=df["group"].where(df.index != 3, "other")), "column group: 'other' in "),
    (lambda df: df.assign(test_loss=df["test_loss"].where(df.index != 5, None)), "column test_loss: nan in "),
])
def test_first_mismatch_names_runs_and_cells(edit, expected: str | None) -> None:
    df, records_table = _tables(FAST)
    found = first_mismatch(edit(df).reset_index(drop=True), records_table)
    assert (found is None) if expected is None else (found is not None and expected in found), found
