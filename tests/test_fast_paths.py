"""What was optimised still computes the same thing: memory format, bf16, stage-long hooks, eval batches.

The speed of these paths is measured by ``fspbench perf``, not here.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny

from fspbench.data import BatchStream, eval_batches, load_task
from fspbench.features import FeatureCapture
from fspbench.fsp import fsp_loss
from fspbench.models import build_model
from fspbench.objectives import FSPObjective, HintObjective, StageContext
from fspbench.step import evaluate
from fspbench.train import train_run

CL = torch.channels_last


@pytest.fixture(scope="module")
def task():
    return load_task("fashion-mnist", train_per_class=50)


def _batch(task, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = BatchStream(task, n, 0).next()
    return x, y


@pytest.mark.parametrize("arch,channels,size", [("resnet20", 1, 28), ("resnet8", 3, 32), ("tv-resnet18", 3, 64)])
def test_channels_last_gives_the_same_outputs_and_gradients(arch: str, channels: int, size: int) -> None:
    torch.manual_seed(0)
    nchw = build_model(arch, 10, channels)
    nhwc = build_model(arch, 10, channels)
    nhwc.load_state_dict(nchw.state_dict())
    nhwc.to(memory_format=CL)
    x = torch.randn(8, channels, size, size)
    y = torch.arange(8) % 10
    out_a, out_b = nchw(x), nhwc(x.contiguous(memory_format=CL))
    assert nhwc.conv1.weight.is_contiguous(memory_format=CL)
    torch.testing.assert_close(out_b, out_a, rtol=1e-4, atol=1e-5)
    F.cross_entropy(out_a, y).backward()
    F.cross_entropy(out_b, y).backward()
    for (name, pa), pb in zip(nchw.named_parameters(), nhwc.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-3, atol=1e-5, msg=name)


def test_channels_last_batches_hold_the_same_pixels(task) -> None:
    rgb = replace(task, in_channels=3, train_x=task.train_x.repeat(1, 3, 1, 1), test_x=task.test_x.repeat(1, 3, 1, 1),
                  mean=task.mean.repeat(1, 3, 1, 1), std=task.std.repeat(1, 3, 1, 1))
    a = BatchStream(rgb, 16, 3).next()[0]
    b = BatchStream(rgb, 16, 3, memory_format=CL).next()[0]
    assert b.is_contiguous(memory_format=CL) and not a.is_contiguous(memory_format=CL)
    assert torch.equal(a, b)
    ev = eval_batches(rgb, memory_format=CL)
    assert ev[0][0].is_contiguous(memory_format=CL)
    assert torch.equal(torch.cat([x for x, _ in ev]), torch.cat([x for x, _ in eval_batches(rgb)]))


def test_bf16_and_fp32_losses_agree_on_a_fixed_batch(task) -> None:
    """bf16 autocast keeps ~3 significant digits: CE and FSP losses within 2% of fp32."""
    torch.manual_seed(0)
    student = build_model("resnet8", 10, 1)
    teacher = build_model("resnet14", 10, 1).eval().requires_grad_(False)
    x, y = _batch(task, 64)
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    ce32 = F.cross_entropy(student(x), y)
    with bf16:
        ce16 = F.cross_entropy(student(x), y)
    assert ce16.item() == pytest.approx(ce32.item(), rel=0.02)
    fsp = FSPObjective(StageContext(student, teacher, tiny(), x[:2]))
    l32 = fsp(x, y, 0.0)
    with bf16:
        l16 = fsp(x, y, 0.0)
    assert l32.item() > 0
    assert l16.item() == pytest.approx(l32.item(), rel=0.02)


def test_fsp_objective_equals_fsp_loss_on_captured_maps(task) -> None:
    """The objective computes the teacher's matrices under inference_mode: same loss as fsp_loss on both maps."""
    torch.manual_seed(0)
    student = build_model("resnet8", 10, 1)
    teacher = build_model("resnet14", 10, 1).eval().requires_grad_(False)
    x, y = _batch(task)
    obj = FSPObjective(StageContext(student, teacher, tiny(), x[:2]))
    with FeatureCapture(teacher, [p for pr in obj.t_pairs for p in pr]) as tc, torch.no_grad():
        teacher(x)
        t_maps = tc.pairs(obj.t_pairs)
    with FeatureCapture(student, [p for pr in obj.s_pairs for p in pr]) as sc:
        student(x)
        expected = fsp_loss(sc.pairs(obj.s_pairs), t_maps)
    loss = obj(x, y, 0.0)
    assert loss.requires_grad
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("objective", [FSPObjective, HintObjective])
def test_stage_long_hooks_give_the_per_step_losses_and_are_removed(objective, task) -> None:
    torch.manual_seed(0)
    student = build_model("resnet8", 10, 1)
    teacher = build_model("resnet14", 10, 1).eval().requires_grad_(False)
    x, y = _batch(task)
    obj = objective(StageContext(student, teacher, tiny(), x[:2]))
    per_call = [obj(x[i::2], y[i::2], 0.0) for i in range(2)]  # hooks added and removed on each call
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in (*student.modules(), *teacher.modules()))
    with obj.active():
        hooked = sum(bool(m._forward_hooks) for m in (*student.modules(), *teacher.modules()))
        assert hooked >= 2
        in_stage = [obj(x[i::2], y[i::2], 0.0) for i in range(2)]
        assert all(not cap.maps for cap in obj._caps)  # no step keeps the previous step's maps
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in (*student.modules(), *teacher.modules()))
    for a, b in zip(per_call, in_stage):
        assert b.item() == pytest.approx(a.item(), rel=1e-6)


@pytest.mark.slow
def test_evaluation_batch_size_does_not_change_the_result(task) -> None:
    torch.manual_seed(0)
    model = build_model("resnet8", 10, 1)
    off = contextlib.nullcontext()
    loss_a, acc_a = evaluate(model, eval_batches(task, batch_size=1000), off)
    loss_b, acc_b = evaluate(model, eval_batches(task, batch_size=256), off)
    assert acc_a == acc_b
    assert loss_b == pytest.approx(loss_a, rel=1e-5)


@pytest.mark.slow
def test_a_run_in_either_memory_format_learns_the_same(tmp_path) -> None:
    """Same seed, both formats: the curves agree up to rounding that training amplifies; distinct run ids."""
    cfg = tiny(steps=40)
    a = train_run(cfg, tmp_path / "nhwc")
    b = train_run(replace(cfg, channels_last=False), tmp_path / "nchw")
    assert a["run_id"] != b["run_id"]
    losses_a = [r["train_loss"] for r in a["curve"]]
    losses_b = [r["train_loss"] for r in b["curve"]]
    assert losses_a[0] == pytest.approx(losses_b[0], rel=0.01)  # mean of the first 20 steps
    assert losses_a[-1] == pytest.approx(losses_b[-1], rel=0.06)
    assert a["final"]["test_acc"] == pytest.approx(b["final"]["test_acc"], abs=0.05)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")
def test_gpu_run_bf16_channels_last_compiled(tmp_path) -> None:
    """The GPU path end to end: device-resident data, NHWC, bf16 autocast and torch.compile."""
    cfg = tiny(device="cuda", precision="bf16", compile=True, steps=60)
    rec = train_run(cfg, tmp_path)
    assert rec["status"] == "ok"
    assert rec["env"]["gpu"]
    assert rec["final"]["test_acc"] > 0.3
    fp32 = train_run(replace(cfg, precision="fp32", compile=False), tmp_path / "fp32")
    assert rec["final"]["test_acc"] == pytest.approx(fp32["final"]["test_acc"], abs=0.1)
