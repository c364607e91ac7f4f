"""The perf command's figures exist and hang together; --packing runs real concurrent trainers."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli

from fspbench.perf import KEYS


@pytest.mark.slow
def test_perf_json_has_every_figure() -> None:
    res = run_cli("perf", "--json", "--steps", "1", "--repeats", "1")
    assert res.returncode == 0, res.stderr
    figures = json.loads(res.stdout)
    assert set(KEYS) <= set(figures)
    assert all(v > 0 for v in figures.values() if isinstance(v, (int, float)) and not isinstance(v, bool))
    assert isinstance(figures["bf16_native"], bool) and figures["cpu_capability"]
    # one round: the ratios are the ratios of the throughputs
    assert figures["loop_vs_bare"] == pytest.approx(figures["fspbench_img_s"] / figures["bare_img_s"], rel=1e-3)
    assert figures["bf16_speedup"] == pytest.approx(figures["bf16_img_s"] / figures["fspbench_img_s"], rel=1e-3)


@pytest.mark.slow
def test_perf_packing_runs_concurrent_trainers() -> None:
    res = run_cli("perf", "--packing", "1,2", "--seconds", "1", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["trials"] for r in rows] == [1, 2]
    assert all(r["total_img_s"] > 0 for r in rows)
    assert rows[1]["per_trial_img_s"] == pytest.approx(rows[1]["total_img_s"] / 2, rel=1e-3)


@pytest.mark.parametrize("bad", ["0,1", "a,b", ""])
def test_perf_bad_packing_is_one_line_exit_2(bad: str) -> None:
    res = run_cli("perf", "--packing", bad)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "--packing" in res.stderr
