import pytest
import torch

from conftest import DEVICES
from lowrankedit import ops, reference

TOL = {torch.float32: 1e-6, torch.float64: 1e-12}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 5, 11), (2, 4, 100, 100), (1, 1)])
@pytest.mark.parametrize("tau", [0.0, 0.3, 1.5])
def test_matches_reference(device, dtype, shape, tau):
    X = torch.randn(shape, dtype=torch.float64).to(device=device, dtype=dtype) * 2
    Y = ops.soft_threshold(X, tau)
    assert Y.shape == X.shape and Y.dtype == dtype and Y.device == X.device
    torch.testing.assert_close(Y.double().cpu(), reference.soft_threshold(X.cpu(), tau), rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("device", DEVICES)
def test_values_by_hand(device):
    X = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0, 1.0], device=device)
    expected = torch.tensor([-1.0, 0.0, 0.0, 0.0, 2.0, 0.0])
    assert torch.equal(ops.soft_threshold(X, 1.0).cpu(), expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(device, dtype):
    X = torch.randn(300, dtype=torch.float64).to(device=device, dtype=dtype)
    Y = ops.soft_threshold(X, 0.25)
    assert Y.dtype == dtype
    torch.testing.assert_close(Y.double().cpu(), reference.soft_threshold(X.double().cpu(), 0.25), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous(device):
    base = torch.randn(64, 48, dtype=torch.float64, device=device)
    for X in (base.T, base[::2, 1::3], base.unsqueeze(0).expand(3, 64, 48)):
        assert not X.is_contiguous()
        torch.testing.assert_close(ops.soft_threshold(X, 0.4).cpu(), reference.soft_threshold(X.cpu(), 0.4),
                                   rtol=0, atol=1e-14)


@pytest.mark.parametrize("device", DEVICES)
def test_empty(device):
    for shape in [(0,), (3, 0, 5)]:
        Y = ops.soft_threshold(torch.empty(shape, device=device), 0.1)
        assert Y.shape == shape


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("where", [0, 100_002, 54_321], ids=["first", "last", "middle"])
@pytest.mark.parametrize("bad,word", [(float("nan"), "NaN"), (float("inf"), "Inf"), (-float("inf"), "Inf")])
def test_nan_and_inf_input_are_refused(bad, word, where, dtype, device):
    # the kernel finds them in its own pass, in whichever thread's chunk they fall
    X = torch.randn(100_003, dtype=dtype, device=device)
    X[where] = bad
    with pytest.raises(ValueError, match=f"soft_threshold: expected X to be finite, got {word} entries"):
        ops.soft_threshold(X, 1.0)


def test_gradient():
    X = torch.randn(40, dtype=torch.float64, requires_grad=True)
    X.data[X.data.abs() - 0.5 < 1e-3] += 0.01  # keep away from the kink at |x| = tau for the finite differences
    assert torch.autograd.gradcheck(lambda x: ops.soft_threshold(x, 0.5), (X,))


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_wrong_dtype(dtype):
    with pytest.raises(RuntimeError, match=r"soft_threshold: expected X to have dtype float32, float64, float16 or bfloat16, got"):
        ops.soft_threshold(torch.zeros(3, dtype=dtype), 0.1)


@pytest.mark.parametrize("tau, match", [(float("nan"), "expected tau to be finite, got nan"),
                                        (float("inf"), "expected tau to be finite, got inf"),
                                        (-0.1, r"expected tau >= 0, got -0.1")])
def test_bad_tau(tau, match):
    with pytest.raises(ValueError, match=match):
        ops.soft_threshold(torch.zeros(3), tau)


def test_tau_tensor_must_be_scalar():
    with pytest.raises(ValueError, match=r"expected tau to be a scalar, got a tensor of shape \(2,\)"):
        ops.soft_threshold(torch.zeros(3), torch.tensor([0.1, 0.2]))
    Y = ops.soft_threshold(torch.tensor([2.0]), torch.tensor(0.5))
    assert Y.item() == 1.5


def test_not_a_tensor():
    with pytest.raises(TypeError, match="expected X to be a torch.Tensor, a NumPy array or an object with __dlpack__, got list"):
        ops.soft_threshold([1.0, 2.0], 0.1)
