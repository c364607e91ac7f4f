"""Results in a bucket when two writers meet: two runners taking over the same expired lease at once, and
the TensorBoard mirror of a driver that starts again, against a real S3 server on this machine (moto's
standalone server, the session's ``s3_server``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from fspbench.errors import BadInput
from fspbench.lease import LOCK_NAME, Holder, ObjectLock
from fspbench.store import ObjectPath, s3_client
from fspbench.tensorboard_mirror import MirroredTensorBoard
from fspbench.tracking import Point, RunInfo

ROUNDS = 8  # races per test: an unconditional takeover lets both win in some interleavings, not all


@pytest.fixture
def bucket(s3_server: dict) -> str:
    """A new, empty bucket on the session's S3 server."""
    name = f"fspbench-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=name)
    return name


# ---------------------------------------------------------------- two runners take over one expired lease


def _leave_a_dead_lease(root: ObjectPath) -> None:
    """The lock object of a runner that died: never renewed, with a lease of 0 s (expired a second later)."""
    body = {"holder": "pid 1 on gone-host since 2000-01-01T00:00:00+00:00", "token": "dead", "lease_s": 0}
    s3_client().put_object(Bucket=root.bucket, Key=(root / LOCK_NAME).key, Body=json.dumps(body).encode())


class Race:
    """Two takers of one expired lease, held back until both have read it (each then writes having seen the
    same expired version). ``staggered``: the second to arrive goes on only once the first has taken the lock
    over, the case where a plain delete-then-create lets both win for sure; otherwise both write at once and
    the server decides."""

    def __init__(self, staggered: bool) -> None:
        self.staggered = staggered
        self.barrier = threading.Barrier(2)
        self.first: int | None = None  # id() of the taker the barrier let through first
        self.first_done = threading.Event()
        self.outcome: dict[int, str] = {}  # id() of a taker -> "won", or its refusal

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Every taker's reading of the lock object goes through ``meet`` from now on."""
        read = ObjectLock._holder

        def read_then_meet(lock: ObjectLock, client: object) -> Holder | None:
            holder = read(lock, client)
            if holder is not None and holder.expired:
                self.meet(lock)
            return holder

        monkeypatch.setattr(ObjectLock, "_holder", read_then_meet)

    def meet(self, lock: ObjectLock) -> None:
        if self.barrier.wait(timeout=30) == 0:
            self.first = id(lock)
        elif self.staggered:
            assert self.first_done.wait(timeout=30)

    def take_over(self, lock: ObjectLock) -> None:
        """Acquire ``lock`` and record how it went."""
        try:
            lock.acquire()
            self.outcome[id(lock)] = "won" if lock.held else "returned without the lock"
        except BadInput as err:
            self.outcome[id(lock)] = str(err)
        finally:
            if self.first == id(lock):
                self.first_done.set()

    def run(self, takers: list[ObjectLock]) -> None:
        threads = [threading.Thread(target=self.take_over, args=(t,)) for t in takers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)


def test_two_runners_taking_over_one_expired_lease_at_once_one_wins(bucket: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Each round two runners read the same expired lease, then take it over: at the same instant, or one just
    after the other has. Exactly one holds the lock (its token is in the bucket), the other is refused with
    the one-line "in use" message; released, the lock object is gone."""
    roots = [ObjectPath(bucket, f"grid{i}") for i in range(ROUNDS)]
    for root in roots:
        _leave_a_dead_lease(root)
    time.sleep(1.1)  # Last-Modified and Date have whole seconds: past 0 s of lease on the server's clock
    for i, root in enumerate(roots):
        race = Race(staggered=i % 2 == 1)
        race.install(monkeypatch)
        takers = [ObjectLock(root, lease_s=60), ObjectLock(root, lease_s=60)]
        race.run(takers)
        try:
            winners = [t for t in takers if race.outcome.get(id(t)) == "won"]
            assert len(winners) == 1, f"{root}: {[race.outcome.get(id(t)) for t in takers]}"
            refusal = next(race.outcome[id(t)] for t in takers if t is not winners[0])
            assert refusal.startswith(f"{root}: in use by another fspbench run (pid ") and "\n" not in refusal
            lock = s3_client().get_object(Bucket=bucket, Key=(root / LOCK_NAME).key)
            assert json.loads(lock["Body"].read())["token"] == winners[0]._token
        finally:
            for t in takers:
                t.release()
        assert "Contents" not in s3_client().list_objects_v2(Bucket=bucket, Prefix=f"{root.key}/")


def test_a_holder_whose_lease_was_taken_over_cannot_renew_over_the_new_holder(bucket: str) -> None:
    """A runner that stalled past its lease (here: its lease object was taken over while it held it) must not
    overwrite the new holder's lock at its next renewal: the renewal is conditional on its own last write."""
    root = ObjectPath(bucket, "grid")
    stalled = ObjectLock(root, lease_s=0.6)
    stalled.acquire()
    try:
        taker = ObjectLock(root, lease_s=60)
        taker._token = "taker"
        key = (root / LOCK_NAME).key
        current = s3_client().head_object(Bucket=bucket, Key=key)["ETag"]
        assert taker._put(s3_client(), IfMatch=current)  # the takeover, as acquire() makes it once expired
        assert not stalled._put(s3_client(), IfMatch=stalled._etag)  # a renewal's write: refused
        time.sleep(1.0)  # past the stalled holder's next renewals (every 0.2 s)
        body = json.loads(s3_client().get_object(Bucket=bucket, Key=key)["Body"].read())
        assert body["token"] == "taker"
        assert stalled._thread is not None and not stalled._thread.is_alive()  # it saw the takeover and stopped
    finally:
        stalled.release()


# ---------------------------------------------------------------- the TensorBoard mirror


RUNS = [RunInfo(f"run{i}", {"method": "fsp", "arch": "resnet8", "seed": i, "group": "g", "budget": 1,
                            "role": "student"}) for i in range(2)]


def _point(step: int) -> Point:
    return Point(step, {"main/test_acc": (0.5, step), "main/train_loss": (1.0, step)})


def _count_uploads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys every later object upload writes, in order (each object write is one ObjectPath.write_bytes)."""
    uploads: list[str] = []
    write = ObjectPath.write_bytes

    def recording(self: ObjectPath, data: bytes) -> None:
        uploads.append(self.key)
        write(self, data)

    monkeypatch.setattr(ObjectPath, "write_bytes", recording)
    return uploads


def _bucket_equals(local: Path, remote: ObjectPath) -> None:
    """Every local file is in the bucket with the same bytes, and nothing else is."""
    files = {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()}
    assert {k: (remote / k).read_bytes() for k in remote.listing()} == files


def test_mirror_uploads_only_what_the_bucket_lacks_or_holds_in_another_size(bucket: str, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh mirror (a driver started again, on this machine or another) compares with the bucket's listing:
    after a sync it uploads nothing; after one event file grew, only that one; after a new point, only that
    run's files, its fspbench.json included though rewritten at the same size."""
    remote, local = ObjectPath(bucket, "grid/tensorboard"), tmp_path / "driver1"
    first = MirroredTensorBoard(local, remote)
    for run in RUNS:
        first.point(run, _point(100))
        first.point(run, _point(200))
    first.close()
    _bucket_equals(local, remote)
    uploads = _count_uploads(monkeypatch)

    MirroredTensorBoard(local, remote).close()  # a new process on this machine: it remembers no upload
    MirroredTensorBoard(tmp_path / "driver2", remote).close()  # another machine: it downloads, then compares
    assert uploads == []

    events = sorted(p for p in (local / "run0").iterdir() if "tfevents" in p.name)
    assert len(events) == 1
    with events[0].open("ab") as fh:  # what tensorboardX does between two syncs: append
        fh.write(b"\0" * 16)
    MirroredTensorBoard(local, remote).close()
    assert uploads == [f"{remote.key}/run0/{events[0].name}"]
    _bucket_equals(local, remote)

    uploads.clear()
    sizes = _sizes(local / "run1")
    again = MirroredTensorBoard(local, remote)
    again.point(RUNS[1], _point(300))  # step 300 after 200: the state file keeps its size
    again.close()
    grown = {name for name, size in _sizes(local / "run1").items() if sizes.get(name) != size}
    assert grown and all("tfevents" in name for name in grown)  # the new point's event file, new or appended
    assert sorted(uploads) == sorted(f"{remote.key}/run1/{name}" for name in grown | {"fspbench.json"})
    _bucket_equals(local, remote)


def _sizes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in folder.iterdir()}
