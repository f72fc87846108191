"""Inputs from other array libraries: NumPy arrays and any ``__dlpack__`` object (CuPy, JAX, ...) become torch
tensors that share their memory where the layout allows (no copy); every op returns torch tensors."""
import warnings

import torch


def as_tensor(x, op, name):
    """``x`` as a ``torch.Tensor``: tensors unchanged; NumPy arrays through ``torch.from_numpy`` (shared memory; a
    copy only for layouts torch cannot view, such as negative strides); ``__dlpack__`` objects through
    ``torch.from_dlpack`` (shared memory, same device)."""
    if isinstance(x, torch.Tensor):
        return x
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        np = None
    if np is not None and isinstance(x, np.ndarray):
        with warnings.catch_warnings():
            # a read-only array is fine: the ops never write their inputs
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            try:
                return torch.from_numpy(x)
            except (TypeError, ValueError, RuntimeError) as exc:
                if x.dtype.kind not in "fiub":
                    raise TypeError(f"{op}: expected {name} to have a numeric dtype, got NumPy dtype {x.dtype}") from exc
                return torch.from_numpy(np.ascontiguousarray(x))  # e.g. negative strides: the one copy
    if hasattr(x, "__dlpack__"):
        return torch.from_dlpack(x)
    raise TypeError(f"{op}: expected {name} to be a torch.Tensor, a NumPy array or an object with __dlpack__, "
                    f"got {type(x).__name__}")
