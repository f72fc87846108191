"""Loads the compiled extension, with an error that says what it was built against and what is installed now."""
import json
import os

import torch

_BUILD_INFO_PATH = os.path.join(os.path.dirname(__file__), "_build_info.json")


def build_info():
    """The record setup.py wrote after the last successful build (``{}`` when there is none)."""
    try:
        with open(_BUILD_INFO_PATH) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


try:
    from . import _C  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    built = build_info()
    if built:
        was = f"torch {built.get('torch')} (CUDA {built.get('torch_cuda')}, CUDA kernels: {built.get('cuda_compiled')})"
    else:
        was = "an unknown torch (no build record: the extension has probably never been built)"
    raise ImportError(
        f"lowrankedit._C failed to load: {exc}\n"
        f"  it was built for {was};\n"
        f"  installed now: torch {torch.__version__} (CUDA {torch.version.cuda}).\n"
        f"  Rebuild with `bash scripts/setup.sh` from the repository root, or reinstall the package with\n"
        f"  `pip install --no-build-isolation .` from a checkout (see the README's 'Install just the package')."
    ) from exc

NAMESPACE = "lowrankedit"


def registered_ops(private=False):
    """Names of the operators the extension registered with the dispatcher (``torch.ops.lowrankedit.<name>``).

    The registrations in ``pyext/<op>.cpp`` are the only list of ops: :func:`lowrankedit.info`, the wrappers in
    :mod:`lowrankedit.ops` and the tests read it from here. ``private``: include the internal ones (``_name``: the
    pieces of a solver, exposed for tests).
    """
    prefix = NAMESPACE + "::"
    names = sorted({n[len(prefix):].split(".")[0] for n in torch._C._dispatch_get_all_op_names()
                    if n.startswith(prefix)})
    return [n for n in names if private or not n.startswith("_")]
