"""Singular-value thresholding (the proximal operator of ``tau * ||X||_*``), eigen-based for symmetric input."""
import math
import numbers

import torch

from .._ext import _C


def _per_matrix(value, batch_shape, device, op, name, *, positive=False):
    """A float or tensor -> contiguous float64 tensor ``(B,)`` (one value per matrix), validated."""
    B = math.prod(batch_shape)
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{op}: expected {name} to be real, got dtype {value.dtype}")
        t = value.detach().to(device=device, dtype=torch.float64)
        if t.numel() == 1:
            t = t.reshape(1).expand(B)
        elif tuple(t.shape) == tuple(batch_shape) or (t.dim() == 1 and t.numel() == B):
            t = t.reshape(B)
        else:
            raise ValueError(f"{op}: expected {name} to be a scalar or of the batch shape {tuple(batch_shape)}, "
                             f"got a tensor of shape {tuple(value.shape)}")
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        t = torch.full((B,), float(value), dtype=torch.float64, device=device)
    else:
        raise TypeError(f"{op}: expected {name} to be a real number or a tensor, got {type(value).__name__}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{op}: expected {name} to be finite, got {value}")
    if positive and not bool((t > 0).all()):
        raise ValueError(f"{op}: expected {name} > 0, got {value}")
    if not positive and not bool((t >= 0).all()):
        raise ValueError(f"{op}: expected {name} >= 0, got {value}")
    return t.contiguous()


def _symmetric_flag(symmetric, op="singular_value_threshold"):
    if symmetric is None:
        return -1
    if isinstance(symmetric, bool):
        return int(symmetric)
    raise TypeError(f"{op}: expected symmetric to be None, True or False, got {symmetric!r}")


SYMMETRY_TOL = 1e3  # max |X - X^T| <= SYMMETRY_TOL * eps * max |X| counts as symmetric (symmetric=None)


def _symmetric_to_rounding(X):
    """``(X_sym, flag)`` for ``symmetric=None``: ``flag = 1`` when the square matrices ``X (..., n, n)`` are
    symmetric to rounding (``max |X - X^T| <= 1000 eps max |X|``, as Grams made by a GEMM are, which are rarely
    bitwise symmetric), and then ``X_sym = (X + X^T) / 2``; otherwise ``(X, 0)``."""
    if X.dim() < 2 or X.shape[-1] != X.shape[-2]:
        return X, 0
    if X.numel() == 0:
        return X, 1
    asym = (X - X.mT).abs().amax()
    if not bool(asym <= SYMMETRY_TOL * torch.finfo(X.dtype).eps * X.abs().amax()):
        return X, 0
    return (X + X.mT) * 0.5 if bool(asym > 0) else X, 1


def singular_value_threshold(X, tau, *, symmetric=None, return_rank=False):
    """Shrink the singular values: ``U diag(max(s - tau, 0)) V^T``, batched.

    Parameters
    ----------
    X : torch.Tensor
        ``(..., m, n)`` float32 or float64, CPU or CUDA, finite.
    tau : float or torch.Tensor
        Threshold ``>= 0``: one value, or one per matrix (shape ``X.shape[:-2]``).
    symmetric : bool or None
        ``True``: ``X`` is symmetric (square); an eigendecomposition of its lower triangle is used and only the
        eigencomponents with ``|lambda| > tau`` are multiplied back. ``False``: an SVD. ``None`` (default): ``True``
        when the matrices are symmetric to rounding (``max |X - X^T| <= 1000 eps max |X|``, as Grams made by a
        GEMM are), thresholding their symmetric part ``(X + X^T) / 2``.
    return_rank : bool
        Also return the rank of the result, ``(...)`` int64 (the number of singular values above ``tau``).

    Returns
    -------
    torch.Tensor
        ``(..., m, n)``, same dtype as ``X`` (and the rank when ``return_rank``).

    Notes
    -----
    The proximal operator of ``tau * ||X||_*``: ``argmin_Y tau ||Y||_* + ||Y - X||_F^2 / 2``. For a symmetric
    ``X = U diag(lambda) U^T`` the singular values are ``|lambda|``, so the result is
    ``U_k diag(sign(lambda_k) (|lambda_k| - tau)) U_k^T`` over the ``k`` surviving eigenpairs (an eigh costs a
    fraction of an SVD, and the rebuild is an ``(n, k) x (k, n)`` product).

    Examples
    --------
    >>> import torch
    >>> from lowrankedit.ops import singular_value_threshold
    >>> singular_value_threshold(torch.diag(torch.tensor([3.0, 1.0, -2.0])), 1.5)
    tensor([[ 1.5000,  0.0000,  0.0000],
            [ 0.0000,  0.0000,  0.0000],
            [ 0.0000,  0.0000, -0.5000]])
    """
    op = "singular_value_threshold"
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{op}: expected X to be a torch.Tensor, got {type(X).__name__}")
    if X.dim() < 2:
        raise ValueError(f"{op}: expected X of shape (..., m, n), got {tuple(X.shape)}")
    t = _per_matrix(tau, X.shape[:-2], X.device, op, "tau")
    X, flag = X.detach(), _symmetric_flag(symmetric)
    if flag == -1 and X.is_floating_point():  # (other dtypes, and NaN/Inf, which never pass, meet the kernel's checks)
        X, flag = _symmetric_to_rounding(X)
    Y, rank = _C.singular_value_threshold(X, t, flag, True)
    return (Y, rank) if return_rank else Y
