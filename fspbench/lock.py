"""One runner per results folder: an advisory lock that the kernel drops when its holder dies."""

from __future__ import annotations

import fcntl
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from fspbench.errors import BadInput

LOCK_NAME = ".fspbench.lock"


class ResultsLock:
    """An exclusive ``flock`` on ``root/.fspbench.lock``.

    flock belongs to the open file, so a killed runner (SIGKILL included) never leaves a stale
    lock behind: the next ``fspbench run`` can always take it. The file itself stays and says who
    held it last, for the message a second runner gets.
    """

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / LOCK_NAME
        self._fh: int | None = None

    def acquire(self) -> None:
        """Take the lock (creating the folder if needed) or raise BadInput at once."""
        if self._fh is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise BadInput(f"{self.path.parent}: in use by another fspbench run ({holder}); wait for it to end "
                           "or pass another --results folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{datetime.now(UTC).isoformat(timespec='seconds')}\n".encode())
        self._fh = fd

    def acquire_if_exists(self) -> None:
        """Take the lock now if the folder exists (refuse a second runner before any slow work)."""
        if self.path.parent.is_dir():
            self.acquire()

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            os.close(self._fh)
            self._fh = None

    def __enter__(self) -> ResultsLock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
