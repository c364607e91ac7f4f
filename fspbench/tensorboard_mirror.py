"""TensorBoard event files for results in a bucket: written on the driver into a local mirror, uploaded.

tensorboardX appends to its event files as points arrive, which an object store cannot do; so for
results at ``s3://bucket/prefix`` the driver writes them into its staging folder
(fspbench.staging) and, each time the sink is closed (after each Tune run and at the end), uploads
to ``s3://bucket/prefix/tensorboard/``, each as one whole object, every file that the bucket lacks or
holds in another version: one listing of the prefix per sync gives each object's size and ETag, so a
driver that starts again (which remembers nothing of its uploads) sends only what changed. A driver on
another machine first downloads what the bucket holds, so the sink's record of the last step written
per run (fspbench.tensorboard_sink) comes with it and a resumed grid writes no point twice.
``tensorboard --logdir s3://bucket/prefix/tensorboard`` (TensorBoard's S3 support, with the AWS variables) or
a copy of that prefix shows the curves.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from fspbench.io import atomic_write_bytes
from fspbench.store import Listed, ObjectPath
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


def _differs(path: Path, held: Listed | None) -> bool:
    """Whether the bucket lacks ``path`` or holds another version of it. An event file only grows (tensorboardX
    appends), so its size tells; any other file (the sink's fspbench.json, rewritten in place at the same size:
    step 200 after step 100) is compared by content too, against the object's ETag."""
    if held is None or held.size != path.stat().st_size:
        return True
    if "tfevents" in path.name:
        return False
    return held.etag not in _etags(path.read_bytes())


def _etags(data: bytes) -> set[str]:
    """The ETags S3 gives ``data`` uploaded whole: the MD5 of its bytes after one PutObject, or, after a multipart
    upload of one part (pyarrow's S3FileSystem writes every object so), the MD5 of that MD5 with "-1". Any other
    ETag (SSE-KMS, several parts) matches neither, so such a file, a few bytes, is uploaded again."""
    digest = hashlib.md5(data, usedforsecurity=False).digest()
    return {digest.hex(), hashlib.md5(digest, usedforsecurity=False).hexdigest() + "-1"}


class MirroredTensorBoard:
    """A TensorBoardSink on a local mirror whose files go to ``remote`` on every close."""

    name = "TensorBoard"

    def __init__(self, local: Path, remote: ObjectPath) -> None:
        self.local, self.remote = local, remote
        _download(remote, local)
        self.sink = TensorBoardSink(local)

    def point(self, run: RunInfo, point: Point) -> None:
        self.sink.point(run, point)

    def final(self, run: RunInfo, record: RunRecord, record_path: Path) -> None:
        self.sink.final(run, record, record_path)

    def close(self) -> None:
        """Flush the writers, then upload each file that the bucket lacks or holds in another version (one
        listing of the bucket for the whole sync)."""
        self.sink.close()
        held = self.remote.listing()
        for path in sorted(p for p in self.local.rglob("*") if p.is_file()):
            name = path.relative_to(self.local).as_posix()
            if _differs(path, held.get(name)):
                atomic_write_bytes(self.remote / name, path.read_bytes())
