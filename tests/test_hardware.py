"""Hardware detection and the bf16 rule: refused without native bf16 unless forced.

"Another kind of CPU" is this machine with torch's and oneDNN's kernels limited to AVX2
(ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2): the kernels really are the AVX2 ones, so
bf16 is emulated there exactly as on a CPU without AVX512-BF16.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import md_rows, run_cli, set_args

from fspbench.config import RunConfig
from fspbench.errors import BadInput
from fspbench.hardware import Hardware, check_precision, detect

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
SMALL = {"arch": "resnet8", "train_per_class": 10, "batch_size": 16, "steps": 2, "eval_every": 2,
         "eval_subset": 50, "device": "cpu"}


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_detect_matches_torch_and_cpuinfo() -> None:
    hw = detect("cpu")
    assert hw.cpu_capability == torch.backends.cpu.get_cpu_capability()
    has_bf16 = bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())
    assert hw.native_bf16 == (has_bf16 and hw.cpu_capability.startswith("AVX512"))
    assert hw.cpu_capability in hw.key() and hw.cpu_capability in hw.describe()


def _avx2_detect() -> dict:
    res = run_cli("perf", "--json", "--steps", "1", "--repeats", "1", env=AVX2)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.slow
def test_perf_under_avx2_kernels_says_bf16_is_not_native_and_times_it_once() -> None:
    figures = _avx2_detect()
    assert figures["cpu_capability"] == "AVX2"
    assert figures["bf16_native"] is False
    assert "timed once" in figures["bf16_note"] and figures["bf16_img_s"] > 0


def test_check_precision_rule() -> None:
    no = Hardware("cpu", "x", "AVX2", False, "the CPU has no AVX512-BF16 or AMX-BF16 instructions")
    yes = Hardware("cpu", "x", "AVX512", True, "the CPU has avx512_bf16")
    with pytest.raises(BadInput, match=r"^precision: .*force_bf16=true"):
        check_precision("bf16", False, no)
    check_precision("bf16", True, no)  # forced
    check_precision("bf16", False, yes)
    check_precision("fp32", False, no)


def test_force_bf16_is_not_part_of_the_run_id() -> None:
    assert RunConfig(precision="bf16", force_bf16=True).run_id() == RunConfig(precision="bf16").run_id()
    assert RunConfig(precision="bf16").run_id() != RunConfig().run_id()


def test_train_bf16_without_native_bf16_is_refused_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    res = run_cli("train", *set_args({**SMALL, "precision": "bf16"}), "--out", str(out), "--quiet", env=AVX2)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.strip().count("\n") == 0
    assert "precision: bf16" in res.stderr and "force_bf16=true" in res.stderr and "AVX2" in res.stderr
    assert not out.exists()


@pytest.mark.slow
def test_grid_skips_a_bf16_group_without_native_bf16_and_the_report_says_so(ray_cluster, tmp_path: Path) -> None:
    # the shared cluster's trials get the AVX2 caps from the driver (tune.FORWARDED_ENV)
    results, bench = tmp_path / "results", str(Path(__file__).parent / "benchmarks" / "bf16.toml")
    address = ("--address", ray_cluster["address"])
    res = run_cli("run", bench, "--results", str(results), "--quiet", *address, env={**ray_cluster["env"], **AVX2})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    notices = [x for x in res.stdout.splitlines() if "skipped (" in x]
    assert len(notices) == 1 and "group 'bf16' skipped (1 runs)" in notices[0] and "force_bf16" in notices[0]
    grid = json.loads((results / "grid.json").read_text())
    assert grid["runs"] == {"total": 2, "ok": 2, "diverged": 0, "failed": 0, "not_run": 0, "skipped": 1}
    assert grid["skipped"]["groups"] == ["bf16"] and grid["hardware"]["native_bf16"] is False
    assert grid["estimate"]["runs"] == 2 and grid["estimate"]["wall_time_s"] > 0
    records = [json.loads(p.read_text()) for p in (results / "runs").glob("*.json")]
    assert sorted(r["config"]["precision"] for r in records) == ["bf16", "fp32"]  # the forced group ran
    forced = next(r for r in records if r["config"]["precision"] == "bf16")
    assert forced["config"]["force_bf16"] is True and forced["status"] == "ok"
    hw = forced["env"]["hardware"]  # the trial itself ran on the capped kernels
    assert hw["cpu_capability"] == "AVX2" and hw["native_bf16"] is False and hw["onednn_max_isa"] == "AVX2"

    out = tmp_path / "report"
    rep = run_cli("report", str(results), "--out", str(out))
    assert rep.returncode == 0, rep.stderr
    text = (out / "report.md").read_text()
    assert "not run: no native bf16 on this machine" in text
    assert (out / "tables" / "precision_not_run.csv").read_text().startswith("group,runs,status\nbf16,1,")
    assert ["torch CPU capability", "AVX2"] in md_rows(text)
    # a second run trains nothing and still leaves the bf16 group out rather than failing it
    again = run_cli("run", bench, "--results", str(results), "--quiet", *address, env={**ray_cluster["env"], **AVX2})
    assert again.returncode == 0 and "0 to train" in again.stdout
    assert json.loads((results / "grid.json").read_text())["runs"]["failed"] == 0
