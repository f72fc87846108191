"""PandA's factor gradients and its fused block-coordinate step (Oldfield et al., ICLR 2023, Eqs. 3-5, Algorithm 1)."""
import numbers
from collections import namedtuple

import torch

from ._interop import as_tensor

PandaStep = namedtuple("PandaStep", ["appearances", "parts", "loss", "new_loss", "lr_parts", "lr_appearances"])
PandaStep.__doc__ = """Result of :func:`panda_step`: the new factors ``A (C, Rc)`` and ``P (S, Rs)``, the loss before and
after the step (0-dim tensors), and the step sizes used (0.0 where no trial decreased the loss)."""


def _tensors(op, Z, A, P):
    return tuple(as_tensor(t, op, name).detach() for name, t in (("Z", Z), ("A", A), ("P", P)))


def _lr_value(op, name, lr):
    """A Python float from a real number or a one-element tensor (its value is checked by the op)."""
    if isinstance(lr, torch.Tensor):
        if lr.numel() != 1:
            raise ValueError(f"{op}: expected {name} to be a scalar, got a tensor of shape {tuple(lr.shape)}")
        lr = lr.item()
    if not isinstance(lr, numbers.Real) or isinstance(lr, bool):
        raise TypeError(f"{op}: expected {name} to be a real number, got {type(lr).__name__}")
    return float(lr)


@torch.library.register_fake("lowrankedit::panda_grad")
def _fake_grad(Z, A, P):
    return torch.empty_like(A), torch.empty_like(P), Z.new_empty(())


@torch.library.register_fake("lowrankedit::panda_step")
def _fake_step(Z, A, P, lr_parts, lr_appearances, line_search=False, max_backtracks=40):
    lr = torch.empty((), dtype=torch.float64, device="cpu")
    return torch.empty_like(A), torch.empty_like(P), Z.new_empty(()), Z.new_empty(()), lr, torch.empty_like(lr)


def panda_grad(Z, A, P):
    """Loss and factor gradients of PandA's semi-nonnegative factorization, summed over the batch.

    Parameters
    ----------
    Z : torch.Tensor, numpy.ndarray or __dlpack__ object
        ``(N, C, S)`` feature maps, each sample's ``(C, S)`` channel-by-space unfolding; float32 or float64, CPU or
        CUDA, finite (as ``A`` and ``P``; NumPy / DLPack inputs: no copy).
    A : torch.Tensor
        ``(C, Rc)`` appearance factors (not assumed orthonormal); same dtype and device as ``Z``.
    P : torch.Tensor
        ``(S, Rs)`` parts factors; same dtype and device as ``Z``.

    Returns
    -------
    grad_A : torch.Tensor
        ``(C, Rc)``, the gradient of the loss in ``A``.
    grad_P : torch.Tensor
        ``(S, Rs)``, the gradient of the loss in ``P``.
    loss : torch.Tensor
        0-dim, ``sum_i ||Z_i - A A^T Z_i P P^T||_F^2``. All three torch tensors on ``Z``'s device.

    Notes
    -----
    With ``X_i = Z_i P``, ``Y_i = A^T X_i``, ``G_A = A^T A``, ``G_P = P^T P`` and ``K_i = G_A Y_i G_P - 2 Y_i``::

        grad_P = 2 (P sum_i Y_i^T G_A Y_i + sum_i Z_i^T A K_i)        (paper Eq. 4 / 11)
        grad_A = 2 (A sum_i Y_i G_P Y_i^T + sum_i X_i K_i^T)          (paper Eq. 13)
        loss   = sum_i ||Z_i||^2 + <K_i, Y_i>

    The same quantities as the official left-to-right chains, re-associated so that only two GEMMs read ``Z``
    (``Z P`` and ``Z^T B``, each with ``Rs`` columns) and no ``S x S`` or per-sample ``C x C`` matrix is formed.
    ``||Z||^2`` is accumulated in float64. The loss is an expanded form: in float32 its absolute error is about
    ``1e-7 * ||Z||^2``. Not differentiable (a gradient, not a loss, is its output).

    Examples
    --------
    >>> import torch
    >>> from lowrankedit.ops import panda_grad
    >>> Z = torch.rand(2, 4, 9, dtype=torch.float64)
    >>> A, P = torch.linalg.qr(torch.randn(4, 2, dtype=torch.float64))[0], torch.rand(9, 3, dtype=torch.float64)
    >>> gA, gP, loss = panda_grad(Z, A, P)
    >>> gA.shape, gP.shape, loss.shape
    (torch.Size([4, 2]), torch.Size([9, 3]), torch.Size([]))
    >>> R = Z - A @ A.T @ Z @ P @ P.T
    >>> bool(torch.isclose(loss, (R ** 2).sum()))
    True
    """
    return tuple(torch.ops.lowrankedit.panda_grad(*_tensors("panda_grad", Z, A, P)))


def panda_step(Z, A, P, lr_parts, lr_appearances=None, *, line_search=False, max_backtracks=40):
    """One iteration of PandA's Algorithm 1: a projected gradient step in the parts, then a step in the appearances.

    Parameters
    ----------
    Z : torch.Tensor
        ``(N, C, S)`` feature maps (float32 or float64, CPU or CUDA).
    A : torch.Tensor
        ``(C, Rc)`` appearance factors.
    P : torch.Tensor
        ``(S, Rs)`` non-negative parts factors.
    lr_parts : float
        Step size of the parts block (``>= 0``); with ``line_search`` the first trial.
    lr_appearances : float, optional
        Step size of the appearances block; defaults to ``lr_parts`` (the official code uses one ``lr``).
    line_search : bool
        Backtrack each block's step (halving from the given size) until the Armijo condition
        ``L(new) <= L(old) + 1e-4 <grad, new - old>`` holds. A block with no decreasing trial within
        ``max_backtracks`` halvings is left unchanged (its reported step is 0.0).
    max_backtracks : int
        At most this many halvings per block (``0 <= max_backtracks <= 1000``).

    Returns
    -------
    PandaStep
        ``(appearances, parts, loss, new_loss, lr_parts, lr_appearances)``: the new ``A``, ``P``, the loss at the
        input factors and at the new ones (0-dim), and the step sizes used.

    Notes
    -----
    ``P' = max(0, P - lr_P grad_P L(A, P))``, then ``A' = A - lr_A grad_A L(A, P')`` (gradients summed over the batch,
    as in the official code). The projection, the step and the directional derivative ``<grad, new - old>`` of the
    Armijo test are one fused pass; each parts trial costs one GEMM over ``Z`` (``Z P'``, which the appearance
    gradient needs anyway), and the appearance trials cost no pass over ``Z``.

    Examples
    --------
    >>> import torch
    >>> from lowrankedit.ops import panda_step
    >>> Z = torch.rand(4, 6, 16, dtype=torch.float64)
    >>> A, P = torch.linalg.qr(torch.randn(6, 3, dtype=torch.float64))[0], torch.rand(16, 2, dtype=torch.float64)
    >>> out = panda_step(Z, A, P, 1.0, line_search=True)
    >>> bool(out.new_loss <= out.loss), bool((out.parts >= 0).all())
    (True, True)
    """
    lr_parts = _lr_value("panda_step", "lr_parts", lr_parts)
    lr_appearances = lr_parts if lr_appearances is None else _lr_value("panda_step", "lr_appearances", lr_appearances)
    if not isinstance(max_backtracks, numbers.Integral) or isinstance(max_backtracks, bool):
        raise TypeError(f"panda_step: expected max_backtracks to be an int, got {type(max_backtracks).__name__}")
    A1, P1, loss, new_loss, lr_P, lr_A = torch.ops.lowrankedit.panda_step(
        *_tensors("panda_step", Z, A, P), lr_parts, lr_appearances, bool(line_search), int(max_backtracks))
    return PandaStep(A1, P1, loss, new_loss, float(lr_P), float(lr_A))
