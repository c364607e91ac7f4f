"""One run end to end on real Fashion-MNIST: accuracy, determinism, records, divergence, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import tiny

from fspbench.errors import BadInput
from fspbench.io import sha256_file
from fspbench.train import load_teacher, train_run

TIMING = ("wall_time_s",)


def _strip(rec: dict) -> dict:
    """A record without what legitimately differs between identical runs (timings, dates)."""
    rec = json.loads(json.dumps(rec))
    for key in ("started_at", "finished_at", "train_time_s", "eval_time_s"):
        rec.pop(key, None)
    for row in rec["curve"]:
        for k in TIMING:
            row.pop(k)
    rec["final"].pop("wall_time_s")
    return rec


@pytest.mark.slow
def test_teacher_and_fsp_student_beat_chance_clearly(teacher_record, tmp_path) -> None:
    teacher = json.loads(teacher_record.read_text())
    assert teacher["final"]["test_acc"] > 0.6  # chance is 0.1
    rec = train_run(tiny(method="fsp", teacher=str(teacher_record), steps=100, init_steps=60), tmp_path)
    assert rec["final"]["test_acc"] > 0.5
    assert rec["teacher_run_id"] == teacher["run_id"]
    assert rec["curve"][-1]["eval_images"] == 10000  # the final evaluation uses the full test set
    assert rec["curve"][0]["eval_images"] == 500


@pytest.mark.slow
def test_same_config_and_seed_give_identical_records(tmp_path) -> None:
    cfg = tiny(steps=30, eval_every=10)
    a = train_run(cfg, tmp_path / "a")
    b = train_run(cfg, tmp_path / "b")
    assert _strip(a) == _strip(b)
    c = train_run(cfg.replace(seed=1), tmp_path / "c")
    assert c["run_id"] != a["run_id"]
    assert [r["train_loss"] for r in c["curve"]] != [r["train_loss"] for r in a["curve"]]


@pytest.mark.slow
def test_record_contents_and_checkpoint_hash(tmp_path) -> None:
    rec = train_run(tiny(steps=20, eval_every=10), tmp_path)
    on_disk = json.loads((tmp_path / f"{rec['run_id']}.json").read_text())
    assert on_disk["status"] == "ok" and on_disk["run_id"] == rec["run_id"]
    assert {"python", "torch", "device", "threads", "git_commit", "processor"} <= set(on_disk["env"])
    assert on_disk["config"]["arch"] == "resnet8"
    assert [r["step"] for r in on_disk["curve"]] == [10, 20]
    assert all(0.0 <= r["test_acc"] <= 1.0 for r in on_disk["curve"])
    ckpt = tmp_path / on_disk["checkpoint"]["path"]
    assert sha256_file(ckpt) == on_disk["checkpoint"]["sha256"]
    assert not list((tmp_path / "checkpoints").glob("*.state.pt"))  # resumable state removed at the end
    teacher = load_teacher(str(tmp_path / f"{rec['run_id']}.json"), torch.device("cpu"))
    assert not teacher.model.training
    assert not any(p.requires_grad for p in teacher.model.parameters())


@pytest.mark.slow
def test_altered_teacher_checkpoint_is_refused(tmp_path) -> None:
    rec = train_run(tiny(steps=10, eval_every=10), tmp_path)
    record = tmp_path / f"{rec['run_id']}.json"
    ckpt = tmp_path / rec["checkpoint"]["path"]
    ckpt.write_bytes(ckpt.read_bytes()[:-100])  # truncated
    with pytest.raises(BadInput, match="sha256"):
        load_teacher(str(record), torch.device("cpu"))
    with pytest.raises(BadInput, match="teacher"):
        train_run(tiny(method="fsp", teacher=str(record), steps=4), tmp_path / "s")


@pytest.mark.slow
def test_non_finite_loss_stops_run_as_diverged(tmp_path) -> None:
    rec = train_run(tiny(steps=60, eval_every=20, lr=1e8), tmp_path)
    assert rec["status"] == "diverged"
    assert rec["curve"][-1]["status"] == "diverged"
    assert rec["final"]["step"] < 60  # stopped early, not run to the end
    assert rec["checkpoint"] is None
    on_disk = json.loads((tmp_path / f"{rec['run_id']}.json").read_text())
    assert on_disk["status"] == "diverged"


@pytest.mark.slow
def test_interrupted_run_resumes_to_identical_metrics(tmp_path) -> None:
    cfg = tiny(steps=40, eval_every=10)
    reference = train_run(cfg, tmp_path / "ref")

    class Crash(Exception):
        pass

    def crash_at_20(row: dict, _state: Path | None) -> None:
        if row["step"] == 20:
            raise Crash

    out = tmp_path / "resumed"
    with pytest.raises(Crash):
        train_run(cfg, out, on_eval=crash_at_20)
    assert json.loads((out / f"{reference['run_id']}.json").read_text())["status"] == "failed"
    resumed = train_run(cfg, out)
    assert _strip(resumed) == _strip(reference)
