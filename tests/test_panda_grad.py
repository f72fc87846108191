"""ops.panda_grad / ops.panda_step against float64 references: autograd of the loss, the official chains, Algorithm 1."""
import pytest
import torch
from conftest import DEVICES

from lowrankedit import reference
from lowrankedit.ops import panda_grad, panda_step

# (N, C, S, Rc, Rs): square and tall, Rc = C, Rs = 1, a single sample
SHAPES = [(3, 6, 10, 4, 3), (2, 8, 25, 8, 5), (1, 5, 7, 2, 1), (4, 12, 16, 3, 4)]


pytestmark = pytest.mark.usefixtures("one_thread")


def _factors(N, C, S, Rc, Rs, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    Z = torch.rand(N, C, S, generator=g, dtype=torch.float64)
    A = torch.randn(C, Rc, generator=g, dtype=torch.float64) / C ** 0.5  # not orthonormal on purpose
    P = torch.rand(S, Rs, generator=g, dtype=torch.float64) / S ** 0.5
    return (t.to(device, dtype) for t in (Z, A, P))


def _rel(a, b):
    return float((a.double().cpu() - b.double().cpu()).norm() / b.double().cpu().norm().clamp_min(1e-300))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_autograd_float64(device, shape):
    Z, A, P = _factors(*shape, device=device)
    gA, gP, loss = panda_grad(Z, A, P)
    Ar, Pr = A.cpu().clone().requires_grad_(), P.cpu().clone().requires_grad_()
    ref = reference.panda_loss(Z.cpu(), Ar, Pr)
    ref.backward()
    assert gA.shape == A.shape and gP.shape == P.shape and loss.shape == ()
    assert _rel(gA, Ar.grad) < 1e-8
    assert _rel(gP, Pr.grad) < 1e-8
    assert abs(float(loss) - float(ref.detach())) <= 1e-8 * float(ref.detach())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_official_chain(device, shape):
    Z, A, P = _factors(*shape, device=device, seed=1)
    gA, gP, loss = panda_grad(Z, A, P)
    rA, rP, rloss = reference.panda_grad(Z.cpu(), A.cpu(), P.cpu())
    assert _rel(gA, rA) < 1e-10
    assert _rel(gP, rP) < 1e-10
    assert abs(float(loss) - float(rloss)) <= 1e-10 * float(rloss)


@pytest.mark.parametrize("device", DEVICES)
def test_batch_is_sum_of_samples(device):
    Z, A, P = _factors(5, 7, 12, 3, 2, device=device, seed=2)
    gA, gP, loss = panda_grad(Z, A, P)
    parts = [panda_grad(Z[i:i + 1], A, P) for i in range(Z.shape[0])]
    assert _rel(gA, sum(p[0] for p in parts)) < 1e-12
    assert _rel(gP, sum(p[1] for p in parts)) < 1e-12
    assert abs(float(loss) - sum(float(p[2]) for p in parts)) <= 1e-12 * float(loss)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_close_to_float64(device):
    Z, A, P = _factors(4, 16, 36, 8, 4, dtype=torch.float32, device=device, seed=3)
    gA, gP, loss = panda_grad(Z, A, P)
    assert gA.dtype == gP.dtype == loss.dtype == torch.float32
    rA, rP, rloss = reference.panda_grad(Z.cpu(), A.cpu(), P.cpu())
    assert _rel(gA, rA) < 1e-5
    assert _rel(gP, rP) < 1e-5
    # the loss is an expanded form: its float32 error is relative to ||Z||^2, not to the loss
    assert abs(float(loss) - float(rloss)) <= 1e-5 * float(Z.double().pow(2).sum())


def test_orthonormal_factors_zero_gradient_at_exact_fit():
    # Z_i = A Y_i P^T with orthonormal A and P: the loss is 0 and both gradients vanish.
    g = torch.Generator().manual_seed(4)
    A = torch.linalg.qr(torch.randn(6, 3, generator=g, dtype=torch.float64))[0]
    P = torch.linalg.qr(torch.rand(10, 2, generator=g, dtype=torch.float64))[0]
    Z = A @ torch.randn(3, 3, 2, generator=g, dtype=torch.float64) @ P.T
    gA, gP, loss = panda_grad(Z, A, P)
    assert abs(float(loss)) < 1e-12 and float(gA.abs().max()) < 1e-12 and float(gP.abs().max()) < 1e-12


def test_non_contiguous_inputs():
    Z, A, P = _factors(3, 6, 10, 4, 3, seed=5)
    Zt = Z.transpose(1, 2).contiguous().transpose(1, 2)
    out = panda_grad(Zt, A.T.contiguous().T, P)
    ref = panda_grad(Z, A, P)
    for a, b in zip(out, ref):
        assert torch.equal(a, b)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("line_search", [False, True])
def test_step_matches_reference(device, line_search):
    Z, A, P = _factors(3, 8, 20, 4, 3, device=device, seed=6)
    lr = 5.0 if line_search else 1e-3  # a line search must backtrack from 5.0
    out = panda_step(Z, A, P, lr, 2 * lr, line_search=line_search)
    rA, rP, rloss, rnew, rlrP, rlrA = reference.panda_step(Z.cpu(), A.cpu(), P.cpu(), lr, 2 * lr,
                                                            line_search=line_search)
    assert out.lr_parts == rlrP and out.lr_appearances == rlrA
    if line_search:
        assert out.lr_parts < lr and out.lr_appearances < 2 * lr
    assert _rel(out.parts, rP) < 1e-10
    assert _rel(out.appearances, rA) < 1e-10
    assert abs(float(out.loss) - float(rloss)) <= 1e-10 * float(rloss)
    assert abs(float(out.new_loss) - float(rnew)) <= 1e-10 * float(rloss)


@pytest.mark.parametrize("device", DEVICES)
def test_step_projects_and_decreases(device):
    Z, A, P = _factors(4, 10, 30, 5, 4, device=device, seed=7)
    loss0 = float(reference.panda_loss(Z.cpu(), A.cpu(), P.cpu()))
    lr = 1.0
    for _ in range(20):
        out = panda_step(Z, A, P, 2 * lr, line_search=True)
        assert float(out.new_loss) <= float(out.loss)
        A, P, lr = out.appearances, out.parts, max(out.lr_parts, 1e-12)
        assert float(P.min()) >= 0
    assert float(reference.panda_loss(Z.cpu(), A.cpu(), P.cpu())) < 0.5 * loss0
    assert bool((P == 0).any())  # the projection is active


def test_step_zero_lr_is_identity():
    Z, A, P = _factors(2, 6, 9, 3, 2, seed=8)
    out = panda_step(Z, A, P, 0.0)
    assert torch.equal(out.parts, P) and torch.equal(out.appearances, A)
    assert float(out.new_loss) == pytest.approx(float(out.loss), rel=1e-12)


def test_errors():
    Z, A, P = _factors(2, 6, 9, 3, 2)
    with pytest.raises(RuntimeError, match=r"panda_grad: expected Z of shape \(N, C, S\)"):
        panda_grad(Z[0], A, P)
    with pytest.raises(RuntimeError, match=r"panda_grad: expected A of shape \(C, Rc\) with C = 6"):
        panda_grad(Z, A[:5], P)
    with pytest.raises(RuntimeError, match=r"panda_grad: expected P of shape \(S, Rs\) with S = 9"):
        panda_grad(Z, A, P[:8])
    with pytest.raises(RuntimeError, match="panda_grad: expected Z and A to have the same dtype"):
        panda_grad(Z, A.float(), P)
    with pytest.raises(RuntimeError, match="panda_grad: expected Z to have dtype float32 or float64"):
        panda_grad(Z.half(), A.half(), P.half())
    with pytest.raises(RuntimeError, match="panda_grad: expected Z to have dtype float32 or float64"):
        panda_grad(Z.long(), A, P)
    with pytest.raises(RuntimeError, match="panda_grad: expected non-empty"):
        panda_grad(Z[:, :, :0], A, P[:0])
    with pytest.raises(TypeError, match="panda_grad: expected P to be a torch.Tensor"):
        panda_grad(Z, A, P.tolist())
    with pytest.raises(ValueError, match="panda_step: expected lr_parts to be finite and >= 0"):
        panda_step(Z, A, P, -1.0)
    with pytest.raises(ValueError, match="panda_step: expected lr_appearances to be finite and >= 0"):
        panda_step(Z, A, P, 1.0, float("nan"))
    with pytest.raises(ValueError, match="panda_step: expected 0 <= max_backtracks <= 1000"):
        panda_step(Z, A, P, 1.0, max_backtracks=-1)
    if not torch.cuda.is_available():
        try:
            Zc = Z.to("meta")
        except Exception:  # pragma: no cover
            return
        # meta tensors meet the fake kernel (shapes only), as under torch.compile
        gA, gP, loss = panda_grad(Zc, A.to("meta"), P.to("meta"))
        assert gA.shape == A.shape and gP.shape == P.shape and loss.shape == () and gA.is_meta


# Z's values are checked through the loss (no extra pass over Z); A and P up front.
@pytest.mark.parametrize("value,word", [(float("nan"), "NaN"), (float("inf"), "Inf"), (-float("inf"), "Inf")])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("where", [(0, 0, 0), (1, 5, 8)], ids=["first", "last"])
@pytest.mark.parametrize("op", ["panda_grad", "panda_step"])
def test_nonfinite_Z_is_refused(value, word, dtype, where, op):
    Z, A, P = (t.to(dtype) for t in _factors(2, 6, 9, 3, 2, seed=3))
    Z[where] = value
    call = (lambda: panda_grad(Z, A, P)) if op == "panda_grad" else (lambda: panda_step(Z, A, P, 1e-3, 1e-3, line_search=True))
    with pytest.raises(ValueError, match=f"{op}: expected Z to be finite, got {word} entries"):
        call()


@pytest.mark.parametrize("name", ["A", "P"])
def test_nonfinite_factors_are_refused(name):
    Z, A, P = _factors(2, 6, 9, 3, 2, seed=3)
    (A if name == "A" else P)[0, 0] = float("nan")
    with pytest.raises(ValueError, match=f"panda_grad: expected {name} to be finite, got NaN entries"):
        panda_grad(Z, A, P)


def test_overflowing_loss_is_refused_not_returned_as_inf():
    Z, A, P = (t.float() for t in _factors(2, 6, 9, 3, 2, seed=3))
    Z[0, 0, 0] = 1e30  # finite in float32, but its square is not
    with pytest.raises(ValueError, match=r"panda_grad: the loss overflows Float: Z is finite but its largest \|entry\| is 1e\+30"):
        panda_grad(Z, A, P)
    assert torch.isfinite(panda_grad(Z.double(), A.double(), P.double())[2])
