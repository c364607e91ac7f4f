"""Pre-registration: a [design] grid's design is in grid.json before its first run trains, never rewritten,
and a rerun whose design keys changed is refused (exit 2, one line, nothing written); comments, the
description, [resources] and [tracking] may change. Results from before registrations still load."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli

from fspbench.errors import BadInput
from fspbench.registration import (
    check_unchanged,
    design_changes,
    design_keys,
    first_start,
    new_registration,
    register,
    report_line,
)
from fspbench.results import GridLedger, Paths, Registration, read_ledger, read_registration

ROOT = Path(__file__).resolve().parent.parent
SMOKE = (ROOT / "benchmarks" / "smoke.toml").read_text()
COMMITTED = [n for n in ("default", "ablation") if (ROOT / "results" / n / "grid.json").is_file()]


def _changes(old: str, new: str) -> list[str]:
    return design_changes(design_keys(old), design_keys(new))


# ---------------------------------------------------------------- the key diff


def test_changed_added_and_removed_keys_are_named_with_old_and_new_values() -> None:
    new = (SMOKE.replace("max_seeds = 4", "max_seeds = 6")
           .replace('seeding = "paired"       #', 'seeding = "independent"  #')
           .replace("headroom = 0.5\n", "headroom = 0.5\nalpha = 0.01\n")
           .replace("init_steps = 12\n", "")
           .replace("budgets = [18]\ninit_steps = 18\nprecision", "budgets = [18, 54]\ninit_steps = 18\nprecision"))
    assert _changes(SMOKE, new) == [
        'design.seeding "paired" -> "independent"', "design.max_seeds 4 -> 6", "design.alpha (none) -> 0.01",
        "students.bf16.budgets [18] -> [18, 54]", "students.cross.init_steps 12 -> (none)"]


def test_nested_tables_and_inline_tables_are_key_paths() -> None:
    keys = design_keys(SMOKE)
    assert keys["claims.better_accuracy.budget"] == 54
    assert keys["students.main.budgets.fsp"] == [6, 18, 54, 108]
    assert keys["students.main.method_settings.fitnet.init_lr"] == 3e-4
    assert keys["name"] == "smoke" and "description" not in keys
    assert not any(k.startswith(("resources.", "tracking.")) for k in keys)
    new = SMOKE.replace("budgets = { fsp = [36, 72]", "budgets = { fsp = [36, 74]")
    assert _changes(SMOKE, new) == ["students.cross.budgets.fsp [36, 72] -> [36, 74]"]


def test_a_removed_table_names_each_of_its_keys() -> None:
    start = SMOKE.index("[ablation]")
    new = SMOKE[:start] + SMOKE[SMOKE.index("[claims.fast_optimization]"):]
    assert _changes(SMOKE, new) == ['ablation.reference "main" -> (none)', "ablation.budget 18 -> (none)",
                                    'ablation.arms ["repdistiller"] -> (none)']


def test_comments_description_resources_and_tracking_are_not_design() -> None:
    new = ("# a new header line\n" + SMOKE.replace("look_every = 2", "look_every = 2  # a comment")
           .replace("description = \"CI smoke", "description = \"Changed: CI smoke")
           .replace("[resources]\ncpu = 1\ngpu = 0.0", "[resources]\ncpu = 2\ngpu = 0.5\nmax_concurrent = 3")
           + '\n[tracking]\nmlflow = "sqlite:///mlruns.db"\n')
    assert new != SMOKE and _changes(SMOKE, new) == []


def test_a_type_change_is_a_change() -> None:
    assert _changes("[design]\nheadroom = 1\n", "[design]\nheadroom = 1.0\n") == ["design.headroom 1 -> 1.0"]
    assert _changes("[a]\n", "") == ["a {} -> (none)"]  # an empty table is a key too


# ---------------------------------------------------------------- the registration in grid.json


@dataclass(frozen=True)
class _Bench:
    """What registration reads of a loaded benchmark (grid.Benchmark): its file, its text, its runs."""

    path: Path
    text: str
    runs: tuple = ()


def _bench(tmp_path: Path, text: str = SMOKE) -> Any:
    path = tmp_path / "smoke.toml"
    path.write_text(text)
    return _Bench(path, text)


def test_a_registration_round_trips_through_grid_json(tmp_path: Path) -> None:
    reg = new_registration(SMOKE, "benchmarks/smoke.toml", after_results=False)
    assert reg.sha256 == hashlib.sha256((ROOT / "benchmarks" / "smoke.toml").read_bytes()).hexdigest()
    assert datetime.fromisoformat(reg.registered_at).tzinfo is not None and reg.registered_at.endswith("Z")
    assert Registration.from_json(json.loads(json.dumps(reg.to_json()))) == reg
    ledger = replace(GridLedger.load(ROOT / "results" / "default" / "grid.json"), registration=reg)
    ledger.write(tmp_path / "grid.json")
    again = GridLedger.load(tmp_path / "grid.json")
    assert again == ledger and again.registration == reg
    again.write(tmp_path / "grid2.json")
    assert (tmp_path / "grid2.json").read_bytes() == (tmp_path / "grid.json").read_bytes()
    assert read_registration(tmp_path / "grid.json") == reg
    raw = json.loads((tmp_path / "grid.json").read_text())["registration"]
    assert set(raw) == {"file", "sha256", "text", "registered_at", "design", "after_results"}


def test_a_fresh_registration_is_all_grid_json_holds_until_a_run_finishes(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    bench, paths = _bench(tmp_path), Paths(tmp_path / "results")
    reg = register(bench, paths)
    assert not reg.after_results and reg.text == SMOKE and reg.design == design_keys(SMOKE)
    assert json.loads(paths.ledger.read_text()) == {"registration": reg.to_json()}
    capsys.readouterr()
    assert read_ledger(paths.ledger) is None and capsys.readouterr().out == ""  # no history yet, no warning
    with pytest.raises(BadInput, match="holds only the registration"):
        GridLedger.load(paths.ledger)
    before = paths.ledger.read_bytes()
    comment = "# only a comment more\n" + SMOKE.replace("cpu = 1", "cpu = 2")
    assert register(_bench(tmp_path, comment), paths) == reg  # accepted, and the registration kept as it was
    assert paths.ledger.read_bytes() == before


def test_a_changed_design_is_one_line_naming_the_file_the_keys_and_the_registration(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "results")
    reg = register(_bench(tmp_path), paths)
    before = paths.ledger.read_bytes()
    changed = (SMOKE.replace("max_seeds = 4", "max_seeds = 6")
               .replace('arch = "resnet8"\nbudget = 54\n', 'arch = "resnet8"\nbudget = 108\n'))
    with pytest.raises(BadInput) as err:
        check_unchanged(_bench(tmp_path, changed), paths)
    line = str(err.value)
    assert "\n" not in line and line.endswith("; run it into a new --results folder")
    assert f"the design registered in {paths.ledger} at {reg.registered_at} no longer matches: " in line
    assert "design.max_seeds 4 -> 6, claims.better_accuracy.budget 54 -> 108" in line
    assert "smoke.toml" in line.split(":")[0]
    with pytest.raises(BadInput):
        register(_bench(tmp_path, changed), paths)
    assert paths.ledger.read_bytes() == before


def test_a_malformed_registration_is_bad_input_naming_the_key(tmp_path: Path) -> None:
    reg = new_registration(SMOKE, "smoke.toml", after_results=False).to_json()
    (tmp_path / "grid.json").write_text(json.dumps({"registration": {**reg, "registered_at": 7}}))
    with pytest.raises(BadInput, match=r"grid.json: registration.registered_at: expected a string, got 7"):
        read_registration(tmp_path / "grid.json")


@pytest.mark.skipif(not COMMITTED, reason="no committed results in this checkout")
@pytest.mark.parametrize("name", COMMITTED)
def test_results_from_before_registrations_load_and_are_registered_after_results(name: str, tmp_path: Path) -> None:
    # a folder from before registrations: the committed grid.json as it was written, without its registration
    raw = json.loads((ROOT / "results" / name / "grid.json").read_text())
    raw.pop("registration", None)
    committed = tmp_path / "before" / "grid.json"
    committed.parent.mkdir()
    committed.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    ledger = GridLedger.load(committed)
    assert ledger.registration is None and read_registration(committed) is None
    results = tmp_path / name
    results.mkdir()
    shutil.copy(committed, results / "grid.json")
    bench = _Bench(tmp_path / f"{name}.toml", ledger.benchmark_text)
    reg = register(bench, Paths(results))
    assert reg.after_results and reg.text == ledger.benchmark_text
    again = GridLedger.load(results / "grid.json")
    assert again == replace(ledger, registration=reg)  # the rest of the ledger as it was
    written = json.loads((results / "grid.json").read_text())
    assert {k: v for k, v in written.items() if k != "registration"} == json.loads(committed.read_text())
    line = report_line(again, [], designed=True)
    assert line is not None and "after results existed" in line and reg.sha256[:12] in line
    assert (report_line(ledger, [], designed=True) or "").startswith("Pre-registration: none;")


# ---------------------------------------------------------------- the report's line


def test_the_report_line_says_whether_the_registration_precedes_the_first_run() -> None:
    ledger = replace(GridLedger.load(ROOT / "results" / "default" / "grid.json"), registration=None)
    first = ledger.history[0].started_at  # no records: the first invocation that trained
    assert first_start(ledger, []) == first
    reg = replace(new_registration(SMOKE, "smoke.toml", False), registered_at="2026-12-01T00:00:00Z")
    line = report_line(replace(ledger, registration=reg), [], designed=True)
    assert line == (f"Pre-registration: the design (benchmark file sha256 `{reg.sha256[:12]}`) was registered in "
                    f"grid.json at 2026-12-01T00:00:00Z, before the first run started ({first}).")
    late = replace(reg, registered_at="2026-12-31T00:00:00Z")
    assert "after the first run started" in (report_line(replace(ledger, registration=late), [], True) or "")
    assert report_line(ledger, [], designed=False) is None
    assert "none" in (report_line(ledger, [], designed=True) or "")


# ---------------------------------------------------------------- the real command


def _tiny_design(path: Path, max_seeds: int = 2, comment: str = "") -> Path:
    """The smoke preset cut to one look of 2 paired seeds: one teacher per seed, FSP and scratch at F and 2F,
    better_accuracy alone (10 runs of a few steps each)."""
    head = SMOKE[:SMOKE.index("[teachers.t8]")].replace("max_seeds = 4", f"max_seeds = {max_seeds}")
    path.write_text(comment + head + '[teachers.t8]\narch = "resnet8"\nsteps = 18\n\n'
                    '[students.main]\nteacher = "t8"\nmethods = ["fsp", "scratch"]\narchs = ["resnet8"]\n'
                    'budgets = [9, 18]\ninit_steps = 3\n\n'
                    '[claims.better_accuracy]\ngroup = "main"\narch = "resnet8"\nbudget = 9\n')
    return path


def _folder_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_grid_registers_before_it_trains_and_refuses_a_changed_design(ray_cluster, tmp_path: Path) -> None:
    bench, results = _tiny_design(tmp_path / "tiny.toml"), tmp_path / "results"
    cluster = ["--address", ray_cluster["address"], "--quiet"]
    dry = run_cli("run", str(bench), "--results", str(results), "--dry-run", *cluster, env=ray_cluster["env"])
    assert dry.returncode == 0 and not results.exists(), dry.stderr[-2000:]  # a dry run registers nothing
    res = run_cli("run", str(bench), "--results", str(results), *cluster, env=ray_cluster["env"])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    reg = json.loads((results / "grid.json").read_text())["registration"]
    assert reg["sha256"] == hashlib.sha256(bench.read_bytes()).hexdigest() and reg["text"] == bench.read_text()
    assert reg["after_results"] is False and reg["design"]["design.max_seeds"] == 2
    registered = datetime.fromisoformat(reg["registered_at"])
    records = [json.loads(p.read_text()) for p in (results / "runs").glob("*.json")]
    assert len(records) == 10
    assert all(registered < datetime.fromisoformat(r.get("started_at") or r["finished_at"]) for r in records)

    _tiny_design(bench, comment="# a comment does not change the design\n")  # accepted, the registration kept
    res = run_cli("run", str(bench), "--results", str(results), *cluster, env=ray_cluster["env"])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert json.loads((results / "grid.json").read_text())["registration"] == reg

    before = _folder_digest(results)
    _tiny_design(bench, max_seeds=4)
    res = run_cli("run", str(bench), "--results", str(results), *cluster, env=ray_cluster["env"])
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stdout[-3000:] + res.stderr[-3000:]
    assert "design.max_seeds 2 -> 4" in lines[0] and "tiny.toml" in lines[0] and reg["registered_at"] in lines[0]
    assert _folder_digest(results) == before  # nothing written

    out = tmp_path / "report"
    res = run_cli("report", str(results), "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    md = (out / "report.md").read_text()
    assert f"sha256 `{reg['sha256'][:12]}`) was registered in grid.json at {reg['registered_at']}, before the first " \
           "run started" in md


def test_a_registration_in_a_bucket_is_written_once_and_checked(s3_server: dict, tmp_path: Path) -> None:
    """Results in s3://...: the registration is one object write of grid.json, read back and checked alike."""
    from fspbench.store import ObjectPath, s3_client

    name = f"fspbench-{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:12]}"
    s3_client().create_bucket(Bucket=name)
    paths = Paths(ObjectPath(name, "prereg"))
    reg = register(_bench(tmp_path), paths)
    assert read_registration(paths.ledger) == reg and read_ledger(paths.ledger) is None
    assert register(_bench(tmp_path, "# a comment\n" + SMOKE), paths) == reg
    with pytest.raises(BadInput, match=r"s3://.*/prereg/grid.json .* design.max_seeds 4 -> 6;"):
        check_unchanged(_bench(tmp_path, SMOKE.replace("max_seeds = 4", "max_seeds = 6")), paths)
