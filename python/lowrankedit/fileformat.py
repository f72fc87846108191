"""The package's file format: safetensors tensors plus JSON metadata in the safetensors header; loading runs no code.

Minimal version: ``save(path, kind, tensors, meta)`` / ``load(path, kind) -> (tensors, meta)``. The header's
metadata holds ``format`` (``"lowrankedit"``), ``kind`` (what the file holds, e.g. ``"evaluation"``) and ``meta``
(JSON). Writes are atomic: a failed write leaves no partial file.
"""
import json
import os

import torch

FORMAT = "lowrankedit"


def save(path, kind, tensors, meta):
    """Write ``tensors`` (dict name -> tensor) and ``meta`` (JSON-serializable dict) to ``path`` as ``kind``."""
    from safetensors.torch import save_file

    if not isinstance(kind, str) or not kind:
        raise ValueError(f"fileformat.save: expected kind as a non-empty str, got {kind!r}")
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise ValueError("fileformat.save: expected tensors as a dict of name -> torch.Tensor")
    header = {"format": FORMAT, "kind": kind, "meta": json.dumps(meta, allow_nan=True)}
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, tmp, metadata=header)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load(path, kind):
    """Read a file written by :func:`save` as ``kind``; ``(tensors, meta)``.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a file that is not one of ours or holds
    another kind.
    """
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"fileformat.load: no such file: {path}")
    try:
        with safe_open(path, framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for a foreign file
        raise ValueError(f"fileformat.load: {path} is not a lowrankedit file (not safetensors: {exc})") from None
    if header.get("format") != FORMAT:
        raise ValueError(f"fileformat.load: {path} is not a lowrankedit file (no lowrankedit header)")
    if header.get("kind") != kind:
        raise ValueError(f"fileformat.load: {path} holds {header.get('kind')!r}, expected {kind!r}")
    return tensors, json.loads(header.get("meta", "{}"))

