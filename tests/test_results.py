"""The results store's typed contracts: run records and grid.json read and write through RunRecord and
GridLedger, committed results of every version load and write back byte for byte, and a malformed file
is one clear line naming the file and the key."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from fspbench.config import RunConfig
from fspbench.errors import BadInput
from fspbench.grid import GridRun
from fspbench.io import write_record
from fspbench.report.build import load_results
from fspbench.results import GridLedger, Paths, RunRecord, failed_record, read_ledger, read_run_record

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = sorted(p.parent.name for p in (ROOT / "results").glob("*/grid.json"))


def _record(name: str = "default") -> tuple[Path, dict]:
    path = sorted((ROOT / "results" / name / "runs").glob("student-*.json"))[0]
    return path, json.loads(path.read_text())


@pytest.mark.skipif(not COMMITTED, reason="no committed results in this checkout")
@pytest.mark.parametrize("name", COMMITTED)
def test_every_committed_record_and_ledger_loads_and_writes_back_identically(name: str, tmp_path: Path) -> None:
    """write(read(file)) is the file itself, and reading and writing that again changes nothing."""
    paths = Paths(ROOT / "results" / name)
    records = sorted(paths.runs.glob("*.json"))
    assert records
    for path in records:
        rec = read_run_record(path)  # the checksum holds and every key has its type
        assert rec is not None and rec == RunRecord.load(path)
        rec.write(tmp_path / "once.json")
        assert (tmp_path / "once.json").read_bytes() == path.read_bytes(), path
        RunRecord.load(tmp_path / "once.json").write(tmp_path / "twice.json")
        assert (tmp_path / "twice.json").read_bytes() == path.read_bytes(), path
    ledger = GridLedger.load(paths.ledger)
    ledger.write(tmp_path / "grid.json")
    assert (tmp_path / "grid.json").read_bytes() == paths.ledger.read_bytes()
    GridLedger.load(tmp_path / "grid.json").write(tmp_path / "grid2.json")
    assert (tmp_path / "grid2.json").read_bytes() == paths.ledger.read_bytes()
    assert ledger.runs.total == len(records)


@pytest.mark.skipif("default" not in COMMITTED, reason="results/default is not committed in this checkout")
@pytest.mark.parametrize(("edit", "expected"), [
    (lambda r: r.pop("status"), "missing key status (expected a string)"),
    (lambda r: r["curve"][3].pop("step"), "missing key curve[3].step (expected an integer)"),
    (lambda r: r["curve"][3].update(step="120"), "curve[3].step: expected an integer, got '120'"),
    (lambda r: r["curve"][0].update(seed=True), "curve[0].seed: expected an integer, got True"),
    (lambda r: r["final"].update(test_acc=None), "final.test_acc: expected a number, got None"),
    (lambda r: r.update(checkpoint="w.pt"), "checkpoint: expected an object or null, got 'w.pt'"),
    (lambda r: r.update(curve={}), "curve: expected a list of objects, got {}"),
    (lambda r: r.update(train_time_s="1.5"), "train_time_s: expected a number or null, got '1.5'"),
    (lambda r: r.update(colour="red"), "unknown key colour"),
])
def test_a_malformed_record_is_one_line_naming_the_file_and_the_key(edit, expected: str, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _, raw = _record()
    edit(raw)
    raw.pop("sha256")
    path = tmp_path / "runs" / "r.json"
    write_record(path, raw)  # its checksum holds: only the type is wrong
    with pytest.raises(BadInput) as err:
        RunRecord.load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and expected in msg and "\n" not in msg
    # a grid treats it as absent and trains its run again, saying why
    assert read_run_record(path) is None
    out = capsys.readouterr().out
    assert expected in out and "its run is trained again" in out


def test_an_unreadable_record_is_named_and_its_run_redone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"run_id": "x", ')  # truncated
    with pytest.raises(BadInput, match=r"r\.json: unreadable \(JSONDecodeError; truncated\?\)"):
        RunRecord.load(path)
    assert read_run_record(path) is None and "unreadable (truncated?)" in capsys.readouterr().out
    assert read_run_record(tmp_path / "missing.json") is None and capsys.readouterr().out == ""


@pytest.mark.skipif("default" not in COMMITTED, reason="results/default is not committed in this checkout")
@pytest.mark.parametrize(("edit", "expected"), [
    (lambda g: g.pop("benchmark_text"), "missing key benchmark_text (expected a string)"),
    (lambda g: g["runs"].update(ok="145"), "runs.ok: expected an integer, got '145'"),
    (lambda g: g["looks"][1]["decisions"]["better_accuracy"].pop("state"),
     "missing key looks[1].decisions.better_accuracy.state"),
    (lambda g: g["seeds"].update(better_accuracy=1.5), "seeds.better_accuracy: expected an integer, got 1.5"),
])
def test_a_malformed_ledger_is_one_line_naming_the_file_and_the_key(edit, expected: str, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    raw = json.loads((ROOT / "results" / "default" / "grid.json").read_text())
    edit(raw)
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(BadInput) as err:
        GridLedger.load(path)
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value)
    assert read_ledger(path) is None and expected in capsys.readouterr().out  # a rerun starts its history again
    (tmp_path / "runs.parquet").write_bytes((ROOT / "results" / "default" / "runs.parquet").read_bytes())
    with pytest.raises(BadInput, match="run `fspbench run BENCHMARK --results DIR` first"):
        load_results(tmp_path)  # the report names it too, and writes nothing


@pytest.mark.skipif("ablation" not in COMMITTED, reason="results/ablation is not committed in this checkout")
def test_a_ledger_without_a_nullable_key_writes_none_and_a_new_one_writes_null(tmp_path: Path) -> None:
    # a grid.json written before estimates, caps, looks, retries and registrations were kept
    raw = json.loads((ROOT / "results" / "ablation" / "grid.json").read_text())
    for key in ("estimate", "max_concurrent", "looks", "retries", "registration", "seeds"):
        raw.pop(key, None)
    (tmp_path / "grid.json").write_text(json.dumps(raw))
    old = GridLedger.load(tmp_path / "grid.json")
    assert old.estimate is None and old.max_concurrent is None and old.looks is None
    assert {"estimate", "max_concurrent", "looks", "retries"}.isdisjoint(old.to_json())
    new = replace(old, absent=frozenset())  # as tune.py builds one: no estimate (nothing to train) is null
    assert new.to_json()["estimate"] is None and new.to_json()["max_concurrent"] is None
    assert "looks" not in new.to_json()  # only [design] grids have looks
    assert replace(old, estimate={"wall_time_s": 1.0}).to_json()["estimate"] == {"wall_time_s": 1.0}


def test_a_failed_record_reads_back_as_it_was_written(tmp_path: Path) -> None:
    run = GridRun("student-x", RunConfig(), "student", "main", "teacher-y")
    rec = failed_record(run, "teacher teacher-y ended with status diverged")
    rec.write(tmp_path / "student-x.json")
    back = read_run_record(tmp_path / "student-x.json")
    assert back == rec and back.final is None and back.curve == () and back.env is None
    assert "env" not in json.loads((tmp_path / "student-x.json").read_text())  # not recorded: left out
