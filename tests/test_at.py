"""Attention transfer (fspbench/methods/at.py) against an independent computation of Zagoruyko and
Komodakis' loss, and trained for real."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import tiny

from fspbench import methods
from fspbench.config import config_from_dict
from fspbench.errors import BadInput
from fspbench.methods.at import BETA, at_loss, attention_map
from fspbench.models import build_model, section_names
from fspbench.objectives import StageContext, stage_specs
from fspbench.train import train_run


def _loop_at_loss(s: np.ndarray, t: np.ndarray) -> float:
    """mean over examples and positions of (q_s - q_t)^2, q = channel mean of a^2 over its L2 norm, by loops."""
    total, count = 0.0, 0
    for b in range(s.shape[0]):
        qs = np.array([[sum(s[b, c, i, j] ** 2 for c in range(s.shape[1])) / s.shape[1]
                        for j in range(s.shape[3])] for i in range(s.shape[2])]).ravel()
        qt = np.array([[sum(t[b, c, i, j] ** 2 for c in range(t.shape[1])) / t.shape[1]
                        for j in range(t.shape[3])] for i in range(t.shape[2])]).ravel()
        qs, qt = qs / np.linalg.norm(qs), qt / np.linalg.norm(qt)
        total += float(((qs - qt) ** 2).sum())
        count += qs.size
    return total / count


def test_attention_map_and_loss_match_a_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 4, 5, 6, generator=gen), torch.randn(3, 8, 5, 6, generator=gen)  # channels may differ
    q = attention_map(s)
    assert q.shape == (3, 30)
    assert torch.allclose(q.norm(dim=1), torch.ones(3))  # unit L2 norm per example
    by_einsum = torch.einsum("bchw,bchw->bhw", s, s).reshape(3, -1) / 4
    assert torch.allclose(q, by_einsum / by_einsum.norm(dim=1, keepdim=True))
    assert at_loss(s, t).item() == pytest.approx(_loop_at_loss(s.double().numpy(), t.double().numpy()), rel=1e-5)
    assert at_loss(s, s).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(BadInput, match="maps of equal size"):
        at_loss(s, torch.randn(3, 4, 4, 6))


@pytest.mark.parametrize("beta", [BETA, 10.0])
def test_the_objective_is_cross_entropy_plus_beta_half_the_section_losses(beta: float) -> None:
    torch.manual_seed(0)
    student, teacher = build_model("resnet8", 10, 1), build_model("resnet14", 10, 1)
    teacher.eval()
    cfg = config_from_dict({"method": "at", "teacher": "t.json", "arch": "resnet8", "options": {"beta": beta}})
    x, y = torch.randn(6, 1, 28, 28), torch.randint(0, 10, (6,))
    (spec,) = stage_specs(cfg)
    objective = spec.objective(StageContext(student, teacher, cfg, x[:2]))
    loss = objective(x, y, 0.0)
    # independently: the section outputs by plain forward hooks, the loss by loops
    maps: dict[str, list[torch.Tensor]] = {"s": [], "t": []}
    hooks = [dict(student.named_modules())[n].register_forward_hook(lambda m, i, o: maps["s"].append(o.detach()))
             for n in section_names(student)]
    hooks += [dict(teacher.named_modules())[n].register_forward_hook(lambda m, i, o: maps["t"].append(o.detach()))
              for n in section_names(teacher)[: len(section_names(student))]]
    with torch.no_grad():
        logits = student(x)
        teacher(x)
    for h in hooks:
        h.remove()
    sections = sum(_loop_at_loss(a.double().numpy(), b.double().numpy()) for a, b in zip(maps["s"], maps["t"]))
    expected = F.cross_entropy(logits, y).item() + beta / 2 * sections
    assert len(maps["s"]) == 3
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    loss.backward()  # the loss reaches the student's weights, not the frozen teacher's
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_its_settings_are_its_own() -> None:
    m = methods.get("at")
    assert m.needs_teacher and m.label == "AT" and m.settings == {"beta": 1000.0}
    with pytest.raises(BadInput, match="did you mean options.beta"):
        config_from_dict({"method": "at", "teacher": "t.json", "options": {"betta": 1}})
    with pytest.raises(BadInput, match="options.beta: expected a float"):
        config_from_dict({"method": "at", "teacher": "t.json", "options": {"beta": "high"}})
    with pytest.raises(BadInput, match="method 'scratch' has no such setting"):
        config_from_dict({"method": "scratch", "options": {"beta": 1}})
    a = config_from_dict({"method": "at", "teacher": "t.json"})
    b = config_from_dict({"method": "at", "teacher": "t.json", "options": {"beta": 10}})
    assert a.run_id("t") != b.run_id("t")  # the setting changes the run, so its id


@pytest.mark.slow
def test_an_at_student_trains_on_real_data(teacher_record, tmp_path) -> None:
    rec = train_run(tiny(method="at", teacher=str(teacher_record), steps=60, eval_every=20), tmp_path)
    assert rec["status"] == "ok" and [s["name"] for s in rec["stages"]] == ["main"]
    losses = [r["train_loss"] for r in rec["curve"]]
    assert losses[-1] < losses[0]
    assert rec["final"]["test_acc"] > 0.3  # ten classes: chance is 0.1
