"""generalized_eigh_topk: the k leading pairs equal scipy's eigh(A, B, subset_by_index) and the dense op; errors."""
import numpy as np
import pytest
import scipy.linalg
import torch

from lowrankedit.ops.generalized_eigh import generalized_eigh
from lowrankedit.ops.generalized_eigh_topk import generalized_eigh_topk
from lowrankedit.testing import synthetic_gram_pair

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def _scipy_topk(A, B, tau, k):
    A64, B64 = A.double().cpu().numpy(), B.double().cpu().numpy()
    Bp = (B64 + B64.T) / 2 + tau * np.trace(B64) * np.eye(len(B64))
    D = len(A64)
    w, X = scipy.linalg.eigh((A64 + A64.T) / 2, Bp, subset_by_index=[D - k, D - 1])
    return torch.from_numpy(w[::-1].copy()), torch.from_numpy(X[:, ::-1].copy())


def _abs_cos(X, Y):
    X, Y = X.double().cpu(), Y.double().cpu()
    return ((X * Y).sum(0) / (X.norm(dim=0) * Y.norm(dim=0))).abs()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,cos_min,w_tol", [(torch.float64, 1 - 1e-10, 1e-10), (torch.float32, 0.9999, 1e-4)])
@pytest.mark.parametrize("D,k,seed", [(300, 10, 0), (512, 5, 1), (40, 40, 2)])
def test_matches_scipy_subset_by_index(device, dtype, cos_min, w_tol, D, k, seed):
    fg, bg = synthetic_gram_pair(D, fg_rows=64, bg_rows=D // 2, seed=seed)
    w_ref, X_ref = _scipy_topk(fg, bg, 1e-3, k)
    w, X, info = generalized_eigh_topk(fg.to(device, dtype), bg.to(device, dtype), k, tau=1e-3)
    assert info["converged"] and w.shape == (k,) and X.shape == (D, k)
    assert torch.allclose(w.double().cpu(), w_ref, rtol=w_tol, atol=w_tol * float(w_ref[0])), (w, w_ref)
    cos = _abs_cos(X, X_ref)
    # An eigenvector is determined to |cos| ~ 1 - (eps ||C|| / gap)^2: in float32 only those whose eigenvalue is
    # separated from its neighbours by 1e-3 |l_1| are compared (the k = D case has near-degenerate small ones).
    gaps = (w_ref[:, None] - w_ref[None, :]).abs().fill_diagonal_(float("inf"))
    determined = gaps.amin(1) > (1e-3 * float(w_ref[0]) if dtype == torch.float32 else 0.0)
    assert int(determined.sum()) >= min(k, 5)
    assert bool((cos[determined] >= cos_min).all()), cos
    assert torch.allclose(X.double().norm(dim=0).cpu(), torch.ones(k, dtype=torch.float64), atol=1e-5)


def test_equals_the_dense_op_signs_included():
    fg, bg = synthetic_gram_pair(256, fg_rows=48, bg_rows=200, seed=3)
    w_d, X_d = generalized_eigh(fg, bg, 1e-3)
    w, X, _ = generalized_eigh_topk(fg, bg, 6, tau=1e-3)
    assert torch.allclose(w, w_d[:6], rtol=1e-10)
    assert torch.allclose(X, X_d[:, :6], atol=1e-7)  # same deterministic sign rule
    _, XB, _ = generalized_eigh_topk(fg, bg, 6, tau=1e-3, normalize="B")
    Bp = bg + 1e-3 * bg.trace() * torch.eye(256, dtype=torch.float64)
    assert torch.allclose(XB.T @ Bp @ XB, torch.eye(6, dtype=torch.float64), atol=1e-8)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"k": 0}, r"expected k in \[1, 10\], got 0"),
        ({"k": 11}, r"expected k in \[1, 10\], got 11"),
        ({"tau": -1.0}, "expected tau >= 0"),
        ({"block": 2, "k": 3}, "expected block = 0 .automatic. or block >= k = 3, got 2"),
        ({"tol": 0.0}, "expected tol > 0 and finite, got 0"),
        ({"B": torch.ones(10, 9, dtype=torch.float64)}, r"expected B of the same shape as A"),
        ({"A": torch.ones(10, 10, dtype=torch.float16)}, "dtype float32 or float64"),
        ({"B": -torch.eye(10, dtype=torch.float64), "tau": 0.0}, "not positive definite"),
        ({"A": torch.full((10, 10), float("nan"), dtype=torch.float64)}, "expected A to be finite, got NaN entries"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"A": torch.eye(10, dtype=torch.float64), "B": torch.eye(10, dtype=torch.float64), "k": 2, **kwargs}
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        generalized_eigh_topk(args.pop("A"), args.pop("B"), args.pop("k"), **args)
