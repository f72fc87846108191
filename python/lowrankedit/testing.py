"""Synthetic problems shared by the tests and the benchmarks (not part of the editing API).

* :func:`planted_rpca` - a symmetric rank-``r`` PSD matrix plus a symmetric sparse corruption, the robust-PCA
  problem whose solution is known (the planted ``L``) when the corruption is sparse and small.
* :func:`synthetic_gram_pair` - a (foreground, background) Gram pair with the spectra real Jacobian Grams have: a
  few strong directions decaying fast in the region, a slowly decaying background of higher rank, both PSD.
"""
import torch


def planted_rpca(n, rank=10, density=0.05, magnitude=0.05, *, seed=0, dtype=torch.float64):
    """``(M, L0, S0)``: ``M = L0 + S0``, ``L0 = U U^T / rank`` (``U (n, rank)`` standard normal), ``S0`` symmetric
    with a ``density`` fraction of entries uniform in ``[-magnitude, magnitude]``."""
    g = torch.Generator().manual_seed(seed)
    U = torch.randn(n, rank, dtype=torch.float64, generator=g)
    L0 = U @ U.T / rank
    mask = torch.triu(torch.rand(n, n, generator=g) < density)
    vals = (torch.rand(n, n, generator=g, dtype=torch.float64) * 2 - 1) * magnitude
    S0 = torch.where(mask, vals, torch.zeros((), dtype=torch.float64))
    S0 = torch.triu(S0) + torch.triu(S0, 1).T
    return (L0 + S0).to(dtype), L0.to(dtype), S0.to(dtype)


def synthetic_gram_pair(D, *, fg_rows=256, bg_rows=1024, seed=0, dtype=torch.float64):
    """``(fg, bg)`` ``(D, D)`` PSD: ``F^T F / rows`` with ``F = diag(s) G``, ``G`` Gaussian ``(rows, D) / sqrt(D)``
    and ``s_i = (1 + i)^-1`` (foreground: a fast decay) or ``(1 + i / 8)^-0.5`` (background: slow), the eigen-
    spectra of the Jacobian Grams of a region and of the rest of the image."""
    g = torch.Generator().manual_seed(seed)

    def gram(rows, decay):
        F = torch.randn(rows, D, dtype=torch.float64, generator=g) / D ** 0.5
        F *= decay(torch.arange(rows, dtype=torch.float64))[:, None]
        return (F.T @ F / rows).to(dtype)

    fg = gram(fg_rows, lambda i: 1 / (1 + i))
    bg = gram(bg_rows, lambda i: (1 + i / 8) ** -0.5)
    return fg, bg
