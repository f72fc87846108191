"""Singular-value thresholding (the proximal operator of ``tau * ||X||_*``), eigen-based for symmetric input:
``torch.ops.lowrankedit.singular_value_threshold``."""
import numbers

import torch

from ._interop import as_tensor

OP = "lowrankedit::singular_value_threshold"


def _symmetric_flag(symmetric, op="singular_value_threshold"):
    if symmetric is None:
        return -1
    if isinstance(symmetric, bool):
        return int(symmetric)
    raise TypeError(f"{op}: expected symmetric to be None, True or False, got {symmetric!r}")


def _per_matrix(value, op, name):
    """A real number or a tensor -> a tensor (the op checks its shape and values)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)
    raise TypeError(f"{op}: expected {name} to be a real number or a tensor, got {type(value).__name__}")


@torch.library.register_fake(OP)
def _fake(X, tau, symmetric=-1):
    return torch.empty_like(X, memory_format=torch.contiguous_format), X.new_empty(X.shape[:-2], dtype=torch.int64)


@torch.library.register_fake("lowrankedit::_svt_krylov")
def _fake_krylov(A, tau, W=None, steps=3, seed=0):
    p = torch.library.get_ctx().new_dynamic_size(min=2)  # max(rank) + 2 columns: known after the run
    return (torch.empty_like(A, memory_format=torch.contiguous_format), A.new_empty(A.shape[:1], dtype=torch.int64),
            A.new_empty((A.shape[0], A.shape[1], p)))


def singular_value_threshold(X, tau, *, symmetric=None, return_rank=False):
    """Shrink the singular values: ``U diag(max(s - tau, 0)) V^T``, batched.

    Parameters
    ----------
    X : torch.Tensor, numpy.ndarray or __dlpack__ object
        ``(..., m, n)`` float32 or float64, CPU or CUDA, finite (NumPy / DLPack inputs: no copy).
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
        ``(..., m, n)``, same dtype and device as ``X`` (and the rank when ``return_rank``). Not differentiable.

    Raises
    ------
    ValueError
        ``X`` contains NaN or Inf, ``tau`` is negative, not finite or of the wrong shape.

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
    X = as_tensor(X, op, "X")
    Y, rank = torch.ops.lowrankedit.singular_value_threshold(X.detach(), _per_matrix(tau, op, "tau"),
                                                             _symmetric_flag(symmetric))
    return (Y, rank) if return_rank else Y
