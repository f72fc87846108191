"""Both Jacobian Grams of a soft region and its complement from one pass over ``J``."""
import torch

from .._ext import _C


def masked_gram(J, w):
    """Weighted Grams ``J^T diag(w) J`` and ``J^T diag(1 - w) J``, batched, from one pass over ``J``.

    Parameters
    ----------
    J : torch.Tensor
        ``(B, P, D)``: ``B`` Jacobians of ``P`` rows (pixels) by ``D`` columns (latent entries); float32, float64,
        float16 or bfloat16; CPU or CUDA; need not be contiguous.
    w : torch.Tensor
        ``(B, P)`` per-batch weights or ``(P,)`` weights shared by the batch, values in ``[0, 1]`` (a soft mask);
        any floating dtype, same device as ``J``.

    Returns
    -------
    (G_in, G_out) : tuple of torch.Tensor
        Each ``(B, D, D)``, exactly symmetric. float64 for float64 ``J``, float32 otherwise (float16/bfloat16 inputs
        accumulate in float32).

    Notes
    -----
    ``G_in[b] = sum_p w[b, p] J[b, p]^T J[b, p]`` and ``G_out[b] = sum_p (1 - w[b, p]) J[b, p]^T J[b, p]``.
    No weighted copy of ``J`` is made (tiles of rows are weighted on the fly) and ``G_out`` is accumulated from its
    own weights, never as ``J^T J - G_in`` (which loses all accuracy where ``w`` is close to 1). On the CPU each
    Gram is ``A^T A`` over only the rows it weighs, scaled by ``sqrt(w)`` or ``sqrt(1 - w)``: with a region mask
    (0 or 1 almost everywhere) both Grams together cost about one ``J^T J`` product, half the composed baseline's
    work. The CUDA kernel computes the upper triangles in one pass and mirrors them. Not differentiable.

    Raises
    ------
    ValueError
        ``w`` contains NaN or values outside ``[0, 1]``.
    RuntimeError
        Wrong shapes, dtypes or devices.

    Examples
    --------
    >>> import torch
    >>> from lowrankedit.ops import masked_gram
    >>> J = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    >>> G_in, G_out = masked_gram(J, torch.tensor([1.0, 0.25]))
    >>> G_in
    tensor([[[1., 0.],
             [0., 1.]]])
    >>> G_out
    tensor([[[0., 0.],
             [0., 3.]]])
    """
    if not isinstance(J, torch.Tensor):
        raise TypeError(f"masked_gram: expected J to be a torch.Tensor, got {type(J).__name__}")
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"masked_gram: expected w to be a torch.Tensor, got {type(w).__name__}")
    G_in, G_out = _C.masked_gram(J, w)
    return G_in, G_out
