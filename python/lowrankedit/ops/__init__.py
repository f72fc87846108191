"""Low-level ops, batched over leading dimensions; each accepts CPU and CUDA tensors, NumPy arrays and ``__dlpack__``
objects, and returns torch tensors.

Every public op is a registered PyTorch operator, ``torch.ops.lowrankedit.<name>`` (schema, CPU and CUDA kernels,
a fake kernel for ``torch.compile`` / ``torch.export``, autograd where it applies), wrapped here by a function of the
same name. The extension's registrations are the list of ops: importing this package fails if one has no wrapper.
Every op has a plain-PyTorch float64 reference in :mod:`lowrankedit.reference` that the tests compare against.
"""
from .._ext import registered_ops
from .soft_threshold import soft_threshold
from .panda_grad import panda_grad, panda_step
from .generalized_eigh import generalized_eigh, generalized_eigh_woodbury
from .generalized_eigh_topk import generalized_eigh_topk
from .singular_value_threshold import singular_value_threshold
from .rpca import rpca
from .rpca_ialm import rpca_ialm
from .masked_gram import masked_gram

_missing = [name for name in registered_ops() if name not in globals()]
if _missing:  # pragma: no cover - a registration without its wrapper
    raise ImportError(f"lowrankedit.ops: registered ops without a Python wrapper: {_missing}")

# the registered ops, and the one composed in Python (the Woodbury route of generalized_eigh)
__all__ = registered_ops() + ["generalized_eigh_woodbury"]
