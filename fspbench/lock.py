"""One runner per results folder: an advisory lock that the kernel drops when its holder dies."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

from fspbench.errors import BadInput
from fspbench.store import Location, ObjectPath

if TYPE_CHECKING:
    from fspbench.lease import ObjectLock

LOCK_NAME = ".fspbench.lock"


def _write_holder(fd: int) -> None:
    """Record who holds the lock in the lock file itself, for the message a second runner gets."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                  f"{datetime.now(UTC).isoformat(timespec='seconds')}\n".encode(), 0)


class ResultsLock:
    """An exclusive ``filelock.FileLock`` on ``root/.fspbench.lock``, taken without waiting.

    On Linux FileLock is a kernel ``flock`` on the open file, so a killed runner (SIGKILL included)
    never leaves a stale lock behind: the next ``fspbench run`` can always take it. The file stays
    (``preserve_lock_file``, which also rules out filelock's soft fallback) and says who held it
    last, for the message a second runner gets.
    """

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / LOCK_NAME
        self._lock = FileLock(self.path, timeout=0, thread_local=False, preserve_lock_file=True,
                              on_acquired=_write_holder)

    def acquire(self) -> None:
        """Take the lock (creating the folder if needed) or raise BadInput at once."""
        if self._lock.is_locked:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            try:
                holder = self.path.read_text(errors="replace")[:200].strip()
            except OSError:
                holder = ""
            raise BadInput(f"{self.path.parent}: in use by another fspbench run ({holder or 'another process'}); "
                           "wait for it to end or pass another --results folder") from None

    def acquire_if_exists(self) -> None:
        """Take the lock now if the folder exists (refuse a second runner before any slow work)."""
        if self.path.parent.is_dir():
            self.acquire()

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)

    def __enter__(self) -> ResultsLock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def results_lock(root: Location) -> ResultsLock | ObjectLock:
    """The lock of a results location: a kernel lock for a folder, a lease-held lock object in a bucket
    (fspbench.lease)."""
    if isinstance(root, ObjectPath):
        from fspbench.lease import ObjectLock  # boto3: only for results in a bucket

        return ObjectLock(root)
    return ResultsLock(root)
