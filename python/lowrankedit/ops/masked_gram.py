"""Both Jacobian Grams of a soft region and its complement from one pass over ``J``:
``torch.ops.lowrankedit.masked_gram``."""
import torch

from ._interop import as_tensor

OP = "lowrankedit::masked_gram"


def _acc_dtype(dtype):
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


@torch.library.register_fake(OP)
def _fake(J, w):
    torch._check(J.dim() == 3, lambda: f"masked_gram: expected J of shape (B, P, D), got {tuple(J.shape)}")
    B, _, D = J.shape
    G = J.new_empty((B, D, D), dtype=_acc_dtype(J.dtype))
    return G, torch.empty_like(G)


# Its autograd kernel (dJ; not differentiable in w) is registered in C++ (pyext/masked_gram.cpp): a Python one
# costs every call about 5 us.


def masked_gram(J, w):
    """Weighted Grams ``J^T diag(w) J`` and ``J^T diag(1 - w) J``, batched, from one pass over ``J``.

    Parameters
    ----------
    J : torch.Tensor, numpy.ndarray or __dlpack__ object
        ``(B, P, D)``: ``B`` Jacobians of ``P`` rows (pixels) by ``D`` columns (latent entries); float32, float64,
        float16 or bfloat16; CPU or CUDA; finite; need not be contiguous (NumPy / DLPack inputs: no copy).
    w : torch.Tensor, numpy.ndarray or __dlpack__ object
        ``(B, P)`` per-batch weights or ``(P,)`` weights shared by the batch, values in ``[0, 1]`` (a soft mask);
        any floating dtype, same device as ``J``.

    Returns
    -------
    (G_in, G_out) : tuple of torch.Tensor
        Each ``(B, D, D)`` on ``J``'s device, exactly symmetric. float64 for float64 ``J``, float32 otherwise
        (float16/bfloat16 inputs accumulate in float32). Differentiable in ``J`` (not in ``w``).

    Notes
    -----
    ``G_in[b] = sum_p w[b, p] J[b, p]^T J[b, p]`` and ``G_out[b] = sum_p (1 - w[b, p]) J[b, p]^T J[b, p]``.
    No weighted copy of ``J`` is made (tiles of rows are weighted on the fly) and ``G_out`` is accumulated from its
    own weights, never as ``J^T J - G_in`` (which loses all accuracy where ``w`` is close to 1). On the CPU each
    Gram is ``A^T A`` over only the rows it weighs, scaled by ``sqrt(w)`` or ``sqrt(1 - w)``: with a region mask
    (0 or 1 almost everywhere) both Grams together cost about one ``J^T J`` product, half the composed baseline's
    work. The CUDA kernel computes the upper triangles in one pass and mirrors them. The operator is
    ``torch.ops.lowrankedit.masked_gram(J, w)`` (traces under ``torch.compile`` and ``torch.export``).

    Raises
    ------
    ValueError
        ``J`` or ``w`` contains NaN or Inf, or ``w`` has values outside ``[0, 1]``.
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
    J = as_tensor(J, "masked_gram", "J")
    w = as_tensor(w, "masked_gram", "w")
    return tuple(torch.ops.lowrankedit.masked_gram(J, w))
