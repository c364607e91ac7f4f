"""A trial's node-local copy of its files when the results are in a bucket.

fspbench.train writes to a folder; a trial whose results live in a bucket therefore trains into a
staging folder on its own node ($TMPDIR/fspbench-stage/<hash of the results URI>/, laid out as a
results folder: runs/ and checkpoints/), fetches its teacher's record and weights from the bucket
into it first (checked against their sha256, wherever the teacher was trained), and uploads its
final weights and then its record when it ends. The record goes last, so a finished record in the
bucket always has its weights beside it; each is one whole upload (fspbench.store). Nothing but the
bucket is shared between nodes: a retry on another node resumes from Tune's checkpoint, which Tune
keeps in the bucket too.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from fspbench.config import RunConfig
from fspbench.errors import BadInput
from fspbench.io import atomic_write_bytes
from fspbench.results import Paths, RunRecord, read_run_record
from fspbench.store import Location, ObjectPath


def stage_paths(root: ObjectPath) -> Paths:
    """This node's staging folder for the results at ``root``."""
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    return Paths(Path(tempfile.gettempdir()) / "fspbench-stage" / digest)


def _folder(loc: Location) -> Path:
    """A staging location, which is always a local folder."""
    assert isinstance(loc, Path), loc
    return loc


def fetch_teacher(cfg: RunConfig, remote: Paths, local: Paths) -> RunConfig:
    """``cfg`` with its teacher fetched from the bucket into ``local``; BadInput when the teacher's record
    is missing, not ok, or its weights do not match their sha256."""
    if not cfg.teacher:
        return cfg
    run_id = Path(cfg.teacher).stem  # the grid names a teacher by its record, runs/<run_id>.json
    record = read_run_record(remote.record(run_id))
    if record is None or record.status != "ok" or record.checkpoint is None:
        raise BadInput(f"teacher: {remote.record(run_id)} is missing or did not end ok; train the teacher first")
    weights = (remote.runs / record.checkpoint.path).read_bytes()
    if hashlib.sha256(weights).hexdigest() != record.checkpoint.sha256:
        raise BadInput(f"teacher: {remote.runs / record.checkpoint.path} does not match the sha256 in its run "
                       "record; retrain it")
    local_weights = _folder(local.runs) / record.checkpoint.path
    atomic_write_bytes(local_weights, weights)
    record.write(local.record(run_id))
    return cfg.replace(teacher=str(local.record(run_id)))


def upload_run(run_id: str, local: Paths, remote: Paths) -> None:
    """The run's final weights (when it has them) and then its record, from ``local`` to the bucket."""
    path = _folder(local.record(run_id))
    if not path.is_file():
        return
    record = RunRecord.load(path)
    if record.checkpoint is not None:
        weights = (_folder(local.runs) / record.checkpoint.path).read_bytes()
        atomic_write_bytes(remote.runs / record.checkpoint.path, weights)
    atomic_write_bytes(remote.record(run_id), path.read_bytes())  # the same bytes, so the same sha256
