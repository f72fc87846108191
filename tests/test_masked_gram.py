"""masked_gram against the float64 reference: batches, shared and per-batch weights, ragged tiles, views, dtypes."""
import pytest
import torch
from conftest import DEVICES

from lowrankedit import reference
from lowrankedit.ops import masked_gram


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def _case(B, P, D, device, dtype, shared, seed=0):
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(B, P, D, generator=g, dtype=torch.float64)
    w = torch.rand(P if shared else (B, P), generator=g, dtype=torch.float64)
    w[..., :7] = 0.0  # exact 0 and 1 weights
    w[..., 7:13] = 1.0
    return J.to(device, dtype), w.to(device, dtype)


TOL = {torch.float64: 1e-12, torch.float32: 2e-6}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shared", [False, True], ids=["per_batch_w", "shared_w"])
@pytest.mark.parametrize("B,P,D", [(3, 2531, 37), (1, 5003, 130), (2, 17, 5)])
def test_matches_reference(device, dtype, shared, B, P, D):
    J, w = _case(B, P, D, device, dtype, shared)
    G_in, G_out = masked_gram(J, w)
    R_in, R_out = reference.masked_gram(J.cpu(), w.cpu())
    assert G_in.shape == G_out.shape == (B, D, D)
    assert G_in.dtype == G_out.dtype == dtype
    for b in range(B):  # per batch entry: an average would hide one bad entry
        assert _rel(G_in[b].cpu(), R_in[b]) < TOL[dtype], b
        assert _rel(G_out[b].cpu(), R_out[b]) < TOL[dtype], b
    assert torch.equal(G_in, G_in.mT) and torch.equal(G_out, G_out.mT)


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    J, w = _case(2, 777, 19, device, torch.float64, shared=False)
    Jt = J.transpose(1, 2).contiguous().transpose(1, 2)  # same values, column-major strides
    wnc = torch.empty(2, 2 * 777, dtype=w.dtype, device=device)[:, ::2]  # (B, P) view with stride 2
    wnc.copy_(w)
    assert not Jt.is_contiguous() and not wnc.is_contiguous()
    G_in, G_out = masked_gram(Jt, wnc)
    R_in, R_out = reference.masked_gram(J.cpu(), w.cpu())
    assert _rel(G_in.cpu(), R_in) < 1e-12 and _rel(G_out.cpu(), R_out) < 1e-12


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_float32(device, dtype):
    J, w = _case(2, 3001, 24, device, dtype, shared=True)
    G_in, G_out = masked_gram(J, w)
    assert G_in.dtype == G_out.dtype == torch.float32
    R_in, R_out = reference.masked_gram(J.cpu(), w.cpu())  # reference of the rounded half values
    # float32 accumulation of 3001 products: ~1e-6; a float16 accumulator would be off by ~1e-3.
    assert _rel(G_in.cpu(), R_in) < 1e-5 and _rel(G_out.cpu(), R_out) < 1e-5


@pytest.mark.parametrize("device", DEVICES)
def test_complement_accurate_when_w_near_one(device):
    # G_out = 2^-20 J^T J exactly; J^T J - G_in in float32 would keep ~10% of the digits.
    J, _ = _case(1, 4000, 16, device, torch.float32, shared=True)
    w = torch.full((4000,), 1 - 2.0 ** -20, device=device)
    _, G_out = masked_gram(J, w)
    R = reference.masked_gram(J.cpu(), w.cpu())[1]
    assert _rel(G_out.cpu(), R) < 1e-5


@pytest.mark.parametrize("device", DEVICES)
def test_empty_rows_give_zeros(device):
    G_in, G_out = masked_gram(torch.zeros(2, 0, 4, device=device), torch.zeros(0, device=device))
    assert G_in.shape == (2, 4, 4) and not G_in.any() and not G_out.any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_region_masks_rows_in_one_gram_only(device, dtype):
    # A box region with a feathered edge (mostly exact 0 and 1, a band of soft weights), all zeros and all ones:
    # the CPU route sends each row only to the Grams it weighs, so every pattern of skipped rows is checked here.
    g = torch.Generator().manual_seed(3)
    J = torch.randn(2, 48 * 48, 70, generator=g, dtype=torch.float64)  # D >= 64: split GEMMs
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    edge = torch.minimum(torch.minimum(yy - 12, 35 - yy), torch.minimum(xx - 8, 39 - xx))
    box = ((edge + 2) / 4).clamp(0, 1).flatten().double()  # 1 inside, 0 outside, a 4-pixel ramp between
    for w in (box, torch.zeros_like(box), torch.ones_like(box), torch.stack([box, 1 - box])):
        G_in, G_out = masked_gram(J.to(device, dtype), w.to(device, dtype))
        R_in, R_out = reference.masked_gram(J.to(dtype), w.to(dtype))
        for got, ref in ((G_in, R_in), (G_out, R_out)):
            if ref.abs().max() == 0:
                assert not got.any()  # a Gram with no weight at all is exactly zero
            else:
                assert _rel(got.cpu(), ref) < TOL[dtype]


@pytest.mark.parametrize(
    "J,w,exc,match",
    [
        (torch.zeros(4, 3), torch.zeros(4), RuntimeError, r"masked_gram: expected J of shape \(B, P, D\)"),
        (torch.zeros(2, 4, 3), torch.zeros(5), RuntimeError, r"masked_gram: expected w of shape \(P,\)"),
        (torch.zeros(2, 4, 3), torch.zeros(3, 4), RuntimeError, r"masked_gram: expected w of shape \(B, P\)"),
        (torch.zeros(2, 4, 3), torch.zeros(2, 4, 1), RuntimeError, r"expected w of shape \(B, P\) or \(P,\)"),
        (torch.zeros(2, 4, 3, dtype=torch.int32), torch.zeros(4), RuntimeError, r"expected J to have dtype"),
        (torch.zeros(2, 4, 3), torch.tensor([0.0, float("nan"), 0.5, 1.0]), ValueError, "masked_gram: expected w to be finite, got NaN entries"),
        (torch.zeros(2, 4, 3), torch.tensor([0.0, 1.5, 0.5, 1.0]), ValueError, r"expected w in \[0, 1\].*1\.5"),
        (torch.zeros(2, 4, 3), torch.tensor([0.0, -0.1, 0.5, 1.0]), ValueError, r"expected w in \[0, 1\].*-0\.1"),
        ([[1.0]], torch.zeros(1), TypeError, "masked_gram: expected J to be a torch.Tensor"),
    ],
)
def test_bad_input(J, w, exc, match):
    with pytest.raises(exc, match=match):
        masked_gram(J, w)


def _with(value, b, p, d, shape=(2, 4, 3), dtype=torch.float64):
    J = torch.randn(*shape, dtype=dtype)
    J[b, p, d] = value
    return J


# J's values are checked through the Grams' diagonals (no pass over J): every entry reaches one of them, whatever
# its row's weight (0, 1 or between), and so is an entry in the last row or column.
@pytest.mark.parametrize("where", [(0, 0, 0), (1, 1, 2), (1, 3, 1), (0, 2, 2)], ids=["w0", "w1", "w_half", "w_quarter"])
@pytest.mark.parametrize("value,word", [(float("nan"), "NaN"), (float("inf"), "Inf"), (-float("inf"), "Inf")])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_nonfinite_J_is_refused_whatever_its_weight(where, value, word, dtype):
    w = torch.tensor([0.0, 1.0, 0.25, 0.5])
    J = _with(value, *where, dtype=dtype)
    with pytest.raises(ValueError, match=f"masked_gram: expected J to be finite, got {word} entries"):
        masked_gram(J, w)


def test_overflowing_grams_are_refused_not_returned_as_inf():
    J = torch.full((1, 4, 2), 1e30, dtype=torch.float32)  # finite, but 4e60 does not fit in float32
    with pytest.raises(ValueError, match=r"masked_gram: the Grams overflow Float: J is finite but its largest \|entry\| is 1e\+30"):
        masked_gram(J, torch.full((4,), 0.5))
    G_in, G_out = masked_gram(J.double(), torch.full((4,), 0.5))  # float64 holds them
    assert torch.isfinite(G_in).all() and torch.isfinite(G_out).all()
