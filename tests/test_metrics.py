"""Edit metrics against values worked out by hand."""
import math

import pytest
import torch

from lowrankedit import metrics


def _pair():
    """Two 4x4 images: a change of 1 per channel at pixel (0, 0), inside the top half, and of 2 at (3, 3), outside."""
    a = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    b = a.clone()
    b[0, :, 0, 0] = 1.0
    b[0, :, 3, 3] = 2.0
    m = torch.zeros(4, 4, dtype=torch.float64)
    m[:2] = 1
    return a, b, m


def test_hard_mask_by_hand():
    a, b, m = _pair()
    inside, outside = metrics.masked_mse(a, b, m)
    # d = 1 at (0, 0), 4 at (3, 3); 8 pixels inside, 8 outside.
    assert float(inside) == pytest.approx(1 / 8, abs=0) and float(outside) == pytest.approx(4 / 8, abs=0)
    assert float(metrics.roir(a, b, m)) == pytest.approx(4.0, rel=1e-15)
    assert float(metrics.localization_score(a, b, m)) == pytest.approx(1 / 5, rel=1e-15)
    assert float(metrics.rms_inside(a, b, m)) == pytest.approx(math.sqrt(1 / 8), rel=1e-15)


def test_soft_mask_and_channels_by_hand():
    a, b, _ = _pair()
    half = torch.full((4, 4), 0.5, dtype=torch.float64)
    inside, outside = metrics.masked_mse(a, b, half)
    assert float(inside) == pytest.approx(0.5 * 5 / 8, rel=1e-15)   # sum(0.5 d) / sum(0.5)
    assert float(outside) == pytest.approx(0.5 * 5 / 8, rel=1e-15)
    assert float(metrics.localization_score(a, b, half)) == pytest.approx(0.5, rel=1e-15)
    c = a.clone()
    c[0, 0, 1, 1] = 3.0                                              # one channel of three: d = 9 / 3
    m = torch.zeros(4, 4, dtype=torch.float64)
    m[1, 1] = 1
    inside, outside = metrics.masked_mse(a, c, m)
    assert float(inside) == pytest.approx(3.0, rel=1e-15) and float(outside) == 0.0
    assert float(metrics.localization_score(a, c, m)) == 1.0


def test_per_image_masks_and_no_change():
    a, b, m = _pair()
    a2, b2 = torch.cat([a, a]), torch.cat([b, a])                    # the second image does not change
    masks = torch.stack([m, 1 - m])
    loc = metrics.localization_score(a2, b2, masks, reduction="none")
    assert loc.tolist() == [pytest.approx(0.2, rel=1e-15), 0.0]
    inside, outside = metrics.masked_mse(a2, b2, masks)
    assert inside.tolist() == [pytest.approx(1 / 8), 0.0] and outside.tolist() == [pytest.approx(0.5), 0.0]


@pytest.mark.parametrize("bad, match", [
    (torch.ones(3, 3), r"spatial size \(4, 4\)"),
    (torch.full((4, 4), 1.5), r"values in \[0, 1\]"),
])
def test_bad_masks(bad, match):
    a, b, _ = _pair()
    with pytest.raises(ValueError, match=match):
        metrics.rms_inside(a, b, bad)


def test_empty_region():
    a, b, _ = _pair()
    with pytest.raises(ValueError, match="rms_inside: the mask has no pixels inside"):
        metrics.rms_inside(a, b, torch.zeros(4, 4))
