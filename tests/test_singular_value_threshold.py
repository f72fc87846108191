"""singular_value_threshold vs the float64 full-SVD reference: symmetric (eigh) and general (SVD) paths, batching,
per-matrix thresholds, rank, errors."""
import pytest
import torch
from conftest import DEVICES

from lowrankedit import reference
from lowrankedit.ops import singular_value_threshold


pytestmark = pytest.mark.usefixtures("one_thread")


def _sym(B, n, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(*B, n, n, dtype=torch.float64, generator=g)
    return (X + X.mT).to(device=device, dtype=dtype)


TOL = {torch.float64: 1e-12, torch.float32: 2e-5}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("tau", [0.0, 2.5, 6.0, 1e3])
def test_symmetric_matches_reference(device, dtype, tau):
    X = _sym((3,), 24, dtype, device)
    Y, rank = singular_value_threshold(X, tau, return_rank=True)
    ref = reference.singular_value_threshold(X.cpu(), tau)
    scale = max(float(ref.abs().max()), 1.0)
    assert Y.dtype == dtype and Y.shape == X.shape
    assert float((Y.cpu().double() - ref).abs().max()) <= TOL[dtype] * 10 * scale
    s = torch.linalg.svdvals(X.cpu().double())
    assert rank.cpu().tolist() == (s > tau).sum(-1).tolist()
    if tau == 1e3:
        assert int(rank.max()) == 0 and not Y.abs().any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_general_matches_reference(device, dtype):
    g = torch.Generator().manual_seed(1)
    X = torch.randn(2, 3, 20, 13, dtype=torch.float64, generator=g).to(device=device, dtype=dtype)
    Y = singular_value_threshold(X, 1.7)
    ref = reference.singular_value_threshold(X.cpu(), 1.7)
    assert Y.shape == X.shape
    assert float((Y.cpu().double() - ref).abs().max()) <= TOL[dtype] * 10 * float(ref.abs().max())


@pytest.mark.parametrize("device", DEVICES)
def test_per_matrix_tau_and_forced_paths(device):
    X = _sym((4,), 16, torch.float64, device, seed=2)
    tau = torch.tensor([0.5, 3.0, 7.0, 100.0], dtype=torch.float64)
    Y = singular_value_threshold(X, tau)
    for b in range(4):
        ref = reference.singular_value_threshold(X[b].cpu(), float(tau[b]))
        assert float((Y[b].cpu() - ref).abs().max()) <= 1e-11, b
    # forcing the SVD path on symmetric input gives the same answer
    Ysvd = singular_value_threshold(X, tau, symmetric=False)
    assert float((Ysvd - Y).abs().max()) <= 1e-11
    # symmetric=True reads only the lower triangle
    Xl = torch.tril(X) + 5.0 * torch.triu(torch.ones_like(X), diagonal=1)
    Yl = singular_value_threshold(Xl, tau, symmetric=True)
    assert float((Yl - Y).abs().max()) <= 1e-11


def test_negative_eigenvalues_keep_their_sign():
    X = torch.diag(torch.tensor([3.0, 1.0, -2.0], dtype=torch.float64))
    Y = singular_value_threshold(X, 1.5)
    assert torch.allclose(Y, torch.diag(torch.tensor([1.5, 0.0, -0.5], dtype=torch.float64)), atol=1e-14)


def test_empty_batch():
    X = torch.zeros(0, 5, 5)
    assert singular_value_threshold(X, 1.0).shape == (0, 5, 5)


def test_errors():
    X = torch.eye(4)
    with pytest.raises(ValueError, match=r"singular_value_threshold: expected tau >= 0"):
        singular_value_threshold(X, -1.0)
    with pytest.raises(ValueError, match=r"singular_value_threshold: expected tau to be finite"):
        singular_value_threshold(X, float("inf"))
    with pytest.raises(ValueError, match=r"expected X of shape \(\.\.\., m, n\)"):
        singular_value_threshold(torch.ones(4), 1.0)
    with pytest.raises(ValueError, match=r"singular_value_threshold: expected X to be finite, got NaN entries"):
        singular_value_threshold(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), 1.0)
    with pytest.raises(RuntimeError, match=r"expected X to have dtype float32 or float64, got Long"):
        singular_value_threshold(torch.eye(3, dtype=torch.long), 1.0)
    with pytest.raises(ValueError, match=r"symmetric=True needs square matrices"):
        singular_value_threshold(torch.ones(3, 4), 1.0, symmetric=True)
    with pytest.raises(ValueError, match=r"expected tau to be a scalar or of the batch shape \(2,\)"):
        singular_value_threshold(torch.ones(2, 3, 3), torch.ones(3))
    with pytest.raises(TypeError, match=r"expected symmetric to be None, True or False"):
        singular_value_threshold(X, 1.0, symmetric="yes")


# ---------------------------------------------------------------- the warm-started Krylov route (used by rpca)
def _decaying(B, n, seed=0, negative=False):
    """Symmetric matrices with a fast-decaying spectrum (like Jacobian Grams), optionally a large negative one."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(B, n, n, dtype=torch.float64, generator=g))
    lam = 2.0 ** -torch.arange(n, dtype=torch.float64)
    if negative:
        lam[1] = -lam[1]
    return Q @ torch.diag_embed(lam.expand(B, n)) @ Q.mT


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("negative", [False, True])
def test_krylov_route_matches_exact(device, negative):
    krylov = torch.ops.lowrankedit._svt_krylov
    A = _decaying(2, 120, negative=negative).to(device)
    tau = torch.tensor([0.1, 0.02], dtype=torch.float64, device=device)  # 4 and 6 survivors
    L, rank, W = krylov(A, tau, None, 3, 0)
    ref = torch.stack([reference.singular_value_threshold(A[b].cpu(), float(tau[b])) for b in range(2)])
    assert rank.tolist() == [4, 6]
    assert float((L.cpu() - ref).abs().max()) <= 1e-10
    # the block was widened to two more than the largest rank; a warm start from it gives the same result
    assert W.shape == (2, 120, 8)
    L2, rank2, _ = krylov(A, tau, W, 3, 1)
    assert rank2.tolist() == [4, 6] and float((L2.cpu() - ref).abs().max()) <= 1e-10


def test_krylov_route_falls_back_to_the_full_eigh_on_small_matrices():
    A = _decaying(1, 12)
    L, rank, W = torch.ops.lowrankedit._svt_krylov(A, torch.tensor([0.01], dtype=torch.float64), None, 3, 0)
    assert int(rank) == 7 and W.shape == (1, 12, 9)
    assert float((L[0] - reference.singular_value_threshold(A[0], 0.01)).abs().max()) <= 1e-13


def test_symmetric_to_rounding_takes_the_eigh_route():
    # A GEMM-made Gram is symmetric only to rounding: symmetric=None thresholds its symmetric part by eigh (the
    # same answer bit for bit as symmetric=True on that part); a real asymmetry takes the SVD route
    g = torch.Generator().manual_seed(2)
    A = torch.randn(40, 40, dtype=torch.float64, generator=g)
    X = A @ A.T + torch.triu(torch.full((40, 40), 1e-15, dtype=torch.float64), 1)
    assert not torch.equal(X, X.mT)
    Xs = (X + X.mT) * 0.5
    assert torch.equal(singular_value_threshold(X, 5.0), singular_value_threshold(Xs, 5.0, symmetric=True))
    Xa = X + torch.triu(torch.full_like(X, 1e-6), 1)
    assert torch.equal(singular_value_threshold(Xa, 5.0), singular_value_threshold(Xa, 5.0, symmetric=False))
