"""Deterministic k-means (k-means++ initialisation + Lloyd iterations) in torch."""

from __future__ import annotations

import torch

__all__ = ["kmeans", "kmeans_plusplus_init"]


def kmeans_plusplus_init(points: torch.Tensor, k: int, generator: torch.Generator,
                         weights: torch.Tensor | None = None) -> torch.Tensor:
    """k-means++ seeding (D^2 sampling, times the point weights when given).

    Args:
        points: ``(N, D)`` float; k: number of centers; generator: CPU generator;
        weights: optional ``(N,)`` positive point weights.
    Returns:
        ``(k, D)`` centers, all distinct points of ``points``.
    """
    n = points.shape[0]
    if weights is None:
        first = int(torch.randint(n, (1,), generator=generator))
    else:
        first = int(torch.multinomial((weights / weights.sum()).double().cpu(), 1, generator=generator))
    centers = [points[first]]
    d2 = ((points - points[first]) ** 2).sum(-1)
    if weights is not None:
        d2 = d2 * weights
    for _ in range(1, k):
        total = d2.sum()
        if float(total) <= 0:  # cannot happen when k <= #unique points (checked by caller)
            raise ValueError("k-means++: fewer distinct points than clusters")
        probs = (d2 / total).double().cpu()
        idx = int(torch.multinomial(probs, 1, generator=generator))
        centers.append(points[idx])
        new = ((points - points[idx]) ** 2).sum(-1)
        d2 = torch.minimum(d2, new if weights is None else new * weights)
    return torch.stack(centers)


@torch.no_grad()
def kmeans(
    points: torch.Tensor, k: int, iters: int = 50, seed: int = 0, tol: float = 0.0,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ init.  Deterministic for a given ``seed``.

    With ``weights`` it minimises ``sum_i w_i |x_i - c(i)|^2`` (centers are weighted
    means), e.g. vertex areas so that clusters follow the surface, not the vertex
    density.

    Empty clusters (rare after k-means++) are re-seeded with the point farthest
    from its current center.

    Args:
        points: ``(N, D)`` float tensor (any device; no gradient is tracked).
        k: number of clusters, ``1 <= k <= #unique points``.
        iters: maximum Lloyd iterations (stops early when labels are stable and
            the center shift is ``<= tol``).
        seed: seed of the CPU ``torch.Generator`` used for the initialisation.
        weights: optional ``(N,)`` positive point weights (default: all 1).
    Returns:
        ``centers (k, D)`` (dtype of ``points``) and ``labels (N,)`` long,
        ``labels[i]`` = index of the nearest center.
    Raises:
        ValueError: ``k < 1`` or ``k`` larger than the number of distinct points.
    """
    if points.dim() != 2:
        raise ValueError(f"points must be (N, D), got {tuple(points.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n_unique = torch.unique(points, dim=0).shape[0]
    if k > n_unique:
        raise ValueError(f"k={k} clusters requested but only {n_unique} distinct points are given")
    x = points
    if weights is not None:
        if weights.shape != (x.shape[0],) or not bool((weights > 0).all()):
            raise ValueError(f"weights must be ({x.shape[0]},) and positive")
        weights = weights.to(x.dtype)
    w = torch.ones(x.shape[0], dtype=x.dtype, device=x.device) if weights is None else weights
    gen = torch.Generator().manual_seed(int(seed))
    centers = kmeans_plusplus_init(x, k, gen, weights)
    labels = torch.cdist(x, centers).argmin(1)
    for _ in range(iters):
        sums = torch.zeros_like(centers).index_add_(0, labels, x * w[:, None])
        counts = torch.zeros(k, dtype=x.dtype, device=x.device).index_add_(0, labels, w)
        new_centers = torch.where(counts[:, None] > 0, sums / torch.where(counts > 0, counts, 1)[:, None], centers)
        empty = torch.nonzero(counts == 0).flatten().tolist()
        if empty:
            dist = ((x - new_centers[labels]) ** 2).sum(-1)
            for j in empty:
                far = int(dist.argmax())
                new_centers[j] = x[far]
                dist[far] = -1.0
        new_labels = torch.cdist(x, new_centers).argmin(1)
        shift = (new_centers - centers).norm(dim=-1).max()
        centers = new_centers
        stable = bool((new_labels == labels).all())
        labels = new_labels
        if stable and float(shift) <= tol:
            break
    return centers, labels
