"""Attention transfer (fspbench/methods/at.py) against an independent transcription of Zagoruyko and
Komodakis' code (szagoruyko/attention-transfer: utils.py's l2_normalize and distillation, cifar.py's at,
at_loss and the loss of its ``h``), and trained for real."""

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


# --- the authors' code, transcribed to current torch (not the module's formula) ------------------------------
# utils.py:  l2_normalize(x, dim=1, epsilon=1e-12) = x * x.pow(2).sum(dim).clamp(min=epsilon).rsqrt().expand_as(x)
#            distillation(y, t, labels, T, alpha) = kl_div(log_softmax(y/T), softmax(t/T)) * (T*T*2*alpha)
#                                                   + cross_entropy(y, labels) * (1 - alpha)
# cifar.py:  at(x) = l2_normalize(x.pow(2).mean(1).view(x.size(0), -1));  at_loss(x, y) = (at(x) - at(y)).pow(2).mean()
#            h: loss_groups = [v.sum() for v in loss_groups]
#               loss = distillation(y_s, y_t, targets, T, alpha) + opt.beta * sum(loss_groups)   (no 1/2)


def _their_l2_normalize(x: torch.Tensor, dim: int = 1, epsilon: float = 1e-12) -> torch.Tensor:
    return x * x.pow(2).sum(dim, keepdim=True).clamp(min=epsilon).rsqrt().expand_as(x)


def _their_at(x: torch.Tensor) -> torch.Tensor:
    return _their_l2_normalize(x.pow(2).mean(1).view(x.size(0), -1))


def _their_at_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (_their_at(x) - _their_at(y)).pow(2).mean()


def _their_transfer_term(g_s: list[torch.Tensor], g_t: list[torch.Tensor], beta: float) -> torch.Tensor:
    loss_groups = [_their_at_loss(x, y) for x, y in zip(g_s, g_t)]
    loss_groups = [v.sum() for v in loss_groups]
    return beta * sum(loss_groups)


def _their_distillation(y: torch.Tensor, teacher_scores: torch.Tensor, labels: torch.Tensor, T: float,
                        alpha: float) -> torch.Tensor:
    # their kl_div's default reduction: the mean over all elements (spelled out: "mean" warns in current torch)
    kl = F.kl_div(F.log_softmax(y / T, dim=1), F.softmax(teacher_scores / T, dim=1), reduction="sum") / y.numel()
    return kl * (T * T * 2.0 * alpha) + F.cross_entropy(y, labels) * (1.0 - alpha)


def _their_loss(y_s: torch.Tensor, y_t: torch.Tensor, targets: torch.Tensor, g_s: list[torch.Tensor],
                g_t: list[torch.Tensor], beta: float) -> torch.Tensor:
    """cifar.py's AT loss with --alpha 0 (their AT runs): cross-entropy + beta * sum of the groups' at_loss."""
    return _their_distillation(y_s, y_t, targets, 4.0, 0.0) + _their_transfer_term(g_s, g_t, beta)


def _random_sections(seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Three sections like a CIFAR ResNet's (channels double, maps halve); the teacher twice as wide."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(16, 8), (32, 4), (64, 2)]
    g_s = [torch.randn(5, c, h, h, generator=gen, dtype=torch.float64) for c, h in shapes]
    g_t = [torch.randn(5, 2 * c, h, h, generator=gen, dtype=torch.float64).relu() for c, h in shapes]
    return g_s, g_t


def _objective(beta: float | None, student: torch.nn.Module, teacher: torch.nn.Module, probe: torch.Tensor):
    options = {} if beta is None else {"options": {"beta": beta}}
    cfg = config_from_dict({"method": "at", "teacher": "t.json", "arch": "resnet8", **options})
    (spec,) = stage_specs(cfg)
    return spec.objective(StageContext(student, teacher, cfg, probe))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_maps_and_section_losses_are_the_authors(seed: int) -> None:
    g_s, g_t = _random_sections(seed)
    for a, b in zip(g_s, g_t):
        assert torch.allclose(attention_map(a), _their_at(a), rtol=1e-12, atol=1e-15)
        assert torch.allclose(attention_map(b), _their_at(b), rtol=1e-12, atol=1e-15)
        assert at_loss(a, b).item() == pytest.approx(_their_at_loss(a, b).item(), rel=1e-10)


@pytest.mark.parametrize("beta", [BETA, 10.0, 1.0])
def test_the_transfer_term_is_beta_times_the_sum_not_beta_half(beta: float) -> None:
    torch.manual_seed(0)
    student, teacher = build_model("resnet8", 10, 1), build_model("resnet14", 10, 1)
    objective = _objective(beta, student, teacher, torch.randn(2, 1, 28, 28))
    for seed in range(3):
        g_s, g_t = _random_sections(seed)
        term = objective.map_loss(g_s, g_t).item()
        theirs = _their_transfer_term(g_s, g_t, beta).item()
        sections = sum(_their_at_loss(a, b).item() for a, b in zip(g_s, g_t))
        assert sections > 0
        assert term == pytest.approx(theirs, rel=1e-6)
        assert term == pytest.approx(beta * sections, rel=1e-6)
        assert term != pytest.approx(beta / 2 * sections, rel=1e-3)  # the paper's beta/2 is not their code


def test_beta_defaults_to_the_papers_1000() -> None:
    torch.manual_seed(0)
    student, teacher = build_model("resnet8", 10, 1), build_model("resnet14", 10, 1)
    objective = _objective(None, student, teacher, torch.randn(2, 1, 28, 28))
    g_s, g_t = _random_sections(3)
    assert objective.map_loss(g_s, g_t).item() == pytest.approx(_their_transfer_term(g_s, g_t, 1000.0).item(),
                                                                rel=1e-6)


@pytest.mark.parametrize("beta", [BETA, 10.0])
def test_the_objective_is_the_authors_loss(beta: float) -> None:
    torch.manual_seed(0)
    student, teacher = build_model("resnet8", 10, 1), build_model("resnet14", 10, 1)
    teacher.eval()
    x, y = torch.randn(6, 1, 28, 28), torch.randint(0, 10, (6,))
    objective = _objective(beta, student, teacher, x[:2])
    loss = objective(x, y, 0.0)
    # independently: the section outputs by plain forward hooks, the loss by the authors' functions
    maps: dict[str, list[torch.Tensor]] = {"s": [], "t": []}
    hooks = [dict(student.named_modules())[n].register_forward_hook(lambda m, i, o: maps["s"].append(o.detach()))
             for n in section_names(student)]
    hooks += [dict(teacher.named_modules())[n].register_forward_hook(lambda m, i, o: maps["t"].append(o.detach()))
              for n in section_names(teacher)[: len(section_names(student))]]
    with torch.no_grad():
        logits = student(x)
        t_logits = teacher(x)
    for h in hooks:
        h.remove()
    assert len(maps["s"]) == 3
    g_s, g_t = [a.double() for a in maps["s"]], [b.double() for b in maps["t"]]
    expected = _their_loss(logits.double(), t_logits.double(), y, g_s, g_t, beta).item()
    ce = F.cross_entropy(logits, y).item()
    transfer = _their_transfer_term(g_s, g_t, beta).item()
    assert transfer > 1e-3 * ce  # the term is not negligible, so the next two assertions see its weight
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert loss.item() != pytest.approx(ce + transfer / 2, rel=1e-4)  # the old beta/2
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
