"""Shared fixtures: small real teachers trained once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import tiny

from fspbench.train import train_run


@pytest.fixture(scope="session")
def teacher_record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-14 teacher on real Fashion-MNIST (1,000 training images), trained once."""
    out = tmp_path_factory.mktemp("teacher")
    rec = train_run(tiny(arch="resnet14", role="teacher", steps=150, lr=0.05), out)
    assert rec["status"] == "ok"
    return out / f"{rec['run_id']}.json"


@pytest.fixture(scope="session")
def wide_teacher_record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A teacher twice as wide as the students: its channels do not match theirs."""
    out = tmp_path_factory.mktemp("wide")
    rec = train_run(tiny(arch="resnet8", width=2, role="teacher", steps=20), out)
    return out / f"{rec['run_id']}.json"
