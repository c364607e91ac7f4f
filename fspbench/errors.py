"""Errors that the CLI turns into one clear line and exit code 2."""

from __future__ import annotations


class BadInput(Exception):
    """Input the user can fix: a malformed config, an unknown key, missing data.

    The message is one line that names what is wrong and how to fix it; the CLI
    prints it as is and exits with code 2.
    """
