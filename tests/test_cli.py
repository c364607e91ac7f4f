"""The real fspbench command in a subprocess: a run end to end, and every bad input exits 2 with one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import TINY, run_cli, set_args


def test_console_script_is_installed() -> None:
    exe = shutil.which("fspbench")
    assert exe is not None, "pip install -e . provides the fspbench command"


@pytest.mark.slow
def test_train_from_set_and_from_file(tmp_path: Path, teacher_record: Path) -> None:
    args = set_args({**TINY, "arch": "resnet8", "method": "fsp", "steps": 20, "init_steps": 20,
                     "teacher": str(teacher_record)})
    res = run_cli("train", *args, "--out", str(tmp_path / "S"), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "test accuracy" in res.stdout
    record_line = res.stdout.strip().splitlines()[-1]
    record = json.loads(Path(record_line.split("run record: ")[1]).read_text())
    assert record["method"] == "fsp" and record["status"] == "ok"
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text('arch = "resnet8"\nsteps = 10\ntrain_per_class = 50\nbatch_size = 32\n'
                        'eval_every = 10\n[fsp]\npool = "avg"\n')
    res = run_cli("train", str(cfg_file), "--set", "seed=3", "--out", str(tmp_path / "F"), "--quiet")
    assert res.returncode == 0, res.stderr
    (rec_path,) = (tmp_path / "F").glob("*.json")
    rec = json.loads(rec_path.read_text())
    assert rec["config"]["seed"] == 3 and rec["config"]["fsp"]["pool"] == "avg"


BAD_SETS = [
    (["--set", "stepz=10"], "stepz: unknown key (did you mean steps?)"),
    (["--set", "steps=abc"], "steps: expected an integer"),
    (["--set", "steps=-5"], "steps: expected a number > 0"),
    (["--set", "steps=0"], "steps: expected a number > 0"),
    (["--set", "arch=resnet7"], "arch: resnet7 is not a CIFAR ResNet: depth must be 6n+2"),
    (["--set", "arch=vgg11"], "arch: expected resnet<6n+2>"),
    (["--set", "method=distill"], "method: expected one of"),
    (["--set", "task=mnist"], "task: expected one of"),
    (["--set", "method=fsp"], "teacher: method 'fsp' needs a teacher"),
    (["--set", "method=fsp", "--set", "teacher=/nonexistent/t.json"], "teacher: /nonexistent/t.json does not exist"),
    (["--set", "fsp.pool=median"], "fsp.pool: expected one of max, avg"),
    (["--set", "milestones=[0.8, 0.2]"], "milestones: expected increasing fractions"),
    (["--set", "lr"], "expected key=value"),
    (["--set", "classes=[1, 1]"], "classes: expected distinct class ids"),
    (["missing.toml"], "missing.toml: no such config file"),
    (["--set", "augment=maybe"], "augment: expected true or false"),
    (["--set", "lr=nan"], "lr: expected a finite number, got nan"),
    (["--set", "weight_decay=inf"], "weight_decay: expected a finite number, got inf"),
    (["--set", "fsp.style=crd"], "fsp.style: expected one of paper, repdistiller, kdzoo, torchdistill"),
]


@pytest.mark.parametrize("args,expected", BAD_SETS, ids=[" ".join(a) for a, _ in BAD_SETS])
def test_bad_input_exits_2_with_one_line(args: list[str], expected: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_cli("train", *args, "--out", str(out), "--quiet")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert expected in lines[0]
    assert "Traceback" not in res.stderr
    assert not out.exists() or not any(out.rglob("*.json"))


def test_invalid_toml_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = = 3\n")
    res = run_cli("train", str(bad), "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "bad.toml: invalid TOML" in res.stderr


@pytest.mark.slow
def test_channel_mismatch_exits_2(tmp_path: Path, wide_teacher_record: Path) -> None:
    args = set_args({**TINY, "method": "fsp", "arch": "resnet8", "steps": 4, "teacher": str(wide_teacher_record)})
    res = run_cli("train", *args, "--out", str(tmp_path / "o"), "--quiet")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "fsp.adapter" in res.stderr and "conv1x1" in res.stderr


@pytest.mark.slow
def test_missing_data_names_the_three_sources(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"FSPBENCH_DATA": str(empty), "FSPBENCH_SYSTEM_DATA": str(empty), "FSPBENCH_OFFLINE": "1",
           "HOME": str(tmp_path)}
    res = run_cli("train", "--set", "task=cifar10", "--set", "steps=5", "--out", str(tmp_path / "o"), env=env)
    assert res.returncode == 2
    line = res.stderr.strip()
    assert "\n" not in line
    assert "FSPBENCH_DATA" in line and str(empty / "cifar10") in line and "download" in line


@pytest.mark.slow
def test_train_of_a_diverging_run_records_it_and_exits_0(tmp_path: Path) -> None:
    """The same rule as `fspbench run`: a diverged run is a recorded result (exit 0); only failures exit 1."""
    cfg = {**TINY, "arch": "resnet8", "steps": 30, "lr": 1e8, "device": "cpu"}
    res = run_cli("train", *set_args(cfg), "--out", str(tmp_path), "--quiet")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "status diverged" in res.stdout
    (rec,) = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert rec["status"] == "diverged"


@pytest.mark.parametrize("args", [["run", "smoke", "--results", "gs://bucket/smoke"],
                                  ["run", "smoke", "--results", "gs://bucket/smoke", "--dry-run"],
                                  ["submit", "smoke", "--address", "http://127.0.0.1:1", "--results", "az://c/smoke"],
                                  ["report", "gs://bucket/smoke"]])
def test_a_uri_for_results_is_refused_not_taken_for_a_folder(args: list[str], tmp_path: Path) -> None:
    """Only s3:// is a results URI (tests/test_s3.py); any other scheme is refused, not taken for a folder."""
    res = run_cli(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and ":// is not supported yet; use s3:// or a folder" in lines[0], lines
    assert list(tmp_path.iterdir()) == []  # no folder named "s3:" or "gs:", nothing else
