"""ops.generalized_eigh and ops.generalized_eigh_woodbury against scipy.linalg.eigh and reference.generalized_eigh."""
import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import DEVICES

import lowrankedit
from lowrankedit import reference
from lowrankedit.ops import generalized_eigh, generalized_eigh_woodbury


def psd(D, rank=None, seed=0, batch=()):
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(*batch, rank or 2 * D, D, generator=g, dtype=torch.float64)
    return J.mT @ J / J.shape[-2]


def regularized(B, tau):
    B = (B + B.mT) / 2
    return B + tau * B.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None] * torch.eye(B.shape[-1], dtype=B.dtype)


def planted(D, tau, seed=0, rank_b=None):
    """(A, B) whose generalized eigenvalues (w.r.t. B' = B + tau tr(B) I) are exactly 1, 2, ..., D times 0.37:
    A = B'^{1/2} Q diag(lam) Q^T B'^{1/2}. Well separated, so eigenvectors are unique up to sign."""
    g = torch.Generator().manual_seed(seed + 1000)
    B = psd(D, rank_b, seed)
    s, U = torch.linalg.eigh(regularized(B, tau))
    half = (U * s.sqrt()) @ U.mT
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    lam = 0.37 * torch.arange(1, D + 1, dtype=torch.float64)
    A = half @ (Q * lam) @ Q.mT @ half
    return (A + A.mT) / 2, B, lam.flip(0)


def abs_cos(X, Y):
    """|cos| between matching columns."""
    return ((X * Y).sum(-2).abs() / (X.norm(dim=-2) * Y.norm(dim=-2)))


@pytest.mark.parametrize("D,tau,rank_b", [(5, 1e-3, None), (33, 1e-3, None), (64, 1e-2, 10), (40, 0.0, None)])
def test_matches_scipy_float64(D, tau, rank_b):
    A, B, lam = planted(D, tau, seed=D, rank_b=rank_b)
    w, X = generalized_eigh(A, B, tau)
    ws, Xs = scipy.linalg.eigh(A.numpy(), regularized(B, tau).numpy())
    ws, Xs = torch.from_numpy(ws[::-1].copy()), torch.from_numpy(Xs[:, ::-1].copy())
    assert torch.allclose(w, ws, rtol=1e-8, atol=0), (w - ws).abs().max()
    assert torch.allclose(w, lam, rtol=1e-8, atol=0)
    assert abs_cos(X, Xs).min() >= 0.9999
    assert torch.allclose(X.norm(dim=0), torch.ones(D, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 2e-3)])
@pytest.mark.parametrize("normalize", ["unit", "B"])
def test_matches_reference(device, dtype, tol, normalize):
    tau = 1e-2
    A, B, _ = planted(24, tau, seed=3)
    w, X = generalized_eigh(A.to(device, dtype), B.to(device, dtype), tau, normalize=normalize)
    assert w.dtype == dtype and X.dtype == dtype and w.device.type == device
    wr, Xr = reference.generalized_eigh(A, B, tau, normalize=normalize)
    w, X = w.cpu().double(), X.cpu().double()
    assert torch.allclose(w, wr, rtol=tol, atol=0), (w - wr).abs().max()
    assert torch.allclose(X, Xr, rtol=0, atol=tol * Xr.abs().max()), (X - Xr).abs().max()
    # the defining equation A x = lambda B' x, column by column
    Bp = regularized(B, tau)
    resid = (A @ X - Bp @ X * w).norm(dim=0) / (A.norm() * X.norm(dim=0))
    assert resid.max() < tol
    if normalize == "B":
        assert torch.allclose(X.mT @ Bp @ X, torch.eye(24, dtype=torch.float64), atol=tol)


@pytest.mark.parametrize("device", DEVICES)
def test_batched_equals_looped(device):
    tau = 1e-3
    A = psd(20, 7, seed=1, batch=(2, 3)).to(device)
    B = psd(20, None, seed=2, batch=(2, 3)).to(device)
    w, X = generalized_eigh(A, B, tau)
    assert w.shape == (2, 3, 20) and X.shape == (2, 3, 20, 20)
    for i in range(2):
        for j in range(3):
            wi, Xi = generalized_eigh(A[i, j], B[i, j], tau)
            assert torch.allclose(w[i, j], wi, rtol=1e-10, atol=1e-14)
            # eigenvalues 0 (rank 7 of 20) are degenerate: compare the unique top-7 eigenvectors only
            assert torch.allclose(X[i, j][:, :7], Xi[:, :7], atol=1e-9)
            wr, Xr = reference.generalized_eigh(A[i, j].cpu(), B[i, j].cpu(), tau)
            assert torch.allclose(wi.cpu(), wr, rtol=1e-9, atol=1e-13)
            assert torch.allclose(Xi[:, :7].cpu(), Xr[:, :7], atol=1e-8)


def test_non_contiguous_and_asymmetric_input():
    A, B, _ = planted(16, 1e-3, seed=5)
    noise = 1e-3 * torch.randn(16, 16, dtype=torch.float64)
    w, X = generalized_eigh((A + noise).mT, B.mT.contiguous().mT, 1e-3)   # only sym(A) counts
    wr, Xr = reference.generalized_eigh(A + noise.mT / 2 + noise / 2, B, 1e-3)
    assert torch.allclose(w, wr, rtol=1e-10) and torch.allclose(X, Xr, atol=1e-9)


def test_singular_b_error_names_tau():
    A = psd(12, seed=1)
    B = psd(12, rank=4, seed=2)  # rank 4 < 12
    with pytest.raises(RuntimeError, match=r"not positive definite.*tau = 0"):
        generalized_eigh(A, B, 0.0)
    w, _ = generalized_eigh(A, B, 1e-3)  # regularized: fine
    assert torch.isfinite(w).all()
    batch_b = torch.stack([psd(12, seed=3), B])
    with pytest.raises(RuntimeError, match=r"not positive definite \(batch element 1"):
        generalized_eigh(torch.stack([A, A]), batch_b, 0.0)


@pytest.mark.parametrize("args,exc,match", [
    ((torch.zeros(3, 4, dtype=torch.float64), torch.zeros(3, 4, dtype=torch.float64)), RuntimeError, "square"),
    ((torch.eye(3, dtype=torch.float64), torch.eye(4, dtype=torch.float64)), RuntimeError, "same shape"),
    ((torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)), RuntimeError, r"\(\.\.\., D, D\)"),
    ((torch.eye(3, dtype=torch.float64), torch.eye(3)), RuntimeError, "same dtype"),
    ((torch.eye(3, dtype=torch.float16), torch.eye(3, dtype=torch.float16)), RuntimeError, "float32 or float64"),
    ((torch.eye(3, dtype=torch.int64), torch.eye(3, dtype=torch.int64)), RuntimeError, "dtype"),
    ((torch.full((3, 3), float("nan")), torch.eye(3)), ValueError, "expected A to be finite, got NaN entries"),
    ((torch.eye(3), torch.full((3, 3), float("inf"))), ValueError, "expected B to be finite, got Inf entries"),
    (("A", torch.eye(3)), TypeError, "expected A to be a torch.Tensor"),
])
def test_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        generalized_eigh(*args)


@pytest.mark.parametrize("tau,exc,match", [(-1.0, ValueError, "tau >= 0"), (float("nan"), ValueError, "finite"),
                                           ("x", TypeError, "real number")])
def test_bad_tau(tau, exc, match):
    with pytest.raises(exc, match=match):
        generalized_eigh(torch.eye(3), torch.eye(3), tau)
    with pytest.raises(ValueError, match="normalize"):
        generalized_eigh(torch.eye(3), torch.eye(3), normalize="l2")


def test_empty():
    w, X = generalized_eigh(torch.zeros(0, 4, 4), torch.zeros(0, 4, 4))
    assert w.shape == (0, 4) and X.shape == (0, 4, 4)


def test_registered():
    assert "generalized_eigh" in lowrankedit.info()["ops"]


# ---- Woodbury route (ReSeFa Eq. 12) ----------------------------------------------------------------------------

def factors(D, r, m, seed):
    g = torch.Generator().manual_seed(seed)
    Fa = torch.randn(r, D, generator=g, dtype=torch.float64) / r ** 0.5
    # background with a decaying spectrum, as Jacobians have
    Fb = (torch.randn(m, D, generator=g, dtype=torch.float64) * torch.logspace(0, -2, D, dtype=torch.float64)) / m ** 0.5
    return Fa, Fb


@pytest.mark.parametrize("D,r,m,tau", [(80, 6, 20, 1e-3), (200, 12, 50, 1e-2), (64, 64, 10, 1e-3)])
def test_woodbury_thin_equals_dense(D, r, m, tau):
    Fa, Fb = factors(D, r, m, seed=D + r)
    k = min(r, D) if r < D else 10
    w, X = generalized_eigh_woodbury(Fb, Fa=Fa, tau=tau, k=k)
    wd, Xd = generalized_eigh(Fa.T @ Fa, Fb.T @ Fb, tau)
    assert w.shape == (k,) and X.shape == (D, k)
    assert torch.allclose(w, wd[:k], rtol=1e-9, atol=1e-12 * wd[0]), (w - wd[:k]).abs().max()
    assert torch.allclose(X, Xd[:, :k], atol=1e-8), (X - Xd[:, :k]).abs().max()


@pytest.mark.parametrize("normalize", ["unit", "B"])
def test_woodbury_dense_a_equals_dense(normalize):
    D, m, tau = 48, 9, 1e-3
    A, _, _ = planted(D, tau, seed=11)
    _, Fb = factors(D, 3, m, seed=12)
    w, X = generalized_eigh_woodbury(Fb, A, tau=tau, k=8, normalize=normalize)
    wd, Xd = generalized_eigh(A, Fb.T @ Fb, tau, normalize=normalize)
    assert torch.allclose(w, wd[:8], rtol=1e-9)
    assert torch.allclose(X, Xd[:, :8], atol=1e-8)
    wt, Xt = generalized_eigh_woodbury(Fb, Fa=torch.linalg.cholesky(A).T[:5], tau=tau, k=3, normalize=normalize)
    wt2, Xt2 = generalized_eigh(A.new_zeros(D, D) + torch.linalg.cholesky(A)[:, :5] @ torch.linalg.cholesky(A)[:, :5].T,
                                Fb.T @ Fb, tau, normalize=normalize)
    assert torch.allclose(wt, wt2[:3], rtol=1e-9) and torch.allclose(Xt, Xt2[:, :3], atol=1e-8)


def test_woodbury_formulas_match_dense_inverse():
    """Eq. 12 (with its 1/a factors) and the closed-form inverse square root, against dense float64."""
    from lowrankedit.ops.generalized_eigh import _Woodbury

    D, m = 30, 7
    _, Fb = factors(D, 2, m, seed=4)
    a = 0.05
    Bp = Fb.T @ Fb + a * torch.eye(D, dtype=torch.float64)
    wb = _Woodbury(Fb, a)
    Y = torch.randn(D, 4, dtype=torch.float64)
    assert torch.allclose(wb.inv(Y), torch.linalg.solve(Bp, Y), atol=1e-11)
    s, U = torch.linalg.eigh(Bp)
    assert torch.allclose(wb.isqrt(Y), (U * s.rsqrt()) @ U.T @ Y, atol=1e-11)


def test_woodbury_errors():
    Fa, Fb = factors(20, 3, 5, seed=1)
    with pytest.raises(RuntimeError, match=r"not positive definite with tau = 0"):
        generalized_eigh_woodbury(Fb, Fa=Fa, tau=0.0)
    with pytest.raises(ValueError, match="exactly one of A"):
        generalized_eigh_woodbury(Fb, tau=1e-3)
    with pytest.raises(ValueError, match=r"expected Fa of shape \(r, 20\)"):
        generalized_eigh_woodbury(Fb, Fa=Fa[:, :5])
    with pytest.raises(ValueError, match=r"expected A of shape \(20, 20\)"):
        generalized_eigh_woodbury(Fb, torch.eye(19, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"k to be an int in \[1, 3\]"):
        generalized_eigh_woodbury(Fb, Fa=Fa, k=4)
    with pytest.raises(ValueError, match="Fb contains NaN"):
        generalized_eigh_woodbury(Fb * float("nan"), Fa=Fa)
