"""Low-level ops, batched over leading dimensions; each accepts CPU and CUDA tensors.

Every op has a plain-PyTorch float64 reference in :mod:`lowrankedit.reference` that the tests compare against.
"""
from .soft_threshold import soft_threshold
from .masked_gram import masked_gram
# [ops: imports]

__all__ = [
    "soft_threshold",
    "masked_gram",
    # [ops: names]
]
