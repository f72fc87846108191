import os

import torch

import lowrankedit


def test_info_fields():
    info = lowrankedit.info()
    for key in ("version", "torch", "cuda_compiled", "cuda_available", "openmp", "ops", "backends", "built_with"):
        assert key in info, key
    assert info["torch"] == torch.__version__
    # the ops are the dispatcher's registrations, each a torch.ops.lowrankedit.<name> with a wrapper of that name
    assert "soft_threshold" in info["ops"] and "rpca" in info["ops"]
    for name in info["ops"]:
        assert hasattr(torch.ops.lowrankedit, name) and callable(getattr(lowrankedit.ops, name)), name
    assert info["openmp"] == torch.backends.openmp.is_available()
    if not torch.cuda.is_available():
        assert info["cuda_available"] is False


def test_build_record_matches_this_torch():
    built = lowrankedit.info()["built_with"]
    assert built["torch"] == torch.__version__, "rebuild with bash scripts/setup.sh"


def test_cuda_kernels_compiled_where_nvcc_exists():
    # CI compiles every .cu file: a machine with nvcc and no WITH_CUDA=0 must give a CUDA build.
    import shutil

    if shutil.which("nvcc") and os.environ.get("WITH_CUDA", "1") != "0":
        assert lowrankedit.info()["cuda_compiled"] is True
