"""No code from data: every file fspbench reads back from a results folder or a bucket loads as data only.

Each test plants, where fspbench reads, a pickle that creates a marker file when it is unpickled
(``_Payload``), and checks that the marker is never created and that the command refuses with one
line (exit 2). ``test_the_payload_runs_code_when_unpickled`` shows that the payload is live.
Also here: a teacher's record whose own checksum fails, and the data folder a record names.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
import torch
from helpers import CLUSTER_BENCH, TINY, run_cli, set_args, tiny

from fspbench.config import config_from_dict
from fspbench.data import record_source
from fspbench.errors import BadInput
from fspbench.grid import load_benchmark
from fspbench.io import record_digest, sha256_file, write_record
from fspbench.results import Paths, RunRecord, read_run_record
from fspbench.staging import fetch_teacher, stage_paths
from fspbench.store import ObjectPath, s3_client
from fspbench.train import load_teacher, train_run

TINY_BENCH = str(Path(CLUSTER_BENCH).with_name("tiny.toml"))
REPO = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickled, it creates ``marker`` (with the shell, as planted code would)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _planted(marker: Path, **shape) -> bytes:
    """A torch.save file of a dict shaped like ``shape`` with the payload inside it, as an attacker would
    make one that passes for a state or a checkpoint."""
    buf = io.BytesIO()
    torch.save({**shape, "model": _Payload(marker)}, buf)
    return buf.getvalue()


def _one_line(res: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    return lines[0]


def _train_cli(out: Path, **settings) -> subprocess.CompletedProcess:
    """``fspbench train`` of a tiny run (helpers.TINY) with ``settings``, into ``out``."""
    return run_cli("train", *set_args({**TINY, "arch": "resnet8", **settings}), "--out", str(out), "--quiet")


@pytest.fixture(scope="module")
def small_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ResNet-8 teacher (10 steps): its folder, with <run_id>.json and checkpoints/<run_id>.pt."""
    out = tmp_path_factory.mktemp("teacher")
    rec = train_run(tiny(role="teacher", steps=10, eval_every=10), out)
    assert rec["status"] == "ok"
    return out


def _teacher_copy(small_teacher: Path, tmp_path: Path) -> tuple[Path, dict]:
    """A copy of the small teacher's folder to alter, and its record."""
    folder = shutil.copytree(small_teacher, tmp_path / "teacher")
    (record,) = folder.glob("*.json")
    return record, json.loads(record.read_text())


def test_the_payload_runs_code_when_unpickled(tmp_path: Path) -> None:
    """What every other test plants really runs code when loaded the unsafe way (so their checks can fail)."""
    marker = tmp_path / "ran"
    planted = tmp_path / "planted.pt"
    planted.write_bytes(_planted(marker, run_id="x"))
    torch.load(planted, weights_only=False)
    assert marker.exists()


# ---------------------------------------------------------------- a run's resumable state


@pytest.mark.slow
def test_planted_state_file_is_refused_on_resume_and_never_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    settings = {"steps": 20, "eval_every": 10}
    run_id = tiny(**settings).run_id()
    state = out / "checkpoints" / f"{run_id}.state.pt"
    state.parent.mkdir(parents=True)
    marker = tmp_path / "ran"
    state.write_bytes(_planted(marker, run_id=run_id, progress={}, student={}, stream={}))
    line = _one_line(_train_cli(out, **settings))
    assert not marker.exists()
    assert str(state) in line and "not a resumable state" in line and "delete it" in line
    assert not list(out.glob("*.json"))  # refused before anything was written
    state.unlink()  # the fix the line gives: the run then trains from the start
    res = _train_cli(out, **settings)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((out / f"{run_id}.json").read_text())["status"] == "ok"


class _Stop(Exception):
    pass


def _interrupted(cfg, out: Path) -> Path:
    """Train ``cfg`` into ``out`` until its first evaluation point; its resumable state file."""
    def stop(row: dict, state: Path | None) -> None:
        raise _Stop

    with pytest.raises(_Stop):
        train_run(cfg, out, on_eval=stop)
    (state,) = (out / "checkpoints").glob("*.state.pt")
    return state


@pytest.mark.slow
def test_state_file_that_is_not_this_runs_is_refused_not_redone(tmp_path: Path) -> None:
    """A truncated state file cannot come from a crash (states are written atomically), nor can another run's
    state under this run's name: either is refused with the fix, neither trusted nor silently replaced."""
    cfg = tiny(steps=20, eval_every=10)
    state = _interrupted(cfg, tmp_path / "a")
    whole = state.read_bytes()
    state.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(BadInput, match=r"does not load as data \(.*\); delete it to train the run from the start"):
        train_run(cfg, tmp_path / "a")
    other = cfg.replace(seed=1)
    mine = tmp_path / "b" / "checkpoints" / f"{other.run_id()}.state.pt"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(whole)  # run seed 0's state under seed 1's name
    with pytest.raises(BadInput, match=f"it is the state of run '{cfg.run_id()}'"):
        train_run(other, tmp_path / "b")
    assert mine.read_bytes() == whole  # left for the user to look at, not overwritten


@pytest.mark.slow
def test_state_is_saved_as_data_and_resumes(tmp_path: Path) -> None:
    """The state an FSP run writes inside its first stage (optimizer, lr schedule, objective, data stream,
    RNG state) loads with weights_only=True, and the run resumed from it ends as an uninterrupted one."""
    teacher = train_run(tiny(role="teacher", steps=10, eval_every=10), tmp_path / "t")
    cfg = tiny(method="fsp", teacher=str(tmp_path / "t" / f"{teacher['run_id']}.json"), steps=20, init_steps=20,
               eval_every=10)
    state = _interrupted(cfg, tmp_path / "s")
    blob = torch.load(state, map_location="cpu", weights_only=True)
    assert {"opt", "sched", "objective", "stream", "student", "progress"} <= set(blob)
    assert blob["progress"]["stage"] == 0 and blob["progress"]["step"] == 10  # inside stage 1
    resumed = train_run(cfg, tmp_path / "s")
    reference = train_run(cfg, tmp_path / "ref")
    assert [r["train_loss"] for r in resumed["curve"]] == [r["train_loss"] for r in reference["curve"]]
    assert resumed["final"]["test_acc"] == reference["final"]["test_acc"]


# ---------------------------------------------------------------- a teacher's weights and record


@pytest.mark.slow
def test_planted_teacher_checkpoint_with_matching_hashes_is_refused(small_teacher: Path, tmp_path: Path) -> None:
    """The record's checkpoint sha256 and its own checksum updated to the planted file: every hash holds, and
    still the file is only read as data."""
    record, rec = _teacher_copy(small_teacher, tmp_path)
    ckpt = record.parent / rec["checkpoint"]["path"]
    marker = tmp_path / "ran"
    ckpt.write_bytes(_planted(marker, run_id=rec["run_id"], config=rec["config"], num_classes=10, in_channels=1))
    rec["checkpoint"]["sha256"] = sha256_file(ckpt)
    write_record(record, {k: v for k, v in rec.items() if k != "sha256"})
    assert read_run_record(record) is not None  # the record itself is intact
    line = _one_line(_train_cli(tmp_path / "s", method="fsp", teacher=str(record), steps=4))
    assert not marker.exists()
    assert line == (f"fspbench: error: teacher: {ckpt} is not a readable fspbench checkpoint (UnpicklingError); "
                    "retrain the teacher")
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_altered_teacher_record_is_refused(small_teacher: Path, tmp_path: Path) -> None:
    """A hand edit of the teacher's record (its weights untouched) breaks the record's own checksum."""
    record, rec = _teacher_copy(small_teacher, tmp_path)
    rec["final"]["test_acc"] = 0.99
    record.write_text(json.dumps(rec))
    with pytest.raises(BadInput, match="does not match its sha256"):
        load_teacher(str(record), torch.device("cpu"))
    line = _one_line(_train_cli(tmp_path / "s", method="fsp", teacher=str(record), steps=4))
    assert line == (f"fspbench: error: teacher: {record} does not match its sha256 (altered); retrain the teacher "
                    "or restore its record")
    assert not (tmp_path / "s").exists()
    rec.pop("sha256")  # an edited record with its checksum taken out is refused as well
    record.write_text(json.dumps(rec))
    with pytest.raises(BadInput, match="does not match its sha256"):
        load_teacher(str(record), torch.device("cpu"))


# ---------------------------------------------------------------- a teacher's weights in a bucket


def _plant_in_bucket(teacher_folder: Path, remote: Paths, marker: Path) -> dict:
    """The teacher in ``teacher_folder`` put in the bucket at ``remote`` with a planted pickle for its weights,
    its record's checkpoint sha256 and own checksum updated to match; the record as planted."""
    (record,) = teacher_folder.glob("*.json")
    rec = json.loads(record.read_text())
    rec.pop("sha256")
    planted = _planted(marker, run_id=rec["run_id"], config=rec["config"], num_classes=10, in_channels=1)
    (remote.runs / rec["checkpoint"]["path"]).write_bytes(planted)
    rec["checkpoint"]["sha256"] = sha256_file(remote.runs / rec["checkpoint"]["path"])
    write_record(remote.record(rec["run_id"]), rec)
    return rec


@pytest.mark.slow
def test_planted_teacher_weights_fetched_from_a_bucket_are_refused(s3_server: dict, small_teacher: Path,
                                                                   monkeypatch, tmp_path: Path) -> None:
    """A trial's own steps with its results in a bucket (fspbench.tune._trial without Ray): the teacher is
    fetched from the bucket into the staging folder, hashes checked, then loaded as data only."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the staging folder under this test's folder
    bucket = f"fspbench-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=bucket)
    remote = Paths(ObjectPath(bucket, "r"))
    marker = tmp_path / "ran"
    rec = _plant_in_bucket(small_teacher, remote, marker)
    local = stage_paths(remote.root)
    cfg = fetch_teacher(tiny(method="fsp", teacher=str(remote.record(rec["run_id"])), steps=4), remote, local)
    fetched = Path(local.runs) / rec["checkpoint"]["path"]
    assert fetched.read_bytes() == (remote.runs / rec["checkpoint"]["path"]).read_bytes()  # the planted bytes
    with pytest.raises(BadInput, match=r"is not a readable fspbench checkpoint \(UnpicklingError\)"):
        train_run(cfg, local.runs, ckpt_dir=local.checkpoints)
    assert not marker.exists()


@pytest.mark.slow
def test_planted_teacher_weights_in_a_bucket_are_never_run(s3_server: dict, ray_cluster, tmp_path: Path) -> None:
    """tests/benchmarks/tiny.toml with its results in a bucket where the teacher's record says ok and its
    weights object is a planted pickle, both hashes updated to match: the students' trials fetch it from the
    bucket and refuse it; nothing runs it, on any node."""
    bucket = f"fspbench-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=bucket)
    uri = f"s3://{bucket}/tiny"
    (teacher,) = load_benchmark(TINY_BENCH, uri).teachers
    local = Paths(tmp_path / "trained")  # the teacher, trained as a grid would, then put in the bucket
    rec = train_run(teacher.config, local.runs, ckpt_dir=local.checkpoints)
    assert rec["run_id"] == teacher.run_id and rec["status"] == "ok"
    marker = tmp_path / "ran"
    remote = Paths(ObjectPath(bucket, "tiny"))
    rec = _plant_in_bucket(Path(local.runs), remote, marker)
    res = run_cli("run", TINY_BENCH, "--results", uri, "--address", ray_cluster["address"], "--quiet",
                  env=ray_cluster["env"])
    assert not marker.exists()
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-6000:]  # the FSP student, which needs the teacher, did not run
    assert "1 already finished" in res.stdout
    assert "not a readable fspbench checkpoint (UnpicklingError)" in out, out[-6000:]
    grid = json.loads((remote.root / "grid.json").read_text())
    assert grid["runs"]["ok"] == 2 and grid["runs"]["total"] == 3  # the teacher and the scratch student
    statuses = {p.stem: json.loads(p.read_text())["status"] for p in remote.runs.glob("*.json")}
    assert statuses.pop(rec["run_id"]) == "ok"
    assert not any(status == "ok" for run_id, status in statuses.items() if "-fsp-" in run_id)


# ---------------------------------------------------------------- the data folder a record names


def test_record_source_is_relative_to_where_the_data_was_searched(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FSPBENCH_DATA", str(tmp_path / "mine"))
    monkeypatch.setenv("FSPBENCH_SYSTEM_DATA", str(tmp_path / "system"))
    assert record_source(tmp_path / "mine") == "$FSPBENCH_DATA"
    assert record_source(tmp_path / "mine" / "cifar10" / "cifar-10-batches-py") == \
        "$FSPBENCH_DATA/cifar10/cifar-10-batches-py"
    assert record_source(tmp_path / "system" / "fashion-mnist") == "system:fashion-mnist"
    download = Path.home() / ".cache" / "fspbench" / "data" / "fashion-mnist" / "FashionMNIST" / "raw"
    assert record_source(download) == "download:fashion-mnist/FashionMNIST/raw"
    assert record_source(tmp_path / "elsewhere" / "cub200") == "cub200"  # never an absolute path
    monkeypatch.delenv("FSPBENCH_SYSTEM_DATA")
    assert record_source("/usr/share/datasets/fashion-mnist") == "system:fashion-mnist"


@pytest.mark.slow
def test_new_record_names_its_data_without_an_absolute_path(small_teacher: Path) -> None:
    (record,) = small_teacher.glob("*.json")
    source = json.loads(record.read_text())["data"]["source"]
    assert not Path(source).is_absolute() and "fashion-mnist" in source, source
    assert str(Path.home()) not in source


@pytest.mark.slow
def test_record_with_an_absolute_data_path_still_loads(small_teacher: Path, tmp_path: Path) -> None:
    """Records written before name the data folder by its absolute path: they load, and teach, as they are."""
    record, rec = _teacher_copy(small_teacher, tmp_path)
    rec.pop("sha256")
    rec["data"]["source"] = "/home/someone/data/fashion-mnist"
    write_record(record, rec)
    loaded = RunRecord.load(record)
    assert loaded.data is not None and loaded.data.source == "/home/someone/data/fashion-mnist"
    assert load_teacher(str(record), torch.device("cpu")).run_id == rec["run_id"]


def test_committed_run_ids_follow_from_their_configs() -> None:
    """The data folder never entered a run id: committed records (absolute data paths) keep theirs."""
    records = sorted((REPO / "results" / "default" / "runs").glob("*.json"))[:20]
    if not records:
        pytest.skip("no committed results in this checkout")
    for path in records:
        raw = json.loads(path.read_text())
        assert raw["sha256"] == record_digest(raw)
        rec = RunRecord.load(path)
        assert config_from_dict(rec.config, source=str(path)).run_id(rec.teacher_run_id) == rec.run_id
