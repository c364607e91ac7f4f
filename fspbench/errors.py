"""Errors that the CLI turns into one clear line: bad input (exit 2) and storage faults (exit 1)."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class BadInput(Exception):
    """Input the user can fix: a malformed config, an unknown key, missing data.

    The message is one line that names what is wrong and how to fix it; the CLI
    prints it as is and exits with code 2.
    """


class BadKey(BadInput):
    """Bad input at one key: ``key`` is its path inside the table it was read from (``fsp.pool``), ``what``
    says what is wrong and what is expected. The message is ``key: what``; a reader that knows where the
    table sits in a file re-raises it under that table's path (a benchmark file's ``students.g.fsp.pool``)."""

    def __init__(self, key: str, what: str) -> None:
        super().__init__(f"{key}: {what}")
        self.key, self.what = key, what


# ---------------------------------------------------------------- storage faults (exit 1, one line)

_ELSEWHERE = "pass --out/--results elsewhere"

# errno -> (what happened, what the user can do); the errnos a full, read-only or failing store gives
_CAUSES: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on device", f"free space or {_ELSEWHERE}"),
    errno.EDQUOT: ("disk quota exceeded", f"free space within the quota or {_ELSEWHERE}"),
    errno.EFBIG: ("file too large for this file system", f"{_ELSEWHERE}, on another file system"),
    errno.EROFS: ("read-only file system", f"{_ELSEWHERE}, on a writable file system"),
    errno.EACCES: ("permission denied", f"{_ELSEWHERE}, in a folder you can write to"),
    errno.EPERM: ("operation not permitted", f"{_ELSEWHERE}, in a folder you can write to"),
    errno.EIO: ("input/output error", f"check the device (dmesg) or {_ELSEWHERE}"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", f"{_ELSEWHERE}"),
    errno.EISDIR: ("it is a folder", f"{_ELSEWHERE}"),
    errno.ENAMETOOLONG: ("file name too long", f"{_ELSEWHERE}, with a shorter path"),
    errno.ESTALE: ("stale file handle (network file system)", f"remount it or {_ELSEWHERE}"),
}

# the errnos that the CLI also prints as one line when a bare OSError escapes (a write outside storage())
STORAGE_ERRNOS = frozenset(_CAUSES)


class StorageError(OSError):
    """Writing ``path`` (a file, folder or URI) failed for a reason of the storage, not of fspbench: a full
    disk or quota, a read-only or refused location, a failing device. ``cause`` is readable and ends with
    the errno's name (``no space left on device (ENOSPC)``), ``action`` says what the user can do. The CLI
    prints the message as one line and exits 1. Picklable with its fields, so it crosses Ray's processes.
    """

    def __init__(self, path: str, cause: str, action: str, code: int | None = None) -> None:
        super().__init__(f"cannot write {path}: {cause}; {action}")
        self.path, self.cause, self.action = str(path), cause, action
        self.errno = code  # OSError's errno, so errno checks still work

    def __reduce__(self) -> tuple[Any, ...]:  # OSError's own would call __init__ with the message alone
        return type(self), (self.path, self.cause, self.action, self.errno)

    def __str__(self) -> str:
        return str(self.args[0])


def storage_error(path: str | os.PathLike[str], err: OSError) -> StorageError:
    """``err`` (raised while writing ``path``) as a StorageError with a readable cause and what to do."""
    if isinstance(err, StorageError):
        return err
    code = err.errno
    if code is None:  # pyarrow (Ray's storage) and object-store clients put it only in the message
        found = re.search(r"\[errno (\d+)\]", str(err), re.IGNORECASE)
        code = int(found.group(1)) if found else None
    known = _CAUSES.get(code) if code is not None else None
    if known is not None:
        what, action = known
    else:  # another errno (or none, e.g. an object store's client): its own words
        what, action = (err.strerror or str(err) or type(err).__name__).lower(), _ELSEWHERE
    name = errno.errorcode.get(code, "") if code is not None else ""
    return StorageError(os.fspath(path), f"{what} ({name})" if name else what, action, code)


@contextmanager
def storage(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an OSError raised inside into a StorageError naming ``path`` (a local path or a URI such as
    ``s3://bucket/key``), so that the user reads which file could not be written and why, not a traceback."""
    try:
        yield
    except StorageError:
        raise
    except OSError as err:
        raise storage_error(path, err) from err
