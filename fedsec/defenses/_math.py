"""Vector math shared by the defenses; every function works on the input's device.

``x`` is always an update matrix of shape (n, d), one flattened update per row.
"""

from __future__ import annotations

import torch
from torch import Tensor

TINY = 1e-12
"""Floor for norms and weight sums before dividing by them."""


def row_norms(x: Tensor) -> Tensor:
    """Euclidean norm of every row, shape (n,)."""
    return torch.linalg.vector_norm(x, dim=1)


def weighted_mean(x: Tensor, weights: Tensor) -> Tensor:
    """``sum_i w_i x_i / sum_i w_i``, shape (d,); the zero vector when all weights are 0.

    Rows with weight 0 are read but do not count, so a masked mean needs no copy of ``x``.
    """
    weights = weights.to(x.dtype)
    return (weights @ x) / weights.sum().clamp_min(TINY)


def clip_factors(norms: Tensor, bound: Tensor | float) -> Tensor:
    """Per-row factor ``min(1, bound / norm)``: brings norms down to ``bound`` (1 for zero rows)."""
    return (bound / norms.clamp_min(TINY)).clamp(max=1.0)


def gram_and_sq_norms(x: Tensor) -> tuple[Tensor, Tensor]:
    """Gram matrix ``x x^T`` (n, n) and the squared row norms (its diagonal), from one product."""
    gram = x @ x.T
    return gram, gram.diagonal()


def pairwise_sq_distances(x: Tensor) -> Tensor:
    """Squared Euclidean distances between rows, (n, n), symmetric with a zero diagonal.

    ``|a|^2 + |b|^2 - 2 a.b`` from one Gram matrix (one GEMM instead of n^2 passes over d);
    the cancellation error is relative to the larger of the two norms, so distances
    between nearby rows stay accurate unless the rows share a component much larger
    than their differences.
    """
    return sq_distances_from_gram(x @ x.T)


def sq_distances_from_gram(gram: Tensor) -> Tensor:
    """Squared Euclidean distances (n, n) from a Gram matrix (n, n): ``|a|^2 + |b|^2 - 2 a.b``,
    symmetric with a zero diagonal."""
    sq = gram.diagonal()
    dist = (sq.unsqueeze(0) + sq.unsqueeze(1) - 2.0 * gram).clamp_min_(0.0)
    dist = (dist + dist.T) / 2.0
    return dist.fill_diagonal_(0.0)


def cosine_similarity_matrix(x: Tensor) -> Tensor:
    """Pairwise cosine similarity of rows, (n, n); rows of norm 0 have similarity 0 with all."""
    gram, sq = gram_and_sq_norms(x)
    inv = sq.sqrt().clamp_min(TINY).reciprocal()
    cos = gram * inv.unsqueeze(0) * inv.unsqueeze(1)
    return ((cos + cos.T) / 2.0).clamp_(-1.0, 1.0)


def distances_to(x: Tensor, point: Tensor) -> Tensor:
    """Euclidean distance of every row to ``point`` (d,), shape (n,), with no (n, d) temporary."""
    return torch.cdist(
        x.unsqueeze(0), point.reshape(1, 1, -1), compute_mode="donot_use_mm_for_euclid_dist"
    ).reshape(-1)


def coordinate_median(x: Tensor) -> Tensor:
    """Coordinate-wise median, (d,); for even n the mean of the two middle values (as numpy)."""
    lower = x.median(dim=0).values
    if x.shape[0] % 2:
        return lower
    # The lower median of -x is minus the upper median of x.
    upper = x.neg().median(dim=0).values.neg_()
    return (lower + upper) / 2.0


def krum_scores(dist: Tensor, f: int, alive: int | None = None) -> Tensor:
    """Krum score of each row: sum of squared distances to its ``max(1, k - f - 2)`` nearest others.

    Parameters
    ----------
    dist : Tensor
        (n, n) squared distances with a zero diagonal; columns of discarded rows set to +inf.
    f : int
        Number of Byzantine clients the rule tolerates.
    alive : int, optional
        Number k of rows still competing (default n); with inf columns, rows beyond k are ignored.
    """
    k = dist.shape[0] if alive is None else alive
    closest = max(1, k - f - 2)
    # The row's own zero distance is always among the smallest, so take one more.
    take = min(closest + 1, k)
    return dist.topk(take, dim=1, largest=False).values.sum(dim=1)


def gaussian_like(reference: Tensor, std: Tensor | float, generator: torch.Generator) -> Tensor:
    """N(0, std^2) noise shaped like ``reference``, drawn on the generator's device and moved to it.

    Drawing where the generator lives makes the noise identical whatever device the batch is on.
    """
    noise = torch.randn(
        reference.shape, generator=generator, device=generator.device, dtype=reference.dtype
    )
    return noise.to(reference.device) * std


def random_coordinates(d: int, k: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """``k`` distinct coordinates of ``d``, drawn with ``generator``, as indices on ``device``."""
    return torch.randperm(d, generator=generator, device=generator.device)[:k].to(device)
