"""lowrankedit: local image editing with pretrained GANs (LowRankGAN, ReSeFa, LELSD, PandA) on C++/CUDA kernels."""
import torch

from ._ext import _C, build_info
from . import ops, reference, models, metrics, fileformat, validation
from .fileformat import FileFormatError
from .validation import ArgumentError
from ._ext import _C, build_info, registered_ops
from . import ops, reference, models, metrics
from .region import Region
from .directions import Directions, edit, orthogonalize
from .gram import Gram
from .methods.panda import panda, PartsAppearances
from .methods.lelsd import lelsd, localization_score
from . import segmenters
from .methods.resefa import resefa, resefa_from_factors
from .methods.lowrankgan import lowrankgan
from .jacobian_gram import jacobian_gram
# [methods: imports]
from .evaluate import evaluate, Evaluation, PartEdit
from . import fileformat

__version__ = build_info().get("version", "0.1.0")


def info():
    """What this installation can do.

    Returns
    -------
    dict
        ``version``, ``torch`` (installed now), ``cuda_compiled`` (the CUDA kernels are in the built extension),
        ``cuda_available`` (and a GPU is usable now), ``openmp``, ``ops`` (the registered operators,
        ``torch.ops.lowrankedit.<name>``, as the dispatcher lists them), ``backends`` and
        ``built_with`` (the build record: torch, CUDA and nvcc versions, architectures).
    """
    built = build_info()
    cuda_compiled = bool(_C.cuda_compiled)
    return {
        "version": __version__,
        "torch": torch.__version__,
        "cuda_compiled": cuda_compiled,
        "cuda_available": cuda_compiled and torch.cuda.is_available(),
        "openmp": bool(_C.openmp),
        "ops": registered_ops(),
        "backends": ["cpu", "cuda"] if cuda_compiled else ["cpu"],
        "built_with": built,
    }


__all__ = [
    "info", "ops", "reference", "models", "metrics", "Region", "Directions", "edit", "orthogonalize", "Gram",
    "info", "ops", "reference", "models", "metrics", "Region", "Directions", "edit", "Gram",
    "fileformat", "validation", "FileFormatError", "ArgumentError",
    "panda",
    "PartsAppearances",
    "lelsd",
    "localization_score",
    "segmenters",
    "resefa", "resefa_from_factors",
    "lowrankgan",
    "jacobian_gram",
    # [methods: names]
    "evaluate", "Evaluation", "PartEdit", "fileformat",
]
