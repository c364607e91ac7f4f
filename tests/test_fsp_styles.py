"""fsp.style against each public implementation's published semantics, on real networks in float64.

Every reference below is a plain loop written from the upstream source named in its docstring; it
steps through the network by hand (``_walk``) instead of using fspbench.features, so a wrong pair
layout, pooling, normalisation, distance or pair combination makes the comparison fail.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fspbench.config import FSPSettings, RunConfig, config_from_dict
from fspbench.errors import BadInput
from fspbench.models import build_model
from fspbench.objectives import FSPObjective, StageContext

SECTIONS = ("layer1", "layer2", "layer3")

# (teacher, student, input shape C x H x W): equal and unequal depths, 3- and 1-channel inputs; the
# 30 x 30 input gives sections of 30, 15 and 8 pixels, so adaptive pooling has uneven windows
CASES = [
    ("resnet20", "resnet8", (3, 32, 32)),
    ("resnet20", "resnet14", (3, 32, 32)),
    ("resnet14", "resnet8", (1, 28, 28)),
    ("resnet14", "resnet14", (1, 30, 30)),
]


def _net(arch: str, in_channels: int, seed: int) -> nn.Module:
    """A CIFAR ResNet in float64, eval mode, with random batch-norm statistics (so BN is no identity)."""
    torch.manual_seed(seed)
    model = build_model(arch, 10, in_channels).double().eval()
    gen = torch.Generator().manual_seed(seed + 100)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=gen, dtype=torch.float64))
            m.running_var.copy_(0.5 + torch.rand(n, generator=gen, dtype=torch.float64))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=gen, dtype=torch.float64))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=gen, dtype=torch.float64))
    return model


@torch.no_grad()
def _walk(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The forward pass stepped through by hand. Keys: "stem" (after its ReLU), "<section>" (its output),
    "<section>.<b>.in" (input of block b), "<section>.first" (first block's first activation)."""
    maps: dict[str, torch.Tensor] = {}
    h = torch.relu(model.bn1(model.conv1(x)))
    maps["stem"] = h
    for name in SECTIONS:
        for b, block in enumerate(getattr(model, name)):
            maps[f"{name}.{b}.in"] = h
            if b == 0:
                maps[f"{name}.first"] = torch.relu(block.bn1(block.conv1(h)))
            h = block(h)
        maps[name] = h
    return maps


def _gram(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """G[b, i, j] = sum over positions of first[b, i] * second[b, j] / positions; equal sizes only."""
    assert first.shape[2:] == second.shape[2:]
    hw = first.shape[2] * first.shape[3]
    return torch.einsum("bihw,bjhw->bij", first, second) / hw


def _ref_paper(ms: dict, mt: dict, pool: str = "max") -> float:
    """Yim et al. 2017, equations 1 and 2: per section (first block's first activation, section output);
    the larger map max-pooled; (1/N) sum over examples, sum over pairs of ||G_T - G_S||_2^2, lambda = 1."""
    total = 0.0
    for name in SECTIONS:
        a_s, b_s, a_t, b_t = ms[f"{name}.first"], ms[name], mt[f"{name}.first"], mt[name]
        assert a_s.shape[2:] == b_s.shape[2:]  # this layout never pools
        d = _gram(a_s, b_s) - _gram(a_t, b_t)
        total += sum(float((d[n] ** 2).sum()) for n in range(d.shape[0])) / d.shape[0]
    return total


def _ref_repdistiller(ms: dict, mt: dict, pool: str = "avg") -> float:
    """HobbitLong/RepDistiller distiller_zoo/FSP.py on the maps of models/resnet.py (stem after ReLU, then
    each section's output): consecutive maps (bottom, top); the taller one adaptive-average-pooled to the
    other's side; matrix = mean over positions of top_i * bottom_j; per pair mean of squared differences
    over all B x m x n entries; helper/pretrain.py sums the pair losses."""
    pool_fn = F.adaptive_avg_pool2d if pool == "avg" else F.adaptive_max_pool2d
    keys = ["stem", *SECTIONS]
    total = 0.0
    for lo, hi in zip(keys[:-1], keys[1:]):
        mats = []
        for maps in (ms, mt):
            bot, top = maps[lo], maps[hi]
            side = min(bot.shape[2], top.shape[2])
            if bot.shape[2] > side:
                bot = pool_fn(bot, (side, side))
            if top.shape[2] > side:
                top = pool_fn(top, (side, side))
            mats.append(_gram(top, bot))  # (B, C_top, C_bot): RepDistiller's orientation
        d = mats[0] - mats[1]
        total += float((d**2).sum()) / d.numel()
    return total


def _ref_kdzoo(ms: dict, mt: dict, pool: str = "avg") -> float:
    """AberHu/Knowledge-Distillation-Zoo kd_losses/fsp.py with train_kd.py: the pairs (stem, rb1), (rb1, rb2),
    (rb2, rb3) of post-ReLU maps; the first map average-pooled to the second's size when taller;
    F.mse_loss of the matrices (mean over B x m x n); the three pair losses added and divided by 3."""
    keys = ["stem", *SECTIONS]
    losses = []
    for lo, hi in zip(keys[:-1], keys[1:]):
        mats = []
        for maps in (ms, mt):
            fm1, fm2 = maps[lo], maps[hi]
            if fm1.shape[2] > fm2.shape[2]:
                fm1 = F.adaptive_avg_pool2d(fm1, fm2.shape[2:])
            mats.append(_gram(fm1, fm2))
        losses.append(float(((mats[0] - mats[1]) ** 2).mean()))
    return sum(losses) / 3.0


def _ref_torchdistill(ms: dict, mt: dict, pool: str = "max") -> float:
    """yoshitomo-matsubara/torchdistill losses/mid_level.py FSPLoss with its ResNet-34 -> ResNet-18 config:
    pairs (input of layer1, output of layer1), (input of layer2.1, output of layer2), ...; the larger map
    adaptive-max-pooled; matrix = first @ second^T / hw; per pair the L2 norms over dim 1 (the first map's
    channels) summed over the batch and the second map's channels; pairs summed, then divided by B."""
    firsts = ["layer1.0.in", "layer2.1.in", "layer3.1.in"]
    total, batch = 0.0, ms["stem"].shape[0]
    for first, second in zip(firsts, SECTIONS):
        mats = []
        for maps in (ms, mt):
            a, b = maps[first], maps[second]
            h, w = min(a.shape[2], b.shape[2]), min(a.shape[3], b.shape[3])
            if a.shape[2:] != (h, w):
                a = F.adaptive_max_pool2d(a, (h, w))
            if b.shape[2:] != (h, w):
                b = F.adaptive_max_pool2d(b, (h, w))
            mats.append(_gram(a, b))
        d = mats[0] - mats[1]  # (B, m, n)
        total += sum(float(torch.sqrt((d[n, :, j] ** 2).sum())) for n in range(d.shape[0]) for j in range(d.shape[2]))
    return total / batch


REFERENCES = {"paper": _ref_paper, "repdistiller": _ref_repdistiller, "kdzoo": _ref_kdzoo,
              "torchdistill": _ref_torchdistill}


def _objective_loss(teacher: nn.Module, student: nn.Module, x: torch.Tensor, fsp: FSPSettings) -> float:
    cfg = RunConfig(method="fsp", teacher="t.json", fsp=fsp)
    obj = FSPObjective(StageContext(student, teacher, cfg, x[:2]))
    return obj(x, torch.zeros(x.shape[0], dtype=torch.long), 0.0).item()


def _setup(t_arch: str, s_arch: str, shape: tuple[int, int, int]) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    teacher, student = _net(t_arch, shape[0], 1), _net(s_arch, shape[0], 2)
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return teacher, student, x


@pytest.mark.parametrize("style", list(REFERENCES))
@pytest.mark.parametrize("t_arch,s_arch,shape", CASES)
def test_style_loss_equals_its_reference(style: str, t_arch: str, s_arch: str, shape: tuple[int, int, int]) -> None:
    teacher, student, x = _setup(t_arch, s_arch, shape)
    if style == "torchdistill" and s_arch == "resnet8":  # one block per section: no second-block input
        with pytest.raises(BadInput, match=r"fsp\.pairs: .*layer2\.1 .* has 1 block"):
            _objective_loss(teacher, student, x, FSPSettings(style=style))
        return
    expected = REFERENCES[style](_walk(student, x), _walk(teacher, x))
    assert expected > 0
    assert _objective_loss(teacher, student, x, FSPSettings(style=style)) == pytest.approx(expected, rel=1e-6)


def test_styles_give_different_losses_on_the_same_maps() -> None:
    """The comparison above can tell the styles apart: each reference differs from every other."""
    teacher, student, x = _setup("resnet20", "resnet14", (3, 32, 32))
    ms, mt = _walk(student, x), _walk(teacher, x)
    values = {name: ref(ms, mt) for name, ref in REFERENCES.items()}
    assert values["kdzoo"] == pytest.approx(values["repdistiller"] / 3, rel=1e-12)  # same pairs, mean not sum
    distinct = {round(v, 9) for v in values.values()}
    assert len(distinct) == len(values), values


def test_explicit_keys_override_the_style() -> None:
    teacher, student, x = _setup("resnet20", "resnet14", (3, 32, 32))
    ms, mt = _walk(student, x), _walk(teacher, x)
    fsp = FSPSettings(style="repdistiller", pool="max")
    r = fsp.resolved()
    assert (r.pairs, r.pool, r.distance) == ("consecutive", "max", "mse_mean")
    got = _objective_loss(teacher, student, x, fsp)
    assert got == pytest.approx(_ref_repdistiller(ms, mt, pool="max"), rel=1e-6)
    assert got != pytest.approx(_ref_repdistiller(ms, mt, pool="avg"), rel=1e-6)
    # explicit weights replace kdzoo's 1/3 each: three times the kdzoo loss
    got_w = _objective_loss(teacher, student, x, FSPSettings(style="kdzoo", weights=(1.0, 1.0, 1.0)))
    assert got_w == pytest.approx(3 * _ref_kdzoo(ms, mt), rel=1e-6)


def test_style_resolution_and_defaults() -> None:
    assert FSPSettings().resolved() == FSPSettings(pairs="paper", pool="max", distance="paper")
    assert FSPSettings().pair_weights(3) == (1.0, 1.0, 1.0)
    assert FSPSettings(style="kdzoo").pair_weights(4) == (0.25,) * 4
    assert FSPSettings(style="kdzoo", weights=()).pair_weights(3) == (1.0, 1.0, 1.0)  # empty: 1 each
    r = FSPSettings(style="torchdistill").resolved()
    assert (r.pairs, r.pool, r.distance) == ("torchdistill", "max", "l2_norm_dim1")
    with pytest.raises(BadInput, match="fsp.weights: expected 3 weights"):
        FSPSettings(weights=(1.0, 2.0)).pair_weights(3)


def _cfg(**fsp) -> dict:
    return {"arch": "resnet14", "method": "fsp", "teacher": "t.json", "fsp": fsp}


@pytest.mark.parametrize("fsp", [{}, {"style": "kdzoo"}, {"style": "repdistiller", "pool": "max"},
                                 {"style": "torchdistill", "weights": [0.5, 1, 2]}, {"distance": "l2_norm"}])
def test_config_round_trips_and_run_id_follows_effective_settings(fsp: dict) -> None:
    cfg = config_from_dict(_cfg(**fsp))
    assert config_from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["fsp"] == {"style": "paper", "adapter": "none", **fsp}


def test_run_id_is_the_effective_settings_hash() -> None:
    by_style = config_from_dict(_cfg(style="repdistiller"))
    spelled = config_from_dict(_cfg(pairs="consecutive", pool="avg", distance="mse_mean"))
    assert by_style.run_id() == spelled.run_id()
    assert config_from_dict(_cfg(style="kdzoo")).run_id() != by_style.run_id()  # 1/3 weights
    # the default style hashes as the explicit paper settings of records written before styles existed
    old = config_from_dict(_cfg(pairs="paper", pool="max", distance="paper", weights=[]))
    assert config_from_dict(_cfg()).run_id() == old.run_id()
    assert dataclasses.replace(by_style, fsp=FSPSettings(style="paper")).run_id() == old.run_id()


@pytest.mark.parametrize("fsp,key", [({"style": "torchdistill"}, "fsp.style"),
                                     ({"pairs": "torchdistill"}, "fsp.pairs")])
def test_torchdistill_layout_on_one_block_sections_is_bad_input(fsp: dict, key: str) -> None:
    with pytest.raises(BadInput, match=rf"^config: {key}: .*resnet8 has one; use a deeper CIFAR ResNet") as err:
        config_from_dict({**_cfg(**fsp), "arch": "resnet8"})
    assert "\n" not in str(err.value)
    config_from_dict({**_cfg(**fsp), "arch": "resnet8", "method": "scratch", "teacher": ""})  # no FSP: no check


def test_unknown_style_names_the_key() -> None:
    with pytest.raises(BadInput, match="fsp.style: expected one of paper, repdistiller, kdzoo, torchdistill"):
        config_from_dict(_cfg(style="zoo"))
