"""``fspbench perf``: what a training step costs, against a bare PyTorch loop and the hardware's peak.

Every figure comes from one process, so ratios compare like with like on a noisy machine:

- fspbench_img_s: fspbench's own step (BatchStream + optimizer_step, the path ``fspbench train``
  takes) for ResNet-20 at batch 128 on Fashion-MNIST-shaped input, fp32;
- bare_img_s: a plain loop of the same model, batch and dtype on one fixed batch; loop_vs_bare;
- teacher_forward_img_s (ResNet-20 under inference_mode), student_ce_img_s (ResNet-8 cross-entropy
  step), fsp_step_img_s (a ResNet-20 -> ResNet-8 FSP stage-1 step), and
  fsp_overhead = t(FSP step) / (t(student CE step) + t(teacher forward));
- sgemm_gflops (fp32 matmul), train_gflops (ResNet-20 training FLOPs from
  torch.utils.flop_counter per second), fp32_fraction_of_peak = their ratio;
- bf16_img_s (the bare loop under bf16 autocast) and bf16_speedup = bf16 / fp32 throughput;
- peak_rss_mb of this process.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from fspbench.config import RunConfig
from fspbench.data import BatchStream, TaskData
from fspbench.methods import CrossEntropy, FSPObjective, StageContext, StageSpec
from fspbench.models import build_model
from fspbench.train import make_optimizer, optimizer_step

BATCH = 128
KEYS = ("fspbench_img_s", "bare_img_s", "loop_vs_bare", "teacher_forward_img_s", "student_ce_img_s",
        "fsp_step_img_s", "fsp_overhead", "sgemm_gflops", "train_gflops", "fp32_fraction_of_peak", "bf16_img_s",
        "bf16_speedup", "peak_rss_mb")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn: Callable[[], Any], device: torch.device, steps: int, warmup: int) -> float:
    """Median-free mean time of ``fn`` over ``steps`` calls after ``warmup`` calls, synchronised."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / steps


def synthetic_task(device: torch.device, n: int = 4096) -> TaskData:
    """Fashion-MNIST-shaped uint8 images (n, 1, 28, 28) and labels, so perf needs no data files."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    stat = torch.tensor([0.286 * 255]).view(1, 1, 1, 1), torch.tensor([0.353 * 255]).view(1, 1, 1, 1)
    return TaskData("synthetic", 10, 1, 28, stat[0].to(device), stat[1].to(device), x.to(device), y.to(device),
                    x[:512].to(device), y[:512].to(device), "synthetic")


def _bare_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               autocast: Any) -> None:
    with autocast:
        loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def measure(device: str = "cpu", steps: int = 20, warmup: int = 3) -> dict[str, float]:
    """All figures of the module docstring for ``device``; ``steps`` timed calls per figure."""
    dev = torch.device(device)
    torch.manual_seed(0)
    data = synthetic_task(dev)
    cfg = RunConfig(arch="resnet20", batch_size=BATCH, device=device)
    spec = StageSpec("main", 10**6, cfg.lr, cfg.milestones, CrossEntropy)
    out: dict[str, float] = {}

    # fspbench's own step, as train_run takes it
    model = build_model("resnet20", 10, 1).to(dev)
    stream = BatchStream(data, BATCH, 0)
    objective = CrossEntropy(StageContext(model, None, cfg, data.test_x[:2].float()))
    opt, sched = make_optimizer(list(model.parameters()), spec, cfg)
    t = seconds_per_call(lambda: optimizer_step(objective, opt, sched, *stream.next(), 0.0, nullcontext()),
                         dev, steps, warmup)
    out["fspbench_img_s"] = BATCH / t

    # a bare loop of the same model on one fixed batch
    x, y = stream.next()
    bare = build_model("resnet20", 10, 1).to(dev)
    bare_opt = torch.optim.SGD(bare.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    t_bare = seconds_per_call(lambda: _bare_step(bare, bare_opt, x, y, nullcontext()), dev, steps, warmup)
    out["bare_img_s"] = BATCH / t_bare
    out["loop_vs_bare"] = out["fspbench_img_s"] / out["bare_img_s"]

    bf16 = torch.autocast(dev.type, dtype=torch.bfloat16)
    t_bf16 = seconds_per_call(lambda: _bare_step(bare, bare_opt, x, y, bf16), dev, steps, warmup)
    out["bf16_img_s"] = BATCH / t_bf16
    out["bf16_speedup"] = out["bf16_img_s"] / out["bare_img_s"]

    # training FLOPs of one ResNet-20 step against the fp32 matmul peak
    with FlopCounterMode(display=False) as counter:
        _bare_step(bare, bare_opt, x, y, nullcontext())
    out["train_gflops"] = counter.get_total_flops() / t_bare / 1e9
    a = torch.randn(2048, 2048, device=dev)
    b = torch.randn(2048, 2048, device=dev)
    t_mm = seconds_per_call(lambda: torch.mm(a, b), dev, max(5, steps // 2), 2)
    out["sgemm_gflops"] = 2 * 2048**3 / t_mm / 1e9
    out["fp32_fraction_of_peak"] = out["train_gflops"] / out["sgemm_gflops"]

    # FSP stage 1: teacher ResNet-20 (frozen) -> student ResNet-8
    teacher = build_model("resnet20", 10, 1).to(dev).eval().requires_grad_(False)

    def teacher_forward() -> None:
        with torch.inference_mode():
            teacher(x)

    t_teacher = seconds_per_call(teacher_forward, dev, steps, warmup)
    student = build_model("resnet8", 10, 1).to(dev)
    ce = CrossEntropy(StageContext(student, None, cfg, x[:2]))
    ce_opt, ce_sched = make_optimizer(list(student.parameters()), spec, cfg)
    t_ce = seconds_per_call(lambda: optimizer_step(ce, ce_opt, ce_sched, x, y, 0.0, nullcontext()), dev, steps,
                            warmup)
    fsp = FSPObjective(StageContext(student, teacher, cfg, x[:2])).to(dev)
    fsp_opt, fsp_sched = make_optimizer(list(student.parameters()) + list(fsp.parameters()), spec, cfg)
    t_fsp = seconds_per_call(lambda: optimizer_step(fsp, fsp_opt, fsp_sched, x, y, 0.0, nullcontext()), dev,
                             steps, warmup)
    out["teacher_forward_img_s"] = BATCH / t_teacher
    out["student_ce_img_s"] = BATCH / t_ce
    out["fsp_step_img_s"] = BATCH / t_fsp
    out["fsp_overhead"] = t_fsp / (t_ce + t_teacher)

    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {k: round(out[k], 4) for k in KEYS}


def table(figures: dict[str, float]) -> str:
    """A readable two-column table of the figures."""
    width = max(map(len, figures))
    return "\n".join(f"{k:<{width}}  {v:>12,.3f}" for k, v in figures.items())
