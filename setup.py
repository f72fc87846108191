"""Build lowrankedit and its one extension, lowrankedit._C.

CPU sources are always built. CUDA sources are built when nvcc is found or FORCE_CUDA=1; WITH_CUDA=0 forces a
CPU-only build. TORCH_CUDA_ARCH_LIST names the GPU targets (no GPU is visible here, so nothing is chosen for us).
What was built is recorded in python/lowrankedit/_build_info.json, read by lowrankedit.info() and by the error a
failed import of _C prints.
"""
import datetime
import glob
import json
import os
import shutil
import subprocess
import sys

from setuptools import setup

import torch

# torch finds CUDA_HOME from `which nvcc`; here nvcc is a wrapper in /usr/local/bin, which would point it at
# /usr/local (no libcudart.so to link). Prefer the real toolkit folder when the user has not chosen one.
if not os.environ.get("CUDA_HOME") and not os.environ.get("CUDA_PATH") and os.path.isdir("/usr/local/cuda/lib64"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

from torch.utils import cpp_extension  # noqa: E402  (reads CUDA_HOME at import)

ROOT = os.path.dirname(os.path.abspath(__file__))
VERSION = "0.1.0"


def _flag(name):
    value = os.environ.get(name)
    return None if value is None else value.strip().lower() not in ("0", "false", "no", "off", "")


def _nvidia_cu13_dirs():
    """Include and lib folders of the pip package nvidia/cu13 (torch 2.14's CUDA headers live there)."""
    try:
        import nvidia  # namespace package installed with the CUDA build of torch
    except ImportError:
        return [], []
    includes, libs = [], []
    for base in list(getattr(nvidia, "__path__", [])):
        inc, lib = os.path.join(base, "cu13", "include"), os.path.join(base, "cu13", "lib")
        if os.path.isdir(inc):
            includes.append(inc)
        if os.path.isdir(lib):
            libs.append(lib)
    return includes, libs


def _nvcc_version():
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in out.splitlines():
        if "release" in line:
            return line.split("release")[-1].split(",")[0].strip()
    return out.strip().splitlines()[-1] if out.strip() else None


def _want_cuda():
    with_cuda, force = _flag("WITH_CUDA"), _flag("FORCE_CUDA")
    if with_cuda is False:
        return False
    if force:
        return True
    return shutil.which("nvcc") is not None and cpp_extension.CUDA_HOME is not None


def _extension():
    use_cuda = _want_cuda()
    rel = lambda pattern: sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))
    # pyext/: entries and registrations (one file per op stem) and the module; csrc/*.cpp: composed solvers;
    # csrc/cpu/, csrc/cuda/: kernels. The ops themselves are listed by the dispatcher, not here.
    sources = rel("pyext/*.cpp") + rel("csrc/*.cpp") + rel("csrc/cpu/*.cpp")
    include_dirs = [os.path.join(ROOT, "csrc")]
    library_dirs = []
    define_macros = []
    cxx_flags = ["-O3"]
    nvcc_flags = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
    openmp = bool(torch.backends.openmp.is_available())
    if openmp:
        cxx_flags.append("-fopenmp")
    extra_link = ["-fopenmp"] if openmp else []
    if use_cuda:
        sources += rel("csrc/cuda/*.cu")
        define_macros.append(("WITH_CUDA", None))
        nvcc_flags.append("-DWITH_CUDA")
        inc, lib = _nvidia_cu13_dirs()
        include_dirs += inc
        library_dirs += lib
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
        ext_cls = cpp_extension.CUDAExtension
        extra = {"cxx": cxx_flags, "nvcc": nvcc_flags}
    else:
        ext_cls = cpp_extension.CppExtension
        extra = {"cxx": cxx_flags}
    ext = ext_cls(
        name="lowrankedit._C",
        sources=sources,
        include_dirs=include_dirs,
        library_dirs=library_dirs,
        define_macros=define_macros,
        extra_compile_args=extra,
        extra_link_args=extra_link,
    )
    info = {
        "version": VERSION,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "nvcc": _nvcc_version() if use_cuda else None,
        "cuda_compiled": use_cuda,
        "cuda_arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST") if use_cuda else None,
        "openmp": openmp,
        "backends": ["cpu", "cuda"] if use_cuda else ["cpu"],
        "python": sys.version.split()[0],
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return ext, info


class BuildExtension(cpp_extension.BuildExtension):
    def run(self):
        super().run()
        # Written after a successful build only, atomically: a failed build leaves the old record in place. It goes
        # beside the built _C: python/lowrankedit/ for an in-place build, the build folder (and so the wheel) for
        # `pip install` / `pip wheel`, where build_py has already copied the package before this runs.
        path = os.path.join(os.path.dirname(self.get_ext_fullpath(EXTENSION.name)), "_build_info.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(BUILD_INFO, fh, indent=2)
        os.replace(tmp, path)


EXTENSION, BUILD_INFO = _extension()

# Metadata and the package list live in pyproject.toml; the version (one place, also in the build record) and the
# dependencies are given here. torch is pinned to the one compiled against: the extension loads only with it.
setup(
    version=VERSION,
    ext_modules=[EXTENSION],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    install_requires=[f"torch=={torch.__version__.split('+')[0]}", "numpy", "tqdm", "pillow"],
)
