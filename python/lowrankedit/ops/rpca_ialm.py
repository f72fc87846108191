"""Robust PCA of a symmetric matrix by Lin, Chen and Ma's inexact ALM with a partial, rank-adaptive SVT.

``min ||L||_* + lamb ||S||_1  s.t.  L + S = M`` for one symmetric ``(n, n)`` matrix (a Jacobian Gram), without a
full eigendecomposition per iteration or at the end (the operator ``torch.ops.lowrankedit.rpca_ialm``).
"""
import torch

from .. import validation as V
from ._interop import as_tensor

#: The operator's statistics, in its output order after ``L`` and ``S``, and their Python types.
_STATS = (("iterations", int), ("converged", bool), ("primal_residual", float), ("dual_residual", float),
          ("rank", int), ("mu", float), ("mu0", float), ("lamb", float), ("threshold", float), ("tail", float),
          ("gap", float), ("certified", bool), ("block", int), ("svt_attempts", int), ("full_svt", int))


@torch.library.register_fake("lowrankedit::rpca_ialm")
def _fake(M, lamb=0.0, tol=1e-7, max_iter=1000, mu0=0.0, rho=1.5, mu_max_factor=1e5, exact_svt=False, rank_guess=10,
          steps=1, svt_tol=1e-10, tail_block=8, tail_steps=12, seed=0, balance=True, alpha=1.6, oversample=2):
    dtypes = {int: torch.int64, bool: torch.bool, float: torch.float64}
    L = torch.empty_like(M, memory_format=torch.contiguous_format)
    return (L, torch.empty_like(L)) + tuple(torch.empty((), dtype=dtypes[t], device="cpu") for _, t in _STATS)


def rpca_ialm(M, lamb=None, *, tol=1e-7, max_iter=1000, mu0=None, rho=1.5, mu_max_factor=1e5, balance=True,
              alpha=1.6, exact_svt=False, rank_guess=10, steps=1, oversample=2, svt_tol=1e-10, tail_block=8,
              tail_steps=12, seed=0):
    """Principal component pursuit of a symmetric matrix, certified without its whole spectrum.

    Parameters
    ----------
    M : torch.Tensor, numpy.ndarray or __dlpack__ object
        ``(n, n)`` symmetric to rounding (``max |M - M^T| <= 1000 eps max |M|``; its symmetric part is used),
        float32 or float64, CPU or CUDA, finite. The iteration runs in float64.
    lamb : float, optional
        Weight of the sparse part, ``> 0``; default ``1 / sqrt(n)``.
    tol : float
        Stop when the primal residual ``||M - L - S||_F / ||M||_F`` and the dual residual ``mu ||L_k - L_{k-1}||_F /
        n`` (per entry, in the multiplier's units, so the same for ``M`` and ``c M``) are both ``<= tol``.
    max_iter : int
        Iteration cap, ``>= 1``.
    mu0, rho, mu_max_factor, balance : float, float, float, bool
        Penalty schedule: ``mu0`` (default ``1.25 / ||M||_2``, Lin et al.), then ``mu <- min(rho mu, mu_max_factor
        mu0)`` every iteration (``rho >= 1``, ``mu_max_factor >= 1``); once the cap is reached, with ``balance``,
        residual balancing (``mu`` times ``rho`` while the primal residual exceeds 10x the dual one, divided by
        ``rho`` while the dual exceeds 10x the primal, within ``[1e-3, 1e10] mu0``). Lin et al.'s schedule alone
        (``balance=False, mu_max_factor=1e7, alpha=1``) stalls on Jacobian Grams: on W+ Grams of
        :func:`lowrankedit.models.stylegan2` (n = 384, ``lamb = 1/60``) it had not converged after 6000
        iterations; the defaults converge there in about 750.
    alpha : float
        Over-relaxation in ``(0, 2)`` of the sparse part in the ``L`` and multiplier updates (``1``: plain ALM).
    exact_svt : bool
        Full eigendecomposition every iteration (the reference route, same iteration otherwise).
    rank_guess : int
        The first partial SVT's predicted rank (then Lin et al.'s rule: ``r + 1`` when the rank fell, ``r`` plus
        ``min(5% of n, max(5, r))`` when it did not).
    steps : int
        Block Krylov steps per partial-SVT pass.
    oversample : int
        Random columns added to the block beyond the predicted rank + 1 (the warm start's vectors come first).
    svt_tol : float
        Kept Ritz pairs must have ``||X u - theta u|| <= svt_tol ||X||_2``.
    tail_block, tail_steps : int
        The certificate's block Lanczos (width, steps) estimating the largest discarded ``|eigenvalue|``.
    seed : int
        Seed of the random start columns.

    Returns
    -------
    L, S : torch.Tensor
        ``(n, n)``, dtype and device of ``M``.
    info : dict
        ``iterations``, ``converged``, ``primal_residual``, ``dual_residual`` (as for ``tol``), ``rank``,
        ``mu`` (last used), ``mu0``, ``lamb``, ``threshold`` (the last SVT threshold ``1 / mu``), ``tail`` (largest
        ``|eigenvalue|`` of the last SVT argument outside the kept eigenvectors: block-Lanczos estimate, exact for
        ``n <= 4 tail_block (tail_steps + 1)`` or after a full SVT), ``gap`` (``(threshold - tail) / threshold``),
        ``certified`` (converged and ``gap > 0``), ``block``, ``svt_attempts``, ``full_svt``, ``method``.

    Notes
    -----
    Iteration (Lin et al., Algorithm 5, over-relaxed): ``S = shrink(M - L + Y/mu, lamb/mu)``, ``S^ = alpha S +
    (1 - alpha)(M - L)``, ``L = SVT(M - S^ + Y/mu, 1/mu)``, ``Y += mu (M - L - S^)``, from ``Y0 = M / max(||M||_2,
    max|M| / lamb)``. The SVT keeps only eigenvalues above
    the threshold, found by block Krylov Rayleigh-Ritz warm-started from the previous iteration; its block grows
    when the survivors fill it. ``L``'s optimality condition holds exactly when the SVT kept every survivor, which
    ``gap > 0`` certifies; ``S``'s is off by the dual residual. Values are checked once, by the operator. Through
    :func:`lowrankedit.ops.rpca` as ``method="partial"``.

    Examples
    --------
    >>> import torch
    >>> from lowrankedit.ops import rpca_ialm
    >>> g = torch.Generator().manual_seed(0)
    >>> U = torch.randn(60, 3, dtype=torch.float64, generator=g)
    >>> S0 = torch.zeros(60, 60, dtype=torch.float64); S0[5, 7] = S0[7, 5] = 10.0
    >>> L, S, info = rpca_ialm(U @ U.T + S0)
    >>> info["certified"], float((L - U @ U.T).norm() / (U @ U.T).norm()) < 1e-5
    (True, True)
    """
    op = "rpca_ialm"
    M = as_tensor(M, op, "M")
    # None selects the solver's default (passed as 0, which the operator reads as "default")
    lamb = 0.0 if lamb is None else V.real(lamb, "lamb", op, min=0.0, min_open=True)
    mu0 = 0.0 if mu0 is None else V.real(mu0, "mu0", op, min=0.0, min_open=True)
    out = torch.ops.lowrankedit.rpca_ialm(
        M.detach(), lamb, V.real(tol, "tol", op), V.integer(max_iter, "max_iter", op), mu0, V.real(rho, "rho", op),
        V.real(mu_max_factor, "mu_max_factor", op), V.boolean(exact_svt, "exact_svt", op),
        V.integer(rank_guess, "rank_guess", op), V.integer(steps, "steps", op), V.real(svt_tol, "svt_tol", op),
        V.integer(tail_block, "tail_block", op), V.integer(tail_steps, "tail_steps", op), V.integer(seed, "seed", op),
        V.boolean(balance, "balance", op), V.real(alpha, "alpha", op), V.integer(oversample, "oversample", op))
    L, S = out[:2]
    info = {name: kind(value) for (name, kind), value in zip(_STATS, out[2:])}
    info["method"] = "ialm_exact" if exact_svt else "ialm_partial"
    return L, S, info
