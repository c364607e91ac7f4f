"""``fspbench perf``: what a training step costs, against a bare PyTorch loop and the hardware's peak.

Every figure comes from one process. All of them are timed in turn in each of ``repeats`` rounds;
a throughput is the median over rounds, and a ratio the median of the ratios within each round,
so the ratios compare like with like on a noisy machine:

- fspbench_img_s: fspbench's own step (``fspbench.step.build_step``: BatchStream + ``Stage.step`` in its
  default memory format, the step ``fspbench train`` takes) for ResNet-20 at batch 128 on
  Fashion-MNIST-shaped input (``data.synthetic_task``), fp32;
- bare_img_s: a plain loop of the same model, batch, dtype and memory format on one fixed batch;
  loop_vs_bare = their ratio;
- teacher_forward_img_s (ResNet-20 under inference_mode), student_ce_img_s (ResNet-8 cross-entropy
  step), fsp_step_img_s (a ResNet-20 -> ResNet-8 FSP stage-1 step, hooks held for the stage; both
  steps are the stages of one FSP run's ``build_step``), and
  fsp_overhead = t(FSP step) / (t(student CE step) + t(teacher forward));
- sgemm_gflops (fp32 matmul), train_gflops (ResNet-20 training FLOPs from torch.utils.flop_counter
  per second of fspbench's step), fp32_fraction_of_peak = their ratio;
- bf16_img_s (fspbench's step under bf16 autocast) and bf16_speedup = bf16 / fp32 throughput;
  bf16_native says whether the hardware has bf16 instructions (fspbench.hardware). Without them
  bf16 is emulated, 12x slower than fp32 on an AVX2 CPU, so it is timed once for BF16_SLOW_STEPS
  steps instead of in every round (perf then ends in under 3 minutes on any 2-core CPU);
- nchw_img_s: fspbench's step in NCHW, the evidence for channels_last as the default;
- peak_rss_mb of this process.

``packing(...)`` runs N such training loops as N processes sharing one device, as Ray places N
trials of ``gpu = 1/N`` on one GPU, and reports their total throughput.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from fspbench.claims import TREATMENT
from fspbench.config import RunConfig
from fspbench.data import BatchStream, TaskData, synthetic_task
from fspbench.hardware import detect
from fspbench.models import build_model
from fspbench.step import build_step

BATCH = 128
STEPS = 10**6  # the stages' length: no lr milestone falls inside a measurement
IMAGES = 4096  # synthetic Fashion-MNIST-shaped training images
BF16_SLOW_STEPS = 2  # timed bf16 steps (after one untimed) where bf16 is emulated
KEYS = ("fspbench_img_s", "bare_img_s", "loop_vs_bare", "teacher_forward_img_s", "student_ce_img_s",
        "fsp_step_img_s", "fsp_overhead", "sgemm_gflops", "train_gflops", "fp32_fraction_of_peak", "bf16_img_s",
        "bf16_speedup", "peak_rss_mb")
CL = torch.channels_last


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _warm(fn: Callable[[], Any], device: torch.device, calls: int) -> None:
    for _ in range(calls):
        fn()
    _sync(device)


def seconds_per_call(fn: Callable[[], Any], device: torch.device, steps: int, warmup: int = 0) -> float:
    """Mean time of ``fn`` over ``steps`` calls after ``warmup`` untimed calls, synchronised."""
    _warm(fn, device, warmup)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / steps


def _bare_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               autocast: Any) -> None:
    with autocast:
        loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


@dataclass
class Step:
    """One timed training step: ``run()`` does it; ``model`` and ``opt`` are what it trains."""

    run: Callable[[], Any]
    model: torch.nn.Module
    opt: torch.optim.Optimizer


def _data(device: torch.device) -> TaskData:
    return synthetic_task("fashion-mnist", IMAGES, device=device)


def fspbench_step(device: torch.device, *, arch: str = "resnet20", channels_last: bool = True,
                  precision: str = "fp32", compile: bool = False) -> Step:
    """One training step of ``fspbench train`` (batch drawn and augmented, CE, SGD, lr schedule) of a scratch
    run with these settings (seed 0), built by ``fspbench.step.build_step`` as train builds it."""
    cfg = RunConfig(arch=arch, batch_size=BATCH, steps=STEPS, device=device.type, channels_last=channels_last,
                    precision=precision, compile=compile)
    step = build_step(cfg, None, device, data=_data(device))
    stage, stream = step.stages[0], step.stream
    return Step(lambda: stage.step(*stream.next(), 0.0), step.student, stage.opt)


def _fsp_parts(dev: torch.device, data: TaskData, x: torch.Tensor,
               y: torch.Tensor) -> dict[str, tuple[Callable[[], Any], Any]]:
    """The teacher's forward, the student's CE step and the FSP stage-1 step, each with the context held
    while it is timed: the two stages of an FSP run (``build_step``) of a student ResNet-8 with a frozen
    teacher ResNet-20, as train_run holds them (the hooks are placed once for the stage, so they are in
    place only while FSP is timed), on the batch (x, y)."""
    cfg = RunConfig(arch="resnet8", method=TREATMENT, batch_size=BATCH, steps=STEPS, init_steps=STEPS, device=dev.type)
    step = build_step(cfg, build_model("resnet20", 10, 1), dev, data=data)
    fsp, ce, teacher = step.stages[0], step.stages[1], step.teacher
    assert teacher is not None

    def teacher_forward() -> None:
        with torch.inference_mode():
            teacher(x)

    return {
        "teacher": (teacher_forward, nullcontext),
        "student_ce": (lambda: ce.step(x, y, 0.0), nullcontext),
        "stage1": (lambda: fsp.step(x, y, 0.0), fsp.objective.active),
    }


def measure(device: str = "cpu", steps: int = 20, warmup: int = 3, repeats: int = 5,
            compile: bool = False) -> dict[str, float]:
    """All figures of the module docstring for ``device``: medians over ``repeats`` rounds of ``steps`` calls."""
    dev = torch.device(device)
    data = _data(dev)
    x, y = BatchStream(data, BATCH, 1, memory_format=CL).next()

    # (step, context held while it is timed); compared figures share network instances, since two
    # instances of one network can differ by several percent in speed (memory placement)
    own = fspbench_step(dev)
    hw = detect(dev.type)
    bf16_step = fspbench_step(dev, precision="bf16").run
    timed: dict[str, tuple[Callable[[], Any], Any]] = {
        "fspbench": (own.run, nullcontext),
        "bare": (lambda: _bare_step(own.model, own.opt, x, y, nullcontext()), nullcontext),  # one fixed batch
        "nchw": (fspbench_step(dev, channels_last=False).run, nullcontext),
    }
    if hw.native_bf16:
        timed["bf16"] = (bf16_step, nullcontext)
    if compile:
        timed["compiled"] = (fspbench_step(dev, compile=True).run, nullcontext)

    timed.update(_fsp_parts(dev, data, x, y))
    a = torch.randn(2048, 2048, device=dev)
    b = torch.randn(2048, 2048, device=dev)
    timed["sgemm"] = (lambda: torch.mm(a, b), nullcontext)

    times: dict[str, list[float]] = {k: [] for k in timed}
    for name, (fn, ctx) in timed.items():  # warm-up (compilation, allocator, caches)
        with ctx():
            _warm(fn, dev, warmup + (10 if name == "compiled" else 0))
    for r in range(repeats):  # rounds: every figure timed in turn, the order reversed every other round
        for name in list(timed)[:: 1 if r % 2 == 0 else -1]:
            fn, ctx = timed[name]
            with ctx():
                times[name].append(seconds_per_call(fn, dev, steps if name != "sgemm" else max(5, steps // 2)))
    if not hw.native_bf16:  # emulated: one short timing, beside the rounds
        times["bf16"] = [seconds_per_call(bf16_step, dev, BF16_SLOW_STEPS, warmup=1)] * repeats
    t = {k: statistics.median(v) for k, v in times.items()}

    def ratio(f: Callable[[dict[str, float]], float]) -> float:
        """Median over rounds of a ratio taken within each round, where its terms ran minutes apart at most."""
        return statistics.median(f({k: v[r] for k, v in times.items()}) for r in range(repeats))

    out: dict[str, float] = {
        "fspbench_img_s": BATCH / t["fspbench"],
        "bare_img_s": BATCH / t["bare"],
        "teacher_forward_img_s": BATCH / t["teacher"],
        "student_ce_img_s": BATCH / t["student_ce"],
        "fsp_step_img_s": BATCH / t["stage1"],
        "fsp_overhead": ratio(lambda r: r["stage1"] / (r["student_ce"] + r["teacher"])),
        "bf16_img_s": BATCH / t["bf16"],
        "nchw_img_s": BATCH / t["nchw"],
        "sgemm_gflops": 2 * 2048**3 / t["sgemm"] / 1e9,
    }
    out["loop_vs_bare"] = ratio(lambda r: r["bare"] / r["fspbench"])
    out["bf16_speedup"] = ratio(lambda r: r["fspbench"] / r["bf16"])
    out["channels_last_speedup"] = ratio(lambda r: r["nchw"] / r["fspbench"])
    if compile:
        out["compiled_img_s"] = BATCH / t["compiled"]
        out["compile_speedup"] = ratio(lambda r: r["fspbench"] / r["compiled"])
    with FlopCounterMode(display=False) as counter:
        _bare_step(own.model, own.opt, x, y, nullcontext())
    flops = counter.get_total_flops()
    out["train_gflops"] = flops / t["fspbench"] / 1e9
    out["fp32_fraction_of_peak"] = ratio(lambda r: flops / r["fspbench"] / (2 * 2048**3 / r["sgemm"]))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    out["repeats"], out["steps"] = repeats, steps
    out["device_name"] = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    out["cpu_capability"] = hw.cpu_capability
    out["bf16_native"] = hw.native_bf16
    out["bf16_note"] = hw.bf16_source + ("" if hw.native_bf16 else f"; bf16 timed once for {BF16_SLOW_STEPS} steps")
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


# ---------------------------------------------------------------- several trials on one device


def packing(device: str, counts: list[int], seconds: float = 20.0, precision: str = "fp32",
            threads: int | None = None) -> list[dict[str, Any]]:
    """Total img/s of N concurrent training processes on one device, for each N in ``counts``.

    Each process trains fspbench's ResNet-20 step; once all have warmed up they are started
    together and count the steps they finish in the same ``seconds`` window.
    """
    rows = []
    cores = os.cpu_count() or 1
    for n in counts:
        per = threads or max(1, cores // n)
        cmd = [sys.executable, "-m", "fspbench.perf", "--worker", device, str(seconds), precision, str(per)]
        procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(n)]
        for p in procs:  # each says "ready" after its warm-up
            if p.stdout is None or p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a --packing worker failed to start: {' '.join(cmd)}")
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        total = sum(r["img_s"] for r in results)
        rows.append({"trials": n, "threads_each": per, "total_img_s": round(total, 1),
                     "per_trial_img_s": round(total / n, 1), "precision": precision})
    base = rows[0]["total_img_s"] if rows else 1.0
    for r in rows:
        r["vs_first"] = round(r["total_img_s"] / base, 3)
    return rows


def _worker(device: str, seconds: float, precision: str, threads: int) -> None:
    torch.set_num_threads(threads)
    dev = torch.device(device)
    step = fspbench_step(dev, precision=precision).run
    _warm(step, dev, 5)
    print("ready", flush=True)
    sys.stdin.readline()  # "go": every worker starts its window together
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
        if n % 10 == 0:
            _sync(dev)
    _sync(dev)
    print(json.dumps({"img_s": n * BATCH / (time.perf_counter() - t0)}), flush=True)


def table(figures: dict[str, Any]) -> str:
    """A readable two-column table of the figures."""
    width = max(map(len, figures))
    return "\n".join(f"{k:<{width}}  {v:>12,.3f}" if isinstance(v, (int, float)) and not isinstance(v, bool)
                     else f"{k:<{width}}  {v!s:>12}"
                     for k, v in figures.items())


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker(sys.argv[2], float(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
