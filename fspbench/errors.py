"""Errors that the CLI turns into one clear line and exit code 2."""

from __future__ import annotations


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
