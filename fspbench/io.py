"""Atomic file writes and content hashes: a crash never leaves a half-written file behind.

A path may also be an object in a bucket (fspbench.store.ObjectPath): it is written by one upload of
the full bytes, which S3 makes visible whole or not at all.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

from fspbench.errors import storage
from fspbench.store import ObjectPath


def atomic_write_bytes(path: str | os.PathLike[str] | ObjectPath, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path`` (an object
    in a bucket: one upload of ``data``).

    A storage fault (full disk or quota, read-only or refused location) raises errors.StorageError naming
    ``path``, with the temporary file removed: the target is either the old file or the whole new one.
    """
    if isinstance(path, ObjectPath):
        with storage(str(path)):
            path.write_bytes(data)
        return
    path = Path(path)
    with storage(path):
        _write_replace(path, data)


def _write_replace(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique name beside the target (same file system, so the rename is atomic); "x" mode
    # honours the umask, unlike mkstemp's 0600, since results are meant to be shared
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        # lexists first: a read-only file system refuses even the unlink of a file that was never made
        if os.path.lexists(tmp):
            tmp.unlink()
        raise


def atomic_write_json(path: str | os.PathLike[str] | ObjectPath, obj: Any) -> None:
    """JSON with sorted keys and a trailing newline, written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n").encode())


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> str:
    """torch.save through memory, written atomically; returns the file's sha256."""
    import torch  # here: the report and the analysis use this module without torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str] | ObjectPath) -> str:
    if isinstance(path, ObjectPath):
        return hashlib.sha256(path.read_bytes()).hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def record_digest(record: dict[str, Any]) -> str:
    """sha256 of a run record's canonical JSON, its own ``sha256`` field left out."""
    body = {k: v for k, v in record.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode()).hexdigest()


def write_record(path: str | os.PathLike[str] | ObjectPath, record: dict[str, Any]) -> None:
    """Write a run record atomically with its own checksum, so an altered copy is detected."""
    atomic_write_json(path, {**record, "sha256": record_digest(record)})


def record_intact(record: dict[str, Any]) -> bool:
    """True when the record carries its checksum and it matches. A record without one is not intact: every
    writer adds it, so taking it out would otherwise be a way to pass an edited record."""
    return "sha256" in record and record["sha256"] == record_digest(record)
