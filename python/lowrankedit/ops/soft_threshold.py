"""Elementwise shrinkage (the proximal operator of ``tau * ||X||_1``): ``torch.ops.lowrankedit.soft_threshold``."""
import numbers

import torch

from ._interop import as_tensor

OP = "lowrankedit::soft_threshold"


def _tau_value(tau, op="soft_threshold"):
    """A Python float from a real number or a one-element tensor (its value is checked by the op)."""
    if isinstance(tau, torch.Tensor):
        if tau.numel() != 1:
            raise ValueError(f"{op}: expected tau to be a scalar, got a tensor of shape {tuple(tau.shape)}")
        tau = tau.item()
    if not isinstance(tau, numbers.Real) or isinstance(tau, bool):
        raise TypeError(f"{op}: expected tau to be a real number, got {type(tau).__name__}")
    return float(tau)


@torch.library.register_fake(OP)
def _fake(X, tau):
    return torch.empty_like(X, memory_format=torch.contiguous_format)


# Its autograd kernel is registered in C++ (pyext/soft_threshold.cpp): a Python one costs every call about 5 us.


def soft_threshold(X, tau):
    """Elementwise shrinkage ``sign(X) * max(|X| - tau, 0)``.

    Parameters
    ----------
    X : torch.Tensor, numpy.ndarray or __dlpack__ object
        Any shape, float32/float64/float16/bfloat16, CPU or CUDA, finite; need not be contiguous. NumPy and DLPack
        inputs are viewed as tensors without a copy.
    tau : float or 0-d tensor
        Threshold, finite and ``>= 0``.

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``X`` (contiguous), on ``X``'s device. Differentiable in ``X``.

    Raises
    ------
    ValueError
        ``X`` contains NaN or Inf (the message says which), ``tau`` is negative or not finite.

    Notes
    -----
    The proximal operator of ``tau * ||X||_1``; the sparse-part update of robust PCA. The operator is
    ``torch.ops.lowrankedit.soft_threshold(X, tau)``: it traces under ``torch.compile`` and ``torch.export``.

    Examples
    --------
    >>> import torch
    >>> from lowrankedit.ops import soft_threshold
    >>> soft_threshold(torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0]), 1.0)
    tensor([-1., -0., 0., 0., 2.])
    """
    X = as_tensor(X, "soft_threshold", "X")
    return torch.ops.lowrankedit.soft_threshold(X, _tau_value(tau))
