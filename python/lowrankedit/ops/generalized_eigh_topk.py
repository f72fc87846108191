"""The ``k`` leading eigenpairs of ``A x = lambda (B + tau tr(B) I) x`` without forming ``L^{-1} A L^{-T}``.

One Cholesky factorization ``B' = L L^T``, then block Krylov Rayleigh-Ritz with restarts on ``C = L^{-1} A L^{-T}``,
applied to ``(D, p)`` blocks by two triangular solves and one GEMM (the operator
``torch.ops.lowrankedit.generalized_eigh_topk``).
"""
from typing import NamedTuple

import torch

from .. import validation as V
from ._interop import as_tensor
from .generalized_eigh import _tau_value, _unit_norm

#: Default convergence tolerance on the relative Ritz residual ``||C y - l y|| / |l_1|``, by dtype.
DEFAULT_TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


class GeneralizedEighTopk(NamedTuple):
    """``eigenvalues (k,)`` largest first, ``eigenvectors (D, k)`` one per column, and ``info`` (dict)."""

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    info: dict


@torch.library.register_fake("lowrankedit::generalized_eigh_topk")
def _fake(A, B, k, tau=1e-3, block=0, steps=3, tol=1e-10, max_restarts=200, seed=0, unit_norm=True):
    stat = lambda dtype: torch.empty((), dtype=dtype, device="cpu")  # noqa: E731
    D = A.shape[0]
    return (A.new_empty((k,)), A.new_empty((D, k)), torch.empty((k,), dtype=torch.float64, device="cpu"),
            stat(torch.int64), stat(torch.int64), stat(torch.int64), stat(torch.int64), stat(torch.bool))


def generalized_eigh_topk(A, B, k=10, *, tau=1e-3, block=None, steps=3, tol=None, max_restarts=200, seed=0,
                          normalize="unit"):
    """The ``k`` largest eigenpairs of ``A x = lambda (B + tau tr(B) I) x``.

    Parameters
    ----------
    A : torch.Tensor, numpy.ndarray or __dlpack__ object
        ``(D, D)`` symmetric (only ``(A + A^T) / 2`` is used), float32 or float64, CPU or CUDA, finite.
    B : torch.Tensor, numpy.ndarray or __dlpack__ object
        ``(D, D)`` symmetric positive semi-definite, same dtype and device.
    k : int
        Eigenpairs wanted, ``1 <= k <= D``.
    tau : float
        ``B' = (B + B^T) / 2 + tau tr(B) I`` must be positive definite (``tau >= 0``).
    block : int, optional
        Krylov block width ``p >= k``; default ``k + max(k, 8)``.
    steps : int
        Block Krylov steps per restart (basis of ``p (steps + 1)`` columns, capped at ``D``), ``>= 0``.
    tol : float, optional
        Stop when every wanted pair has ``||C y - l y|| <= tol |l_1|``; default ``1e-10`` (float64), ``1e-5``
        (float32).
    max_restarts : int
        Restarts before giving up (``info["converged"]`` is then False), ``>= 0``.
    seed : int
        Seed of the random start block, ``>= 0``.
    normalize : {"unit", "B"}
        Unit Euclidean eigenvectors, or ``X^T B' X = I``.

    Returns
    -------
    GeneralizedEighTopk
        ``eigenvalues (k,)`` descending, ``eigenvectors (D, k)`` (largest-magnitude entry of each column
        positive), ``info`` with ``residuals`` (float64 ``(k,)`` on the CPU, relative), ``restarts``,
        ``applications`` (block applications of ``C``), ``block``, ``steps`` (ints), ``converged`` (bool).

    Notes
    -----
    Cost: one Cholesky (``D^3 / 3``) and ``(steps + 1)`` block applications per restart, ``4 D^2 p`` flops each,
    instead of the dense route's two more ``(D, D)`` triangular solves and a full eigensolver. Eigenvalues of a PSD
    ``A`` that cluster at ``k`` slow the convergence (a wider ``block`` helps). Values are checked once, by the
    operator; the result is not differentiable.

    Examples
    --------
    >>> import torch
    >>> from lowrankedit.ops import generalized_eigh_topk
    >>> A = torch.diag(torch.arange(1.0, 41.0, dtype=torch.float64))
    >>> w, X, info = generalized_eigh_topk(A, torch.eye(40, dtype=torch.float64), k=2, tau=0.0)
    >>> w.round(decimals=8), info["converged"]
    (tensor([40., 39.], dtype=torch.float64), True)
    """
    op = "generalized_eigh_topk"
    A, B = as_tensor(A, op, "A"), as_tensor(B, op, "B")
    ints = {name: V.integer(v, name, op) for name, v in (("k", k), ("block", 0 if block is None else block),
                                                          ("steps", steps), ("max_restarts", max_restarts),
                                                          ("seed", seed))}
    if tol is None:
        tol = DEFAULT_TOL.get(A.dtype, 1e-10)
    tol = V.real(tol, "tol", op)
    w, X, res, restarts, applications, p, steps_used, converged = torch.ops.lowrankedit.generalized_eigh_topk(
        A.detach(), B.detach(), ints["k"], _tau_value(tau, op), ints["block"], ints["steps"], tol,
        ints["max_restarts"], ints["seed"], _unit_norm(normalize, op))
    info = {"residuals": res, "restarts": int(restarts), "applications": int(applications), "block": int(p),
            "steps": int(steps_used), "converged": bool(converged)}
    return GeneralizedEighTopk(w, X, info)
