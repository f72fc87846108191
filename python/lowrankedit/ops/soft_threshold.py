"""Elementwise shrinkage (the proximal operator of ``tau * ||X||_1``)."""
import math
import numbers

import torch

from .._ext import _C


def _tau_value(tau, op="soft_threshold"):
    if isinstance(tau, torch.Tensor):
        if tau.numel() != 1:
            raise ValueError(f"{op}: expected tau to be a scalar, got a tensor of shape {tuple(tau.shape)}")
        tau = tau.item()
    if not isinstance(tau, numbers.Real):
        raise TypeError(f"{op}: expected tau to be a real number, got {type(tau).__name__}")
    tau = float(tau)
    if math.isnan(tau) or math.isinf(tau):
        raise ValueError(f"{op}: expected tau to be finite, got {tau}")
    if tau < 0:
        raise ValueError(f"{op}: expected tau >= 0, got {tau}")
    return tau


class _SoftThreshold(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, tau):
        Y = _C.soft_threshold(X, tau)
        ctx.save_for_backward(X)
        ctx.tau = tau
        return Y

    @staticmethod
    def backward(ctx, grad):
        (X,) = ctx.saved_tensors
        return grad * (X.abs() > ctx.tau).to(grad.dtype), None


def soft_threshold(X, tau):
    """Elementwise shrinkage ``sign(X) * max(|X| - tau, 0)``.

    Parameters
    ----------
    X : torch.Tensor
        Any shape, float32/float64/float16/bfloat16, CPU or CUDA; need not be contiguous.
    tau : float or 0-d tensor
        Threshold, finite and ``>= 0``.

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``X`` (contiguous). Differentiable in ``X``.

    Notes
    -----
    The proximal operator of ``tau * ||X||_1``; the sparse-part update of robust PCA. NaN entries stay NaN.

    Examples
    --------
    >>> import torch
    >>> from lowrankedit.ops import soft_threshold
    >>> soft_threshold(torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0]), 1.0)
    tensor([-1., -0., 0., 0., 2.])
    """
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"soft_threshold: expected X to be a torch.Tensor, got {type(X).__name__}")
    tau = _tau_value(tau)
    if X.requires_grad and torch.is_grad_enabled():
        return _SoftThreshold.apply(X, tau)
    return _C.soft_threshold(X, tau)
