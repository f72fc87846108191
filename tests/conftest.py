"""Shared fixtures. The package is imported from this checkout's python/ folder, so every worktree tests itself."""
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

import lowrankedit  # noqa: E402

from hypothesis import settings  # noqa: E402

from hypothesis_cases import CASES  # noqa: E402

# Property tests: reproducible in CI (derandomized), no example database written into the checkout, no per-example
# deadline on the shared 2-core machine. Each test sets its own max_examples to fit the suite's time budget.
settings.register_profile("lowrankedit", deadline=None, database=None, derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "lowrankedit"))


def pytest_terminal_summary(terminalreporter):
    """Report how many cases the property-based tests generated and ran."""
    if CASES:
        per_test = ", ".join(f"{name} {n}" for name, n in sorted(CASES.items()))
        terminalreporter.write_line(f"hypothesis: {sum(CASES.values())} generated cases ran ({per_test})")

CUDA_OK = lowrankedit.info()["cuda_available"]

# Parametrize over devices: CUDA cases are always collected and shown as skipped when no GPU is usable.
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not CUDA_OK, reason="CUDA kernels need a visible GPU")),
]


@pytest.fixture(scope="session")
def dcgan():
    return lowrankedit.models.dcgan_digiface()


@pytest.fixture(scope="session")
def mouth():
    return lowrankedit.models.dcgan_mouth_region()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests (modules opt in with ``pytestmark``): their BLAS/LAPACK calls and
    generator batches are small, and on the shared 2-core CI machine two threads were up to 10x slower
    (oversubscription). The previous count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
