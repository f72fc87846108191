import pytest
import torch

from lowrankedit import Region
from lowrankedit.region import area_resample_matrix


def test_box_mask_exact():
    r = Region.box(40, 20, 12, 24, size=(64, 64))
    m = r.mask()
    assert m.shape == (64, 64)
    assert m.sum() == 12 * 24
    assert m[40:52, 20:44].min() == 1 and m[:40].max() == 0 and m[52:].max() == 0 and m[:, :20].max() == 0


@pytest.mark.parametrize("h, w", [(32, 32), (16, 8), (128, 128), (48, 80), (7, 13), (256, 256)])
def test_resample_preserves_mean(h, w):
    r = Region.box(40, 20, 12, 24, size=(64, 64))
    m = r.mask(h, w, dtype=torch.float64)
    assert m.shape == (h, w)
    assert m.min() >= 0 and m.max() <= 1
    torch.testing.assert_close(m.mean(), torch.tensor(12 * 24 / 64 ** 2, dtype=torch.float64), rtol=1e-12, atol=0)


def test_downsample_is_area_average():
    r = Region.box(1, 1, 2, 2, size=(4, 4))  # covers one pixel of each 2x2 cell of the top-left 2x2 grid
    m = r.mask(2, 2)
    torch.testing.assert_close(m, torch.full((2, 2), 0.25))


def test_upsample_soft_edges_stay_soft():
    soft = torch.tensor([[0.0, 0.5], [0.5, 1.0]])
    r = Region.from_mask(soft)
    up = r.mask(4, 4)
    torch.testing.assert_close(up, soft.repeat_interleave(2, 0).repeat_interleave(2, 1))
    # a non-integer ratio: 3 -> 2, each output cell covers 1.5 input cells
    r3 = Region.from_mask(torch.tensor([[1.0, 0.0, 0.0]] * 3))
    torch.testing.assert_close(r3.mask(2, 2), torch.tensor([[2 / 3, 0.0], [2 / 3, 0.0]]))


def test_resample_matrix_rows_sum_to_one():
    for a, b in [(64, 16), (16, 64), (7, 3), (3, 7)]:
        R = area_resample_matrix(a, b)
        torch.testing.assert_close(R.sum(1), torch.ones(b, dtype=torch.float64))


def test_complement():
    r = Region.box(0, 0, 2, 2, size=(4, 4))
    torch.testing.assert_close(r.complement().mask() + r.mask(), torch.ones(4, 4))


@pytest.mark.parametrize("args, match", [
    ((60, 20, 12, 24), r"rows \[60, 72\) and columns \[20, 44\) to lie inside the 64x64 grid"),
    ((0, 0, 0, 5), "expected positive height and width, got height=0"),
    ((-1, 0, 4, 4), r"rows \[-1, 3\)"),
])
def test_box_errors(args, match):
    with pytest.raises(ValueError, match=match):
        Region.box(*args, size=(64, 64))


def test_from_mask_errors():
    with pytest.raises(ValueError, match=r"expected mask values in \[0, 1\], got range \[0.0, 2.0\]"):
        Region.from_mask(torch.tensor([[0.0, 2.0]]))
    with pytest.raises(ValueError, match="expected mask to be finite, got 1 NaN"):
        Region.from_mask(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match=r"expected mask of shape \(H, W\), got \(3,\)"):
        Region.from_mask(torch.zeros(3))


def test_bool_mask_and_dict():
    r = Region.from_mask(torch.eye(4, dtype=torch.bool), name="diag")
    assert r.mask().sum() == 4
    assert r.to_dict()["name"] == "diag"
