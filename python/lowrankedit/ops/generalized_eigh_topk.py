"""The ``k`` leading eigenpairs of ``A x = lambda (B + tau tr(B) I) x`` without forming ``L^{-1} A L^{-T}``.

One Cholesky factorization ``B' = L L^T``, then block Krylov Rayleigh-Ritz with restarts on ``C = L^{-1} A L^{-T}``,
applied to ``(D, p)`` blocks by two triangular solves and one GEMM (compiled op ``_C.generalized_eigh_topk``).
"""
import numbers
from typing import NamedTuple

import torch

from .._ext import _C
from .generalized_eigh import _tau_value, _unit_norm

#: Default convergence tolerance on the relative Ritz residual ``||C y - l y|| / |l_1|``, by dtype.
DEFAULT_TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


class GeneralizedEighTopk(NamedTuple):
    """``eigenvalues (k,)`` largest first, ``eigenvectors (D, k)`` one per column, and ``info`` (dict)."""

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    info: dict


def _int_arg(value, name, op, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{op}: expected {name} to be an int >= {minimum}, got {value!r}")
    return int(value)


def generalized_eigh_topk(A, B, k=10, *, tau=1e-3, block=None, steps=3, tol=None, max_restarts=200, seed=0,
                          normalize="unit"):
    """The ``k`` largest eigenpairs of ``A x = lambda (B + tau tr(B) I) x``.

    Parameters
    ----------
    A : torch.Tensor
        ``(D, D)`` symmetric (only ``(A + A^T) / 2`` is used), float32 or float64, CPU or CUDA.
    B : torch.Tensor
        ``(D, D)`` symmetric positive semi-definite, same dtype and device.
    k : int
        Eigenpairs wanted, ``1 <= k <= D``.
    tau : float
        ``B' = (B + B^T) / 2 + tau tr(B) I`` must be positive definite (``tau >= 0``).
    block : int, optional
        Krylov block width ``p >= k``; default ``k + max(k, 8)``.
    steps : int
        Block Krylov steps per restart (basis of ``p (steps + 1)`` columns, capped at ``D``).
    tol : float, optional
        Stop when every wanted pair has ``||C y - l y|| <= tol |l_1|``; default ``1e-10`` (float64), ``1e-5``
        (float32).
    max_restarts : int
        Restarts before giving up (``info["converged"]`` is then False).
    seed : int
        Seed of the random start block.
    normalize : {"unit", "B"}
        Unit Euclidean eigenvectors, or ``X^T B' X = I``.

    Returns
    -------
    GeneralizedEighTopk
        ``eigenvalues (k,)`` descending, ``eigenvectors (D, k)`` (largest-magnitude entry of each column
        positive), ``info`` with ``residuals`` (float64 ``(k,)``, relative), ``restarts``, ``applications``
        (block applications of ``C``), ``block``, ``steps``, ``converged``.

    Notes
    -----
    Cost: one Cholesky (``D^3 / 3``) and ``(steps + 1)`` block applications per restart, ``4 D^2 p`` flops each,
    instead of the dense route's two more ``(D, D)`` triangular solves and a full eigensolver. Eigenvalues of a PSD
    ``A`` that cluster at ``k`` slow the convergence (a wider ``block`` helps).

    Examples
    --------
    >>> import torch
    >>> from lowrankedit.ops.generalized_eigh_topk import generalized_eigh_topk
    >>> A = torch.diag(torch.arange(1.0, 41.0, dtype=torch.float64))
    >>> w, X, info = generalized_eigh_topk(A, torch.eye(40, dtype=torch.float64), k=2, tau=0.0)
    >>> w.round(decimals=8), bool(info["converged"])
    (tensor([40., 39.], dtype=torch.float64), True)
    """
    op = "generalized_eigh_topk"
    for name, t in (("A", A), ("B", B)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: expected {name} to be a torch.Tensor, got {type(t).__name__}")
    tau = _tau_value(tau, op)
    unit = _unit_norm(normalize, op)
    k = _int_arg(k, "k", op, 1)
    block = 0 if block is None else _int_arg(block, "block", op, 1)
    steps = _int_arg(steps, "steps", op, 0)
    max_restarts = _int_arg(max_restarts, "max_restarts", op, 0)
    seed = _int_arg(seed, "seed", op, 0)
    if tol is None:
        tol = DEFAULT_TOL.get(A.dtype, 1e-10)
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not 0 < tol < float("inf"):
        raise ValueError(f"{op}: expected tol to be a positive finite number, got {tol!r}")
    with torch.no_grad():
        w, X, res, info = _C.generalized_eigh_topk(A.detach(), B.detach(), k, tau, block, steps, float(tol),
                                                   max_restarts, seed, unit)
    info = dict(info, residuals=res.double().cpu())
    return GeneralizedEighTopk(w, X, info)
