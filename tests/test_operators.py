"""Every kernel as a PyTorch operator: opcheck over the dtypes each op supports, torch.compile(fullgraph=True) of a
chain of ops equals eager, torch.export of a module calling masked_gram, and NumPy / DLPack inputs without a copy.
The list of ops comes from the dispatcher (the extension's registrations), so an op added without a case here fails
test_every_registered_op_has_a_case."""
import numpy as np
import pytest
import torch

import lowrankedit
from lowrankedit import ops
from lowrankedit._ext import registered_ops
from lowrankedit.ops._interop import as_tensor

from conftest import DEVICES

pytestmark = pytest.mark.usefixtures("one_thread")

FLOAT = (torch.float32, torch.float64)
ALL_FLOAT = FLOAT + (torch.float16, torch.bfloat16)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _psd(n, dtype, device, batch=(), seed=0, rank=None):
    F = torch.randn(*batch, rank or n, n, generator=_gen(seed), dtype=torch.float64)
    G = F.mT @ F / n
    return ((G + G.mT) / 2).to(dtype=dtype, device=device)


def _cases(dtype, device):
    """(args, kwargs) of every registered op, small enough for opcheck's many runs."""
    g = _gen(1)
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)  # noqa: E731
    B, n = 2, 6
    f64 = dict(dtype=torch.float64, device=device)
    M = rnd(B, n * n)
    L = rnd(B, n * n)
    return {
        "soft_threshold": ((rnd(3, 5), 0.3), {}),
        "masked_gram": ((rnd(2, 7, 3), torch.rand(7, generator=g).to(dtype=dtype, device=device)), {}),
        "singular_value_threshold": ((_psd(n, dtype, device, (B,)), torch.tensor([0.2, 0.5], **f64), -1), {}),
        "_svt_krylov": ((_psd(16, dtype, device, (1,), rank=3), torch.tensor([0.05], **f64)), {"steps": 2}),
        "generalized_eigh": ((_psd(n, dtype, device, (B,), seed=2), _psd(n, dtype, device, (B,), seed=3), 1e-3,
                              True), {}),
        "panda_grad": ((rnd(3, 4, 9), rnd(4, 2), torch.rand(9, 3, generator=g).to(dtype=dtype, device=device)), {}),
        "panda_step": ((rnd(3, 4, 9), rnd(4, 2), torch.rand(9, 3, generator=g).to(dtype=dtype, device=device), 0.01,
                        0.01, True, 5), {}),
        "_rpca_step": ((M, L, torch.zeros_like(M), torch.zeros_like(M), M.clone(), torch.ones(B, **f64),
                        torch.full((B,), 0.3, **f64), torch.ones(B, **f64),
                        torch.ones(B, dtype=torch.bool, device=device), torch.ones(B, **f64)), {}),
        "rpca": ((_psd(n, dtype, device, (B,), rank=2),), {"max_iter": 30}),
        "generalized_eigh_topk": ((_psd(16, dtype, device, seed=4), _psd(16, dtype, device, seed=5), 2),
                                  {"tol": 1e-5, "max_restarts": 20}),
        "rpca_ialm": ((_psd(12, dtype, device, rank=2),), {"max_iter": 30}),
    }


SUPPORTED = {"soft_threshold": ALL_FLOAT, "masked_gram": ALL_FLOAT}  # the others: float32 and float64


def test_every_registered_op_has_a_case():
    names = registered_ops(private=True)
    assert set(names) == set(_cases(torch.float64, "cpu")), names
    assert lowrankedit.info()["ops"] == [n for n in names if not n.startswith("_")]
    for name in lowrankedit.info()["ops"]:  # and a wrapper of the same name
        assert callable(getattr(ops, name)), name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", registered_ops(private=True))
def test_opcheck(name, device):
    op = getattr(torch.ops.lowrankedit, name)
    for dtype in SUPPORTED.get(name, FLOAT):
        args, kwargs = _cases(dtype, device)[name]
        # only the ops with autograd registered see inputs that require grad
        if name in ("soft_threshold", "masked_gram") and dtype in FLOAT:
            args = (args[0].clone().requires_grad_(),) + args[1:]
        utils = ("test_schema", "test_autograd_registration", "test_faketensor")
        if name != "_svt_krylov":  # its output width is data-dependent (max rank + 2)
            utils += ("test_aot_dispatch_dynamic",)
        torch.library.opcheck(op, args, kwargs, test_utils=utils)


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_against_finite_differences(device):
    X = torch.randn(4, 5, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: ops.soft_threshold(x, 0.3), (X,))
    J = torch.randn(2, 6, 3, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.rand(6, dtype=torch.float64, device=device)
    assert torch.autograd.gradcheck(lambda j: ops.masked_gram(j, w), (J,))
    assert torch.autograd.gradcheck(lambda j: ops.masked_gram(j, w.expand(2, 6))[1].sum(), (J,))


def _chain(J, w, Z, A, P):
    G_in, G_out = ops.masked_gram(J, w)
    G = ops.soft_threshold(G_in, 1e-3)
    L = ops.singular_value_threshold(G, 0.05)
    vals, vecs = ops.generalized_eigh(L + G_out, G_out, 1e-3)
    gA, gP, loss = ops.panda_grad(Z, A, P)
    return vals, vecs, gA, gP, loss


@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_equals_eager(device):
    g = _gen(3)
    f64 = dict(dtype=torch.float64)
    args = (torch.randn(2, 40, 5, generator=g, **f64), torch.rand(40, generator=g, **f64),
            torch.randn(3, 4, 9, generator=g, **f64), torch.randn(4, 2, generator=g, **f64),
            torch.rand(9, 3, generator=g, **f64))
    args = tuple(a.to(device) for a in args)
    torch._dynamo.reset()
    compiled = torch.compile(_chain, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(*args), _chain(*args)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_export_masked_gram():
    class Grams(torch.nn.Module):
        def forward(self, J, w):
            G_in, G_out = ops.masked_gram(J, w)
            return G_in - G_out

    J, w = torch.randn(2, 30, 4, dtype=torch.float64), torch.rand(30, dtype=torch.float64)
    ep = torch.export.export(Grams(), (J, w))
    assert "lowrankedit.masked_gram" in str(ep.graph)
    J2, w2 = torch.randn(2, 30, 4, dtype=torch.float64), torch.rand(30, dtype=torch.float64)
    torch.testing.assert_close(ep.module()(J2, w2), Grams()(J2, w2), rtol=0, atol=0)


class _DLPackOnly:
    """An array from "another library": only the DLPack protocol (what CuPy and JAX arrays offer)."""

    def __init__(self, t):
        self._t = t

    def __dlpack__(self, *args, **kwargs):
        return self._t.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._t.__dlpack_device__()


def test_numpy_and_dlpack_inputs_share_memory():
    a = np.random.default_rng(0).standard_normal((3, 4))
    t = as_tensor(a, "op", "X")
    assert t.data_ptr() == a.ctypes.data and t.dtype == torch.float64
    ro = a.copy()
    ro.flags.writeable = False
    assert as_tensor(ro, "op", "X").data_ptr() == ro.ctypes.data
    base = torch.randn(5, 6)
    assert as_tensor(_DLPackOnly(base), "op", "X").data_ptr() == base.data_ptr()
    rev = a[::-1]  # negative strides: torch cannot view it, so the one copy
    assert torch.equal(as_tensor(rev, "op", "X"), torch.from_numpy(rev.copy()))
    with pytest.raises(TypeError, match="op: expected X to be a torch.Tensor, a NumPy array or an object with "):
        as_tensor([1.0], "op", "X")


def test_numpy_in_right_result_out():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((4, 5))
    out = ops.soft_threshold(X, 0.5)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, lowrankedit.reference.soft_threshold(torch.from_numpy(X), 0.5), rtol=0, atol=0)
    J, w = rng.standard_normal((2, 8, 3)), rng.random(8)
    G_in, G_out = ops.masked_gram(J, w)
    torch.testing.assert_close(G_in, ops.masked_gram(torch.from_numpy(J), torch.from_numpy(w))[0], rtol=0, atol=0)
    F = rng.standard_normal((10, 6))
    G = F.T @ F
    torch.testing.assert_close(ops.singular_value_threshold(G, 1.0), ops.singular_value_threshold(
        torch.from_numpy(G), 1.0), rtol=0, atol=0)
    w1, X1 = ops.generalized_eigh(G, np.eye(6), 0.0)
    torch.testing.assert_close(w1, torch.from_numpy(np.linalg.eigvalsh(G)[::-1].copy()), rtol=1e-10, atol=1e-10)
    Z, A, P = rng.standard_normal((2, 3, 5)), rng.standard_normal((3, 2)), rng.random((5, 2))
    gA, gP, loss = ops.panda_grad(Z, A, P)
    R = Z - A @ A.T @ Z @ P @ P.T
    assert float(loss) == pytest.approx(float((R ** 2).sum()), rel=1e-10)
    L, S, info = ops.rpca(G, max_iter=50)
    assert isinstance(L, torch.Tensor) and L.shape == (6, 6)


@pytest.mark.parametrize("device", DEVICES)
def test_cupy_inputs(device):
    if device != "cuda":
        pytest.skip("CuPy arrays live on a GPU")
    cp = pytest.importorskip("cupy")
    X = cp.random.standard_normal((4, 5))
    out = ops.soft_threshold(X, 0.5)
    assert out.is_cuda and as_tensor(X, "op", "X").data_ptr() == X.data.ptr
    torch.testing.assert_close(out.cpu(), lowrankedit.reference.soft_threshold(torch.from_numpy(cp.asnumpy(X)), 0.5))
    J, w = cp.random.standard_normal((2, 8, 3)), cp.random.random(8)
    G_in, _ = ops.masked_gram(J, w)
    torch.testing.assert_close(G_in.cpu(), ops.masked_gram(cp.asnumpy(J), cp.asnumpy(w))[0])


def test_cuda_tensor_on_a_cpu_only_build_says_how_to_rebuild():
    if lowrankedit.info()["cuda_compiled"] or not torch.cuda.is_available():
        pytest.skip("needs a CPU-only build on a machine with a GPU")
    with pytest.raises(RuntimeError, match="built without CUDA kernels; rebuild"):
        ops.soft_threshold(torch.zeros(3, device="cuda"), 0.1)
