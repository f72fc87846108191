"""Property-based tests of every op against its float64 reference: random shapes, dtypes, strides (transposed and
sliced views), masks (soft, binary, empty, full) and scales (1e-20 .. 1e20). Through the public ``lowrankedit.ops``
signatures only, so they hold whatever the kernels behind them are. Tolerances are relative to the problem's scale
and set per dtype; every case is asserted on its own."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from lowrankedit import ops, reference

from hypothesis_cases import count

pytestmark = pytest.mark.usefixtures("one_thread")

DTYPES = st.sampled_from([torch.float32, torch.float64])
SCALES = st.integers(-20, 20).map(lambda e: 10.0 ** e)
#: Grams square their input: keep ``scale^2`` normal in float32 (1e-18 .. 1e18), as wide as SCALES in float64.
GRAM_EXPONENT = {torch.float32: 9, torch.float64: 20}
EPS = {torch.float32: 1.2e-7, torch.float64: 2.3e-16}


def _rand(draw, shape, dtype, scale, layout):
    """A tensor of ``shape`` filled from a drawn seed, made contiguous, transposed (same values, swapped strides)
    or sliced with a step, per ``layout``."""
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 31 - 1)))
    if layout == "transposed" and len(shape) >= 2:
        base = torch.randn(*shape[:-2], shape[-1], shape[-2], generator=g, dtype=torch.float64).mT
    elif layout == "strided":
        base = torch.randn(*shape[:-1], 2 * shape[-1], generator=g, dtype=torch.float64)[..., ::2]
    else:
        base = torch.randn(*shape, generator=g, dtype=torch.float64)
    return (base * scale).to(dtype)


LAYOUTS = st.sampled_from(["contiguous", "transposed", "strided"])


@settings(max_examples=60)
@given(data=st.data(), dtype=DTYPES, scale=SCALES, layout=LAYOUTS,
       shape=st.lists(st.integers(1, 6), min_size=1, max_size=3), frac=st.floats(0, 2))
def test_soft_threshold(data, dtype, scale, layout, shape, frac):
    count("soft_threshold")
    X = _rand(data.draw, tuple(shape), dtype, scale, layout)
    tau = frac * scale
    got = ops.soft_threshold(X, tau)
    want = reference.soft_threshold(X, tau)
    assert got.shape == X.shape and got.dtype == dtype
    torch.testing.assert_close(got.double(), want, rtol=4 * EPS[dtype], atol=4 * EPS[dtype] * scale)


@st.composite
def _weights(draw, B, P, dtype):
    kind = draw(st.sampled_from(["soft", "binary", "zeros", "ones"]))
    per_batch = draw(st.booleans())
    shape = (B, P) if per_batch else (P,)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 31 - 1)))
    if kind == "soft":
        w = torch.rand(shape, generator=g, dtype=torch.float64)
    elif kind == "binary":
        w = (torch.rand(shape, generator=g) > 0.5).double()
    else:
        w = torch.full(shape, 0.0 if kind == "zeros" else 1.0, dtype=torch.float64)
    return w.to(dtype)


@settings(max_examples=60)
@given(data=st.data(), dtype=DTYPES, exponent=st.integers(-20, 20), layout=LAYOUTS, B=st.integers(1, 3),
       P=st.integers(1, 40), D=st.integers(1, 12))
def test_masked_gram(data, dtype, exponent, layout, B, P, D):
    count("masked_gram")
    scale = 10.0 ** max(-GRAM_EXPONENT[dtype], min(GRAM_EXPONENT[dtype], exponent))
    J = _rand(data.draw, (B, P, D), dtype, scale, layout)
    w = data.draw(_weights(B, P, dtype))
    G_in, G_out = ops.masked_gram(J, w)
    R_in, R_out = reference.masked_gram(J, w)
    # Each entry is a sum of P products of size <= max|J|^2: a relative error of ~P eps of that bound.
    tol = 8 * P * EPS[dtype] * float(J.double().abs().max()) ** 2
    for got, want in ((G_in, R_in), (G_out, R_out)):
        assert got.shape == (B, D, D) and got.dtype == dtype
        torch.testing.assert_close(got.double(), want, rtol=0, atol=tol)


@settings(max_examples=50)
@given(data=st.data(), dtype=DTYPES, scale=SCALES, layout=LAYOUTS, batch=st.lists(st.integers(1, 3), max_size=1),
       m=st.integers(1, 7), n=st.integers(1, 7), symmetric=st.booleans(), frac=st.floats(0, 1.2))
def test_singular_value_threshold(data, dtype, scale, layout, batch, m, n, symmetric, frac):
    count("singular_value_threshold")
    if symmetric:
        n = m
    X = _rand(data.draw, (*batch, m, n), dtype, scale, layout)
    if symmetric:
        X = ((X.double() + X.double().mT) / 2).to(dtype)
    top = float(torch.linalg.matrix_norm(X.double(), ord=2).max())
    tau = frac * top
    got = ops.singular_value_threshold(X, tau)
    want = reference.singular_value_threshold(X, tau)
    assert got.shape == X.shape and got.dtype == dtype
    # SVT is 1-Lipschitz in X; the decomposition itself is backward stable: error ~ max(m, n) eps ||X||_2.
    tol = 50 * max(m, n) * EPS[dtype] * max(top, 1e-300)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=tol)


@settings(max_examples=50)
@given(data=st.data(), dtype=DTYPES, scale=SCALES, D=st.integers(1, 8), rows=st.integers(1, 20),
       tau=st.sampled_from([1e-3, 1e-2, 0.1]), layout=LAYOUTS)
def test_generalized_eigh(data, dtype, scale, D, rows, tau, layout):
    count("generalized_eigh")
    Jf = _rand(data.draw, (rows, D), torch.float64, 1.0, layout)
    Jb = _rand(data.draw, (rows + D, D), torch.float64, 1.0, layout)
    A = (Jf.T @ Jf * scale).to(dtype)
    B = (Jb.T @ Jb * scale).to(dtype)
    w, X = ops.generalized_eigh(A, B, tau)
    w_ref, _ = reference.generalized_eigh(A, B, tau)
    assert w.shape == (D,) and X.shape == (D, D) and w.dtype == dtype
    # Eigenvalues of the pencil are scale free (A and B scaled alike); relative to the largest one.
    wmax = float(w_ref.abs().max())
    tol = (2e-4 if dtype == torch.float32 else 1e-9) * max(wmax, 1e-30)
    torch.testing.assert_close(w.double(), w_ref, rtol=0, atol=tol)
    # Each column solves A x = lambda B' x (residual relative to ||A|| + |lambda| ||B'||) and has unit norm.
    Ad, Bd = A.double(), B.double()
    Bp = Bd + tau * torch.trace(Bd) * torch.eye(D, dtype=torch.float64)
    Xd = X.double()
    res = (Ad @ Xd - Bp @ Xd * w.double()).norm(dim=0)
    bound = torch.linalg.matrix_norm(Ad, 2) + w.double().abs() * torch.linalg.matrix_norm(Bp, 2)
    assert bool((res <= (1e-3 if dtype == torch.float32 else 1e-8) * bound + 1e-300).all()), (res / bound).max()
    torch.testing.assert_close(Xd.norm(dim=0), torch.ones(D, dtype=torch.float64),
                               atol=1e-5 if dtype == torch.float32 else 1e-12, rtol=0)


@settings(max_examples=40)
@given(data=st.data(), dtype=DTYPES, scale=st.integers(-6, 6).map(lambda e: 10.0 ** e), N=st.integers(1, 3),
       C=st.integers(1, 8), S=st.integers(1, 12), Rc=st.integers(1, 4), Rs=st.integers(1, 4), layout=LAYOUTS)
def test_panda_grad(data, dtype, scale, N, C, S, Rc, Rs, layout):
    count("panda_grad")
    Rc, Rs = min(Rc, C), min(Rs, S)
    Z = _rand(data.draw, (N, C, S), dtype, scale, layout)
    A = _rand(data.draw, (C, Rc), dtype, 1.0, "contiguous")
    P = _rand(data.draw, (S, Rs), dtype, 1.0, "contiguous").abs()
    gA, gP, loss = ops.panda_grad(Z, A, P)
    rA, rP, rloss = reference.panda_grad(Z, A, P)
    # Terms of the gradients are up to ||Z|| ||A||^k ||P||^j in size; compare relative to the largest term.
    nz, na, np_ = (float(t.double().norm()) for t in (Z, A, P))
    big = nz ** 2 * (1 + na) ** 4 * (1 + np_) ** 3 + 1e-300  # the gradients are quadratic in Z
    tol = (1e-4 if dtype == torch.float32 else 1e-11) * big
    torch.testing.assert_close(gA.double(), rA, rtol=0, atol=tol)
    torch.testing.assert_close(gP.double(), rP, rtol=0, atol=tol)
    ltol = (1e-4 if dtype == torch.float32 else 1e-11) * (nz ** 2 * (1 + na ** 2 * np_ ** 2) ** 2)
    assert abs(float(loss) - float(rloss)) <= ltol
