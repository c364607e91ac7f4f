"""The FSP matrix and the FSP loss (Yim et al. 2017, equations 1 and 2), as pure functions.

Equation 1: G[i, j] = sum_{s,t} F1[s, t, i] * F2[s, t, j] / (h * w), for two maps of one
network with h x w positions and m, n channels. When the maps differ in spatial size the
larger is reduced to the smaller one by pooling (paper: max pooling).

Equation 2: L = (1/N) sum_x sum_i lambda_i || G_i^T(x) - G_i^S(x) ||_2^2 over pairs i.
Which maps are paired is chosen where they are captured (features.pair_points); this
module only turns pairs of maps into matrices and distances. docs/METHOD.md sets these
definitions beside the public implementations (config.FSP_STYLES).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fspbench.registry import DISTANCES


def match_spatial(a: torch.Tensor, b: torch.Tensor, pool: str = "max") -> tuple[torch.Tensor, torch.Tensor]:
    """Pool whichever map is larger to the other's (H, W). a: (B, C1, H1, W1), b: (B, C2, H2, W2)."""
    size = (min(a.shape[2], b.shape[2]), min(a.shape[3], b.shape[3]))
    def pool_to(x: torch.Tensor) -> torch.Tensor:
        if x.shape[2:] == size:
            return x
        return F.adaptive_max_pool2d(x, size) if pool == "max" else F.adaptive_avg_pool2d(x, size)

    return pool_to(a), pool_to(b)


def fsp_matrix(a: torch.Tensor, b: torch.Tensor, pool: str = "max") -> torch.Tensor:
    """FSP matrix of two feature maps (equation 1).

    a: (B, C1, H1, W1), b: (B, C2, H2, W2) -> (B, C1, C2), the sum over the h * w shared
    positions of a_i * b_j divided by h * w, after the larger map is pooled (default max).
    """
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"batch sizes differ: {a.shape[0]} and {b.shape[0]}")
    a, b = match_spatial(a, b, pool)
    hw = a.shape[2] * a.shape[3]
    # one batched matmul: (B, C1, HW) @ (B, HW, C2)
    return torch.bmm(a.flatten(2), b.flatten(2).transpose(1, 2)) / hw  # (B, C1, C2)


def fsp_distance(g_student: torch.Tensor, g_teacher: torch.Tensor, distance: str = "paper") -> torch.Tensor:
    """Distance between two batches of FSP matrices (B, m, n), a scalar.

    With D = G_S - G_T and m the first map's channels:
    paper:        (1/B) sum_b sum_{i,j} D[b,i,j]^2, squared L2 summed over the matrix, mean over examples
                  (equation 2);
    mse_mean:     (1/(B m n)) sum_{b,i,j} D[b,i,j]^2 (RepDistiller, KD-Zoo);
    l2_norm_dim1: (1/B) sum_b sum_j sqrt(sum_i D[b,i,j]^2): an L2 norm per column over the first map's
                  channels, not squared, summed (torchdistill's FSPLoss: norm(dim=1).sum() / B);
    l2_norm:      (1/B) sum_b ||D[b]||_F, the Frobenius norm, not squared (fspbench's own variant,
                  in none of the public implementations; kept so earlier runs stay reproducible).
    """
    diff = g_student - g_teacher  # (B, m, n)
    if distance == "paper":
        return diff.pow(2).sum(dim=(1, 2)).mean()
    if distance == "mse_mean":
        return diff.pow(2).mean()
    if distance == "l2_norm_dim1":
        return torch.linalg.vector_norm(diff, dim=1).sum() / diff.shape[0]  # type: ignore[no-any-return]
    if distance == "l2_norm":
        return torch.linalg.matrix_norm(diff).sum() / diff.shape[0]  # type: ignore[no-any-return]
    raise ValueError(f"unknown FSP distance {distance!r}; expected one of {DISTANCES}")


def fsp_loss(
    student_maps: Sequence[tuple[torch.Tensor, torch.Tensor]],
    teacher_maps: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    pool: str = "max",
    distance: str = "paper",
    weights: Sequence[float] = (),
) -> torch.Tensor:
    """FSP loss (equation 2) over pairs of maps: sum_i lambda_i * distance(G_i^S, G_i^T).

    student_maps[i] and teacher_maps[i] are the (first, second) maps of pair i, each
    (B, C, H, W); the channel counts of student and teacher must agree pair by pair
    (the paper never handles a mismatch; see methods.FSPObjective for the adapter).
    ``weights`` are lambda_i; empty means 1 for every pair (paper).
    """
    if len(student_maps) != len(teacher_maps):
        raise ValueError(f"{len(student_maps)} student pairs against {len(teacher_maps)} teacher pairs")
    teacher_matrices = [fsp_matrix(ta, tb, pool) for ta, tb in teacher_maps]
    return fsp_loss_to(student_maps, teacher_matrices, pool=pool, distance=distance, weights=weights)


def fsp_loss_to(
    student_maps: Sequence[tuple[torch.Tensor, torch.Tensor]],
    teacher_matrices: Sequence[torch.Tensor],
    *,
    pool: str = "max",
    distance: str = "paper",
    weights: Sequence[float] = (),
) -> torch.Tensor:
    """``fsp_loss`` against the teacher's FSP matrices G_i^T (B, m, n), computed beforehand.

    A frozen teacher's matrices can be computed under ``torch.inference_mode`` with its forward
    pass, which on a CPU takes about a tenth off an FSP step against computing them here.
    """
    if len(student_maps) != len(teacher_matrices):
        raise ValueError(f"{len(student_maps)} student pairs against {len(teacher_matrices)} teacher pairs")
    if weights and len(weights) != len(student_maps):
        raise ValueError(f"{len(weights)} weights for {len(student_maps)} pairs")
    lambdas = weights or [1.0] * len(student_maps)
    total = student_maps[0][0].new_zeros(())
    for lam, (sa, sb), g_t in zip(lambdas, student_maps, teacher_matrices):
        g_s = fsp_matrix(sa, sb, pool)  # (B, m, n)
        if g_s.shape != g_t.shape:
            raise ValueError(f"FSP matrices differ in shape: student {tuple(g_s.shape[1:])}, "
                             f"teacher {tuple(g_t.shape[1:])}")
        total = total + lam * fsp_distance(g_s, g_t.to(g_s.dtype), distance)
    return total
