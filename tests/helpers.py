"""Helpers shared by the tests: tiny real run settings and the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from fspbench.config import RunConfig

# Small real runs: Fashion-MNIST with 100 training images per class, the full test set at the end.
TINY = dict(train_per_class=100, batch_size=32, eval_every=20, eval_subset=500)


def tiny(**changes) -> RunConfig:
    return RunConfig(**{**TINY, "arch": "resnet8", "steps": 40, **changes})


def set_args(cfg: dict) -> list[str]:
    """--set arguments for the CLI from a flat dict."""
    out: list[str] = []
    for k, v in cfg.items():
        out += ["--set", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    return out


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real command in a subprocess (``python -m fspbench.cli`` is the console script's code path)."""
    return subprocess.run(
        [sys.executable, "-m", "fspbench.cli", *args], capture_output=True, text=True, timeout=600,
        env={**os.environ, **(env or {})}, cwd=cwd,
    )


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
