"""TensorBoard event files for results in a bucket: written on the driver into a local mirror, uploaded.

tensorboardX appends to its event files as points arrive, which an object store cannot do; so for
results at ``s3://bucket/prefix`` the driver writes them into its staging folder
(fspbench.staging) and, each time the sink is closed (after each Tune run and at the end), uploads
every file that changed to ``s3://bucket/prefix/tensorboard/``, each as one whole object. A driver on
another machine first downloads what the bucket holds, so the sink's record of the last step written
per run (fspbench.tensorboard_sink) comes with it and a resumed grid writes no point twice.
``tensorboard --logdir s3://bucket/prefix/tensorboard`` (TensorBoard's S3 support, with the AWS variables) or
a copy of that prefix shows the curves.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fspbench.io import atomic_write_bytes
from fspbench.store import ObjectPath
from fspbench.tensorboard_sink import TensorBoardSink

if TYPE_CHECKING:  # types only: fspbench.tracking imports this module
    from fspbench.results import RunRecord
    from fspbench.tracking import Point, RunInfo


def _download(remote: ObjectPath, local: Path) -> None:
    """The bucket's event files that this machine's mirror lacks (a driver that did not write them)."""
    prefix = remote.key + "/" if remote.key else ""
    for obj in remote.objects():
        target = local / obj.key[len(prefix):]
        if not target.exists():
            atomic_write_bytes(target, obj.read_bytes())


class MirroredTensorBoard:
    """A TensorBoardSink on a local mirror whose files go to ``remote`` on every close."""

    name = "TensorBoard"

    def __init__(self, local: Path, remote: ObjectPath) -> None:
        self.local, self.remote = local, remote
        _download(remote, local)
        self.sink = TensorBoardSink(local)
        self._uploaded: dict[Path, int] = {}  # file -> size at its last upload (event files only grow)

    def point(self, run: RunInfo, point: Point) -> None:
        self.sink.point(run, point)

    def final(self, run: RunInfo, record: RunRecord, record_path: Path) -> None:
        self.sink.final(run, record, record_path)

    def close(self) -> None:
        """Flush the writers, then upload each file that is new or changed since its last upload."""
        self.sink.close()
        for path in sorted(p for p in self.local.rglob("*") if p.is_file()):
            size = path.stat().st_size
            if self._uploaded.get(path) == size and not path.name.endswith(".json"):
                continue
            atomic_write_bytes(self.remote / path.relative_to(self.local).as_posix(), path.read_bytes())
            self._uploaded[path] = size
