"""Symmetric-definite generalized eigenproblems ``A x = lambda (B + tau tr(B) I) x`` (ReSeFa, Eqs. 8-12).

Two entry points:

* :func:`generalized_eigh` - dense ``A`` and ``B`` ``(..., D, D)``, batched: Cholesky of the regularized ``B``,
  ``C = L^{-1} A L^{-T}``, a symmetric eigensolver, ``x = L^{-T} y`` (the operator
  ``torch.ops.lowrankedit.generalized_eigh``).
* :func:`generalized_eigh_woodbury` - the background given by a thin factor ``Fb (m, D)``, ``m < D``
  (``B = Fb^T Fb``): the paper's Sherman-Morrison-Woodbury route (Eq. 12). Only ``m x m`` (and ``r x r``)
  matrices are ever factored; no ``D x D`` matrix is inverted or Cholesky-factored.
"""
import math
import numbers
from typing import NamedTuple

import torch

from .. import distributed
from ._interop import as_tensor


class GeneralizedEigh(NamedTuple):
    """``eigenvalues (..., k)`` largest first and ``eigenvectors (..., D, k)``, one per column."""

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor


def _tau_value(tau, op):
    """A Python float from a real number or a one-element tensor (the compiled op checks its value; the Python-only
    Woodbury route calls :func:`_check_tau`)."""
    if isinstance(tau, torch.Tensor):
        if tau.numel() != 1:
            raise ValueError(f"{op}: expected tau to be a scalar, got a tensor of shape {tuple(tau.shape)}")
        tau = tau.item()
    if not isinstance(tau, numbers.Real) or isinstance(tau, bool):
        raise TypeError(f"{op}: expected tau to be a real number, got {type(tau).__name__}")
    return float(tau)


def _check_tau(tau, op):
    if not math.isfinite(tau):
        raise ValueError(f"{op}: expected tau to be finite, got {tau}")
    if tau < 0:
        raise ValueError(f"{op}: expected tau >= 0, got {tau}")
    return tau


@torch.library.register_fake("lowrankedit::generalized_eigh")
def _fake(A, B, tau, unit_norm=True):
    return A.new_empty(A.shape[:-1]), torch.empty_like(A, memory_format=torch.contiguous_format)


def _unit_norm(normalize, op):
    if normalize not in ("unit", "B"):
        raise ValueError(f"{op}: expected normalize to be 'unit' or 'B', got {normalize!r}")
    return normalize == "unit"


def generalized_eigh(A, B, tau=1e-3, *, normalize="unit"):
    """Eigenpairs of ``A x = lambda (B + tau tr(B) I) x``, largest eigenvalue first.

    Parameters
    ----------
    A : torch.Tensor, numpy.ndarray or __dlpack__ object
        ``(..., D, D)`` symmetric (only ``(A + A^T) / 2`` is used), float32 or float64, CPU or CUDA, finite
        (NumPy / DLPack inputs: no copy).
    B : torch.Tensor, numpy.ndarray or __dlpack__ object
        ``(..., D, D)`` symmetric positive semi-definite, same shape, dtype and device as ``A``.
    tau : float
        Regularization, ``>= 0``: ``B' = (B + B^T) / 2 + tau * tr(B) * I`` (ReSeFa Eq. 10; the paper's
        ``tau = 1e-3``). Must make ``B'`` positive definite; ``tau = 0`` with a singular ``B`` raises.
    normalize : {"unit", "B"}
        ``"unit"`` (default): each eigenvector has Euclidean norm 1 (what ReSeFa's directions use).
        ``"B"``: ``X^T B' X = I`` (the natural normalization of the generalized problem).

    Returns
    -------
    GeneralizedEigh
        ``eigenvalues (..., D)`` in descending order and ``eigenvectors (..., D, D)`` with eigenvector ``j``
        in column ``j``; each column's largest-magnitude entry is positive (a deterministic sign). torch tensors
        on ``A``'s device.

    Raises
    ------
    RuntimeError
        ``"not positive definite"`` when ``B'`` is not: the message gives ``tau``, the batch element and the
        cause (``tr(B) = 0``, a negative trace, a singular ``B`` with ``tau = 0``, an eigenvalue of ``B`` below
        ``-tau tr(B)``); also wrong shapes, dtypes and devices.
    ValueError, TypeError
        NaN or Inf in ``A`` or ``B``; bad ``tau`` or ``normalize``.

    Notes
    -----
    With ``B' = L L^T`` (Cholesky), ``A x = lambda B' x`` is the symmetric problem ``C y = lambda y`` with
    ``C = L^{-1} A L^{-T}`` and ``x = L^{-T} y`` (ReSeFa Eq. 9). Cost: one Cholesky, three triangular solves and
    one symmetric eigensolver, about 5x less work than the official ``eig(inv(B') A)`` and exactly symmetric
    (real eigenvalues, no imaginary parts to drop). The result is not differentiable (no autograd).

    Examples
    --------
    >>> import torch
    >>> from lowrankedit.ops import generalized_eigh
    >>> A = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    >>> B = torch.diag(torch.tensor([2.0, 1.0], dtype=torch.float64))
    >>> w, X = generalized_eigh(A, B, tau=0.0)
    >>> w.round(decimals=12)
    tensor([2., 1.], dtype=torch.float64)
    >>> X.round(decimals=12).abs()
    tensor([[1., 0.],
            [0., 1.]], dtype=torch.float64)
    """
    if distributed.should_shard(A, B):  # under torch.distributed each rank solves a share of the batch
        return distributed.shard_batched(generalized_eigh, (A, B), tau, normalize=normalize)
    op = "generalized_eigh"
    A, B = as_tensor(A, op, "A"), as_tensor(B, op, "B")
    w, X = torch.ops.lowrankedit.generalized_eigh(A.detach(), B.detach(), _tau_value(tau, op), _unit_norm(normalize, op))
    return GeneralizedEigh(w, X)


def _fix_columns(X, unit):
    """Largest-magnitude entry of each column positive; unit Euclidean norm if ``unit``."""
    idx = X.abs().argmax(dim=-2, keepdim=True)
    sign = torch.where(X.gather(-2, idx) < 0, -1.0, 1.0).to(X.dtype)
    X = X * sign
    if unit:
        X = X / X.norm(dim=-2, keepdim=True).clamp_min(torch.finfo(X.dtype).tiny)
    return X


class _Woodbury:
    """``B' = Fb^T Fb + a I`` with ``Fb (m, D)``, through the eigendecomposition ``Fb Fb^T = U diag(s2) U^T``
    (``m x m``). With ``V = Fb^T U diag(s)^{-1}`` (the right singular vectors of ``Fb``):

    * inverse (Eq. 12, Woodbury): ``B'^{-1} = (I - Fb^T (a I + Fb Fb^T)^{-1} Fb) / a
      = I / a + Fb^T U diag(-1 / (a (a + s2))) U^T Fb``;
    * inverse square root: ``B'^{-1/2} = I / sqrt(a) + Fb^T U diag(phi) U^T Fb`` with
      ``phi = ((a + s2)^{-1/2} - a^{-1/2}) / s2 = -1 / (sqrt(a) sqrt(a + s2) (sqrt(a) + sqrt(a + s2)))``,
      written without the division by ``s2`` so a rank-deficient ``Fb`` (``s2 = 0``) needs no cut-off.
    """

    def __init__(self, Fb, a):
        self.Fb, self.a = Fb, a
        s2, U = torch.linalg.eigh(Fb @ Fb.mT)
        s2 = s2.clamp_min(0)
        sa, r = math.sqrt(a), torch.sqrt(a + s2)
        self.M_inv = (U * (-1.0 / (a * (a + s2)))) @ U.mT
        self.M_isqrt = (U * (-1.0 / (sa * r * (sa + r)))) @ U.mT
        self.sa = sa

    def inv(self, Y):
        """``B'^{-1} Y`` for ``Y (D, p)``; ``O(m D p)``."""
        return Y / self.a + self.Fb.mT @ (self.M_inv @ (self.Fb @ Y))

    def isqrt(self, Y):
        """``B'^{-1/2} Y`` for ``Y (D, p)``; ``O(m D p)``."""
        return Y / self.sa + self.Fb.mT @ (self.M_isqrt @ (self.Fb @ Y))


def generalized_eigh_woodbury(Fb, A=None, *, Fa=None, tau=1e-3, k=None, normalize="unit"):
    """Top eigenpairs of ``A x = lambda (Fb^T Fb + tau tr(Fb^T Fb) I) x`` with the background as a thin factor.

    Parameters
    ----------
    Fb : torch.Tensor
        ``(m, D)`` background factor, ``B = Fb^T Fb`` (pass ``Jb / sqrt(n_bg)`` for ``B = Jb^T Jb / n_bg``);
        typically ``m < D`` (then ``B`` is singular and ``tau > 0`` is required). float32 or float64.
    A : torch.Tensor, optional
        ``(D, D)`` symmetric PSD foreground Gram. Give exactly one of ``A`` and ``Fa``.
    Fa : torch.Tensor, optional
        ``(r, D)`` foreground factor, ``A = Fa^T Fa``; the problem then reduces exactly to ``r x r``.
    tau : float
        ``> 0``; ``a = tau tr(B) = tau ||Fb||_F^2`` is added to the diagonal of ``B``.
    k : int, optional
        Number of eigenpairs (largest first). Default: all ``D`` for dense ``A``, ``min(r, D)`` for ``Fa``
        (the remaining ``D - r`` eigenvalues are exactly 0 and their eigenvectors are not unique).
    normalize : {"unit", "B"}
        As in :func:`generalized_eigh`.

    Returns
    -------
    GeneralizedEigh
        ``eigenvalues (k,)`` descending, ``eigenvectors (D, k)`` (columns; largest-magnitude entry positive).

    Notes
    -----
    Woodbury (ReSeFa Eq. 12; the paper's display drops the ``1/a`` factors):
    ``(Fb^T Fb + a I)^{-1} = (I - Fb^T (a I_m + Fb Fb^T)^{-1} Fb) / a``. Everything goes through the
    eigendecomposition of the ``m x m`` matrix ``Fb Fb^T``; see :class:`_Woodbury`.

    * ``Fa`` given: the nonzero eigenvalues of ``B'^{-1} Fa^T Fa`` are those of the symmetric ``r x r`` matrix
      ``Fa B'^{-1} Fa^T``; for its eigenvector ``u``, ``x = B'^{-1} Fa^T u``. Cost ``O(D (m^2 + r m + r^2))``.
    * dense ``A``: the symmetric ``C = B'^{-1/2} A B'^{-1/2}`` is formed in ``O(m D^2)`` through the closed-form
      ``B'^{-1/2}`` (no ``D x D`` inverse or Cholesky), its top ``k`` eigenvectors ``y`` give ``x = B'^{-1/2} y``.
      The symmetric eigensolver on ``C`` is still ``O(D^3)``; the thin-``Fa`` form is the fast one.

    Not batched; not differentiable.

    Examples
    --------
    >>> import torch
    >>> from lowrankedit.ops import generalized_eigh, generalized_eigh_woodbury
    >>> g = torch.Generator().manual_seed(0)
    >>> Fa = torch.randn(3, 40, generator=g, dtype=torch.float64)
    >>> Fb = torch.randn(10, 40, generator=g, dtype=torch.float64)
    >>> w, X = generalized_eigh_woodbury(Fb, Fa=Fa, tau=1e-2)
    >>> wd, Xd = generalized_eigh(Fa.T @ Fa, Fb.T @ Fb, tau=1e-2)
    >>> bool(torch.allclose(w, wd[:3])) and bool(torch.allclose(X, Xd[:, :3]))
    True
    """
    op = "generalized_eigh_woodbury"
    unit = _unit_norm(normalize, op)
    tau = _check_tau(_tau_value(tau, op), op)
    Fb = as_tensor(Fb, op, "Fb")
    A = None if A is None else as_tensor(A, op, "A")
    Fa = None if Fa is None else as_tensor(Fa, op, "Fa")
    if not isinstance(Fb, torch.Tensor) or Fb.dim() != 2:
        got = tuple(Fb.shape) if isinstance(Fb, torch.Tensor) else type(Fb).__name__
        raise ValueError(f"{op}: expected Fb of shape (m, D), got {got}")
    if Fb.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{op}: expected Fb of dtype float32 or float64, got {Fb.dtype}")
    if (A is None) == (Fa is None):
        raise ValueError(f"{op}: expected exactly one of A (D, D) and Fa (r, D)")
    m, D = Fb.shape
    other_name, other = ("A", A) if A is not None else ("Fa", Fa)
    if not isinstance(other, torch.Tensor) or other.dim() != 2 or other.shape[-1] != D or (
            A is not None and A.shape[0] != D):
        want = f"({D}, {D})" if A is not None else f"(r, {D})"
        got = tuple(other.shape) if isinstance(other, torch.Tensor) else type(other).__name__
        raise ValueError(f"{op}: expected {other_name} of shape {want}, got {got}")
    if other.dtype != Fb.dtype or other.device != Fb.device:
        raise ValueError(f"{op}: expected {other_name} with Fb's dtype and device ({Fb.dtype}, {Fb.device}), "
                         f"got ({other.dtype}, {other.device})")
    for name, t in (("Fb", Fb), (other_name, other)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{op}: {name} contains NaN or Inf")
    n_max = D if A is not None else min(other.shape[0], D)
    if k is None:
        k = n_max
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or not 1 <= k <= n_max:
        raise ValueError(f"{op}: expected k to be an int in [1, {n_max}], got {k!r}")
    k = int(k)
    with torch.no_grad():
        a = tau * float(Fb.double().square().sum())
        if a <= 0:
            raise RuntimeError(
                f"{op}: B + tau*tr(B)*I is not positive definite with tau = {tau}: the Woodbury route needs "
                f"a = tau*tr(B) > 0 (B = Fb^T Fb has rank <= {m}); use tau > 0 (the paper uses tau = 1e-3)")
        wb = _Woodbury(Fb, a)
        if Fa is not None:
            BiFt = wb.inv(Fa.mT)                       # (D, r) = B'^{-1} Fa^T
            S = Fa @ BiFt                              # (r, r) = Fa B'^{-1} Fa^T, symmetric PSD
            lam, U = torch.linalg.eigh((S + S.mT) / 2)
            lam, U = lam.flip(-1)[:k], U.flip(-1)[:, :k]
            X = BiFt @ U                               # B'^{-1} Fa^T u; x^T B' x = lambda
            if not unit:
                X = X / lam.clamp_min(torch.finfo(X.dtype).tiny).sqrt()
        else:
            T = wb.isqrt(A)                            # (D, D) = B'^{-1/2} A
            C = wb.isqrt(T.mT)                         # B'^{-1/2} A^T B'^{-1/2} = C (A symmetric)
            lam, Y = torch.linalg.eigh((C + C.mT) / 2)
            lam, Y = lam.flip(-1)[:k], Y.flip(-1)[:, :k]
            X = wb.isqrt(Y)                            # B'-orthonormal
        return GeneralizedEigh(lam, _fix_columns(X, unit))
