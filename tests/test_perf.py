"""The perf command's figures exist; bf16 autocast agrees with fp32 on a fixed batch."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from helpers import run_cli

from fspbench.models import build_model
from fspbench.perf import KEYS


def test_bf16_and_fp32_losses_agree_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = build_model("resnet20", 10, 1).eval()
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    with torch.no_grad():
        fp32 = F.cross_entropy(model(x), y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = F.cross_entropy(model(x).float(), y)
    assert bf16.item() == pytest.approx(fp32.item(), rel=0.02)


def test_perf_json_has_every_figure() -> None:
    res = run_cli("perf", "--json", "--steps", "1")
    assert res.returncode == 0, res.stderr
    figures = json.loads(res.stdout)
    assert set(KEYS) <= set(figures)
    assert all(v > 0 for v in figures.values())
    assert figures["loop_vs_bare"] == pytest.approx(figures["fspbench_img_s"] / figures["bare_img_s"], rel=1e-3)
