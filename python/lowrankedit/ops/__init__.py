"""Low-level ops, batched over leading dimensions; each accepts CPU and CUDA tensors.

Every op has a plain-PyTorch float64 reference in :mod:`lowrankedit.reference` that the tests compare against.
"""
from .soft_threshold import soft_threshold
from .panda_grad import panda_grad, panda_step
from .generalized_eigh import generalized_eigh, generalized_eigh_woodbury
from .singular_value_threshold import singular_value_threshold
from .rpca import rpca
from .masked_gram import masked_gram
# [ops: imports]

__all__ = [
    "soft_threshold",
    "panda_grad",
    "panda_step",
    "generalized_eigh",
    "generalized_eigh_woodbury",
    "singular_value_threshold",
    "rpca",
    "masked_gram",
    # [ops: names]
]
