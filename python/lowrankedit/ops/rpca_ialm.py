"""Robust PCA of a symmetric matrix by Lin, Chen and Ma's inexact ALM with a partial, rank-adaptive SVT.

``min ||L||_* + lamb ||S||_1  s.t.  L + S = M`` for one symmetric ``(n, n)`` matrix (a Jacobian Gram), without a
full eigendecomposition per iteration or at the end (compiled op ``_C.rpca_ialm``).
"""
import numbers

import torch

from .._ext import _C
from .singular_value_threshold import _symmetric_to_rounding


def _number(value, name, op, *, default_zero=False, minimum=None):
    if value is None and default_zero:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float("-inf") < value < float("inf"):
        raise ValueError(f"{op}: expected {name} to be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{op}: expected {name} >= {minimum}, got {value!r}")
    return float(value)


def _positive(value, name, op):
    value = _number(value, name, op)
    if not value > 0:
        raise ValueError(f"{op}: expected {name} > 0, got {value!r}")
    return value


def _integer(value, name, op, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{op}: expected {name} to be an int >= {minimum}, got {value!r}")
    return int(value)


def rpca_ialm(M, lamb=None, *, tol=1e-7, max_iter=1000, mu0=None, rho=1.5, mu_max_factor=1e7, exact_svt=False,
              rank_guess=10, steps=2, svt_tol=1e-10, tail_block=8, tail_steps=12, seed=0):
    """Principal component pursuit of a symmetric matrix, certified without its whole spectrum.

    Parameters
    ----------
    M : torch.Tensor
        ``(n, n)`` symmetric to rounding (``max |M - M^T| <= 1000 eps max |M|``; its symmetric part is used),
        float32 or float64, CPU or CUDA, finite. The iteration runs in float64.
    lamb : float, optional
        Weight of the sparse part, ``> 0``; default ``1 / sqrt(n)``.
    tol : float
        Stop when the primal residual ``||M - L - S||_F`` and the dual residual ``mu ||L_k - L_{k-1}||_F`` are both
        ``<= tol ||M||_F``.
    max_iter : int
        Iteration cap.
    mu0, rho, mu_max_factor : float
        Penalty schedule: ``mu0`` (default ``1.25 / ||M||_2``, Lin et al.), ``mu <- min(rho mu, mu_max_factor mu0)``
        every iteration.
    exact_svt : bool
        Full eigendecomposition every iteration (the reference route, same iteration otherwise).
    rank_guess : int
        The first partial SVT's predicted rank (then Lin et al.'s rule: ``r + 1`` when the rank fell, ``r`` plus
        ``min(5% of n, max(5, r))`` when it did not).
    steps : int
        Block Krylov steps per partial-SVT pass.
    svt_tol : float
        Kept Ritz pairs must have ``||X u - theta u|| <= svt_tol ||X||_2``.
    tail_block, tail_steps : int
        The certificate's block Lanczos (width, steps) estimating the largest discarded ``|eigenvalue|``.
    seed : int
        Seed of the random start columns.

    Returns
    -------
    L, S : torch.Tensor
        ``(n, n)``, dtype of ``M``.
    info : dict
        ``iterations``, ``converged``, ``primal_residual``, ``dual_residual`` (relative to ``||M||_F``), ``rank``,
        ``mu`` (last used), ``mu0``, ``lamb``, ``threshold`` (the last SVT threshold ``1 / mu``), ``tail`` (largest
        ``|eigenvalue|`` of the last SVT argument outside the kept eigenvectors: block-Lanczos estimate, exact for
        ``n <= 4 tail_block (tail_steps + 1)`` or after a full SVT), ``gap`` (``(threshold - tail) / threshold``),
        ``certified`` (converged and ``gap > 0``), ``block``, ``svt_attempts``, ``full_svt``, ``method``.

    Notes
    -----
    Iteration (Lin et al., Algorithm 5): ``S = shrink(M - L + Y/mu, lamb/mu)``, ``L = SVT(M - S + Y/mu, 1/mu)``,
    ``Y += mu (M - L - S)``, from ``Y0 = M / max(||M||_2, max|M| / lamb)``. The SVT keeps only eigenvalues above
    the threshold, found by block Krylov Rayleigh-Ritz warm-started from the previous iteration; its block grows
    when the survivors fill it. ``L``'s optimality condition holds exactly when the SVT kept every survivor, which
    ``gap > 0`` certifies; ``S``'s is off by the dual residual.

    Examples
    --------
    >>> import torch
    >>> from lowrankedit.ops.rpca_ialm import rpca_ialm
    >>> g = torch.Generator().manual_seed(0)
    >>> U = torch.randn(60, 3, dtype=torch.float64, generator=g)
    >>> S0 = torch.zeros(60, 60, dtype=torch.float64); S0[5, 7] = S0[7, 5] = 10.0
    >>> L, S, info = rpca_ialm(U @ U.T + S0)
    >>> bool(info["certified"]), float((L - U @ U.T).norm() / (U @ U.T).norm()) < 1e-5
    (True, True)
    """
    op = "rpca_ialm"
    if not isinstance(M, torch.Tensor):
        raise TypeError(f"{op}: expected M to be a torch.Tensor, got {type(M).__name__}")
    if M.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{op}: expected M to have dtype float32 or float64, got {M.dtype}")
    if M.dim() != 2 or M.shape[0] != M.shape[1] or M.shape[0] == 0:
        raise ValueError(f"{op}: expected M of shape (n, n) with n >= 1, got {tuple(M.shape)}")
    M = M.detach()
    if not bool(torch.isfinite(M).all()):
        raise ValueError(f"{op}: expected M to be finite, got NaN or Inf entries")
    Ms, symmetric = _symmetric_to_rounding(M)
    if not symmetric:
        asym = float((M - M.mT).abs().amax())
        raise ValueError(f"{op}: expected a symmetric M (to rounding: max |M - M^T| <= 1000 eps max |M|), got "
                         f"max |M - M^T| = {asym:.3g} with max |M| = {float(M.abs().amax()):.3g}; use "
                         "lowrankedit.ops.rpca for general matrices")
    # None selects the solver's default (passed as 0); a given value must be positive.
    for name, v in (("lamb", lamb), ("mu0", mu0)):
        if v is not None and not (_number(v, name, op) > 0):
            raise ValueError(f"{op}: expected {name} > 0, got {v!r}")
    lamb = _number(lamb, "lamb", op, default_zero=True)
    mu0 = _number(mu0, "mu0", op, default_zero=True)
    with torch.no_grad():
        L, S, info = _C.rpca_ialm(Ms, lamb, _number(tol, "tol", op, minimum=0), _integer(max_iter, "max_iter", op, 1),
                                  mu0, _number(rho, "rho", op, minimum=1),
                                  _number(mu_max_factor, "mu_max_factor", op, minimum=1), bool(exact_svt),
                                  _integer(rank_guess, "rank_guess", op, 1), _integer(steps, "steps", op, 1),
                                  _positive(svt_tol, "svt_tol", op), _integer(tail_block, "tail_block", op, 1),
                                  _integer(tail_steps, "tail_steps", op, 1), _integer(seed, "seed", op, 0))
    info = dict(info, method="ialm_partial" if not exact_svt else "ialm_exact")
    return L, S, info
