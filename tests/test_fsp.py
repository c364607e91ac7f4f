"""fsp_matrix and fsp_loss against independent computations (loops, einsum, hand values)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fspbench.fsp import fsp_distance, fsp_loss, fsp_matrix


def _loop_fsp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Equation 1 with explicit loops over examples, channels and positions (same spatial size)."""
    bsz, c1, h, w = a.shape
    c2 = b.shape[1]
    g = torch.zeros(bsz, c1, c2, dtype=torch.float64)
    for n in range(bsz):
        for i in range(c1):
            for j in range(c2):
                s = 0.0
                for y in range(h):
                    for x in range(w):
                        s += float(a[n, i, y, x]) * float(b[n, j, y, x])
                g[n, i, j] = s / (h * w)
    return g


def test_fsp_matrix_hand_computed_2x2() -> None:
    # a: one channel [[1, 2], [3, 4]]; b: two channels [[1, 0], [0, 1]] and all ones
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    b = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]]])
    g = fsp_matrix(a, b)
    # G[0,0] = (1*1 + 2*0 + 3*0 + 4*1) / 4 = 1.25 ; G[0,1] = (1+2+3+4) / 4 = 2.5
    assert g.shape == (1, 1, 2)
    assert torch.allclose(g, torch.tensor([[[1.25, 2.5]]]))


@pytest.mark.parametrize("shape", [(2, 3, 4, 4, 5), (1, 1, 3, 3, 1), (3, 4, 2, 5, 2)])
def test_fsp_matrix_matches_loop(shape: tuple[int, ...]) -> None:
    bsz, c1, h, w, c2 = shape
    gen = torch.Generator().manual_seed(sum(shape))
    a = torch.randn(bsz, c1, h, w, generator=gen)
    b = torch.randn(bsz, c2, h, w, generator=gen)
    assert torch.allclose(fsp_matrix(a, b).double(), _loop_fsp(a, b), atol=1e-5)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_fsp_matrix_unequal_spatial_pools_larger_map(pool: str) -> None:
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(3, 5, 8, 8, generator=gen)  # larger: reduced to 4x4
    b = torch.randn(3, 6, 4, 4, generator=gen)
    ref_pool = F.max_pool2d if pool == "max" else F.avg_pool2d
    a_small = ref_pool(a, kernel_size=2, stride=2)
    expected = torch.einsum("bihw,bjhw->bij", a_small, b) / 16
    assert torch.allclose(fsp_matrix(a, b, pool=pool), expected, atol=1e-5)
    # symmetric: the larger map is pooled whichever argument it is
    assert torch.allclose(fsp_matrix(b, a, pool=pool), expected.transpose(1, 2), atol=1e-5)


def test_fsp_matrix_max_pool_hand_value() -> None:
    a = torch.tensor([[[[1.0, 5.0], [2.0, 3.0]]]])  # 2x2 -> max pool to 1x1 = 5
    b = torch.tensor([[[[2.0]]]])
    assert fsp_matrix(a, b).item() == pytest.approx(10.0)


def _pairs(gen: torch.Generator, bsz: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [
        (torch.randn(bsz, 3, 8, 8, generator=gen), torch.randn(bsz, 3, 8, 8, generator=gen)),
        (torch.randn(bsz, 3, 8, 8, generator=gen), torch.randn(bsz, 5, 4, 4, generator=gen)),
    ]


@pytest.mark.parametrize("distance", ["paper", "mse_mean", "l2_norm_dim1", "l2_norm"])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_fsp_loss_matches_direct_computation(distance: str, pool: str) -> None:
    gen = torch.Generator().manual_seed(7)
    s, t = _pairs(gen), _pairs(gen)
    weights = (0.5, 2.0)
    got = fsp_loss(s, t, pool=pool, distance=distance, weights=weights)
    ref_pool = F.max_pool2d if pool == "max" else F.avg_pool2d
    expected = 0.0
    for lam, (sa, sb), (ta, tb) in zip(weights, s, t):
        if sa.shape[2] != sb.shape[2]:
            sa, ta = ref_pool(sa, 2, 2), ref_pool(ta, 2, 2)
        hw = sb.shape[2] * sb.shape[3]
        gs = torch.einsum("bihw,bjhw->bij", sa, sb) / hw
        gt = torch.einsum("bihw,bjhw->bij", ta, tb) / hw
        d = gs - gt
        per_example = [(d[n] ** 2).sum() for n in range(d.shape[0])]
        if distance == "paper":  # squared L2, mean over examples
            val = sum(per_example) / d.shape[0]
        elif distance == "mse_mean":  # mean over B x m x n
            val = sum(per_example) / d.numel()
        elif distance == "l2_norm_dim1":  # torchdistill: L2 norm over the first map's channels, summed / B
            val = sum(torch.sqrt((d[n, :, j] ** 2).sum()) for n in range(d.shape[0])
                      for j in range(d.shape[2])) / d.shape[0]
        else:  # L2 norm, not squared, summed / B
            val = sum(torch.sqrt(p) for p in per_example) / d.shape[0]
        expected += lam * float(val)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_l2_norm_dim1_hand_value() -> None:
    # D = [[3, 0], [4, 1]]: column norms over dim 1 are 5 and 1 -> 6; Frobenius would be sqrt(26)
    d = torch.tensor([[[3.0, 0.0], [4.0, 1.0]]])
    assert fsp_distance(d, torch.zeros_like(d), "l2_norm_dim1").item() == pytest.approx(6.0)
    assert fsp_distance(d, torch.zeros_like(d), "l2_norm").item() == pytest.approx(26**0.5)
    two = torch.cat([d, 2 * d])  # divided by B: (6 + 12) / 2
    assert fsp_distance(two, torch.zeros_like(two), "l2_norm_dim1").item() == pytest.approx(9.0)


def test_fsp_loss_default_weights_are_one_and_zero_for_equal_maps() -> None:
    gen = torch.Generator().manual_seed(3)
    s, t = _pairs(gen), _pairs(gen)
    assert fsp_loss(s, s).item() == 0.0
    assert fsp_loss(s, t).item() == pytest.approx(fsp_loss(s, t, weights=(1.0, 1.0)).item())


def test_fsp_loss_rejects_shape_mismatch() -> None:
    gen = torch.Generator().manual_seed(3)
    s = _pairs(gen)
    t = [(torch.randn(4, 7, 8, 8), torch.randn(4, 3, 8, 8)), s[1]]
    with pytest.raises(ValueError, match="differ in shape"):
        fsp_loss(s, t)
    with pytest.raises(ValueError):
        fsp_distance(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), "cosine")


def test_fsp_loss_gradient_flows_to_student_only() -> None:
    gen = torch.Generator().manual_seed(5)
    s = [(a.requires_grad_(), b.requires_grad_()) for a, b in _pairs(gen)]
    t = _pairs(gen)
    fsp_loss(s, t).backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a, _ in s)
