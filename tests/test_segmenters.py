"""Segmenters for LELSD: StaticRegion, PandaParts (on a hand-made stand-in and, once merged, on real PandA parts)."""
import pytest
import torch
import torch.nn.functional as F

import lowrankedit
from lowrankedit.methods.lelsd import held_out_scores
from lowrankedit.segmenters import PandaParts, StaticRegion


pytestmark = pytest.mark.usefixtures("one_thread")


class StandInParts:
    """Stand-in for the result of ``lowrankedit.panda``: exactly ``.layer`` and ``.saliency(features, k)``.

    Part ``k`` of 4 is the feature energy (channel mean of squares) inside horizontal band ``k`` of the feature map,
    scaled per sample to a maximum of 1: a per-sample, feature-driven mask in [0, 1], like real PandA saliency.
    """

    def __init__(self, layer="block3"):
        self.layer = layer
        self.calls = []

    def saliency(self, features, k):
        self.calls.append((tuple(features.shape), k))
        n, _, h, w = features.shape
        band = torch.zeros(h, w, dtype=features.dtype, device=features.device)
        band[k * h // 4:(k + 1) * h // 4] = 1
        s = features.pow(2).mean(1) * band
        return s / s.flatten(1).amax(1).clamp_min(1e-12).view(n, 1, 1)


def _features(G, z, layer="block3"):
    with torch.no_grad():
        return {layer: G.features(z, layer)}


# ---------------------------------------------------------------------------------------------------------------
# StaticRegion
# ---------------------------------------------------------------------------------------------------------------

def test_static_region_repeats_the_region(mouth):
    seg = StaticRegion(mouth)
    images = torch.zeros(3, 3, 64, 64)
    m = seg(images, {})
    assert m.shape == (3, 64, 64) and m.dtype == torch.float32
    assert torch.equal(m[0], mouth.mask(64, 64)) and torch.equal(m[2], m[0])
    assert float(m.sum()) == 3 * 14 * 24
    # At another image resolution the region is area-resampled.
    assert torch.allclose(seg(torch.zeros(2, 3, 32, 32), {})[1], mouth.mask(32, 32))
    assert seg.describe()["segmenter"] == "StaticRegion" and seg.describe()["name"] == "mouth"


def test_static_region_from_tensor_and_errors():
    mask = torch.zeros(8, 8)
    mask[2:4] = 0.5
    seg = StaticRegion(mask)
    assert torch.equal(seg(torch.zeros(1, 3, 8, 8), {})[0], mask)
    with pytest.raises(TypeError, match="StaticRegion: expected a lowrankedit.Region or a \\(H, W\\) mask tensor"):
        StaticRegion([[0, 1]])
    with pytest.raises(ValueError, match=r"Region.from_mask: expected mask values in \[0, 1\]"):
        StaticRegion(torch.full((4, 4), 2.0))
    with pytest.raises(ValueError, match=r"StaticRegion: expected images of shape \(N, 3, H, W\), got \(3, 8, 8\)"):
        seg(torch.zeros(3, 8, 8), {})


# ---------------------------------------------------------------------------------------------------------------
# PandaParts on the stand-in
# ---------------------------------------------------------------------------------------------------------------

def test_panda_parts_is_the_upsampled_saliency(dcgan):
    parts = StandInParts()
    z = dcgan.sample_latents(3, seed=1)
    feats = _features(dcgan, z)
    images = torch.zeros(3, 3, 64, 64)
    s = parts.saliency(feats["block3"], 3)
    want = F.interpolate(s[:, None], size=(64, 64), mode="bilinear", align_corners=True)[:, 0]
    got = PandaParts(parts, 3)(images, feats)
    assert got.shape == (3, 64, 64)
    assert torch.allclose(got, want, atol=1e-6)
    assert got.min() >= 0 and got.max() <= 1
    assert not torch.allclose(got[0], got[1])  # per-sample masks, not one static region
    assert got[:, :40].max() < 0.2 and got[:, 50:].max() > 0.5  # band 3 is the bottom quarter

    # Several parts: their pointwise maximum; a threshold: a binary mask.
    both = PandaParts(parts, [0, 3])(images, feats)
    s0 = parts.saliency(feats["block3"], 0)
    want = F.interpolate(torch.maximum(s0, s)[:, None], size=(64, 64), mode="bilinear", align_corners=True)[:, 0]
    assert torch.allclose(both, want, atol=1e-6)
    binary = PandaParts(parts, 3, threshold=0.3)(images, feats)
    want = F.interpolate((s >= 0.3).float()[:, None], size=(64, 64), mode="bilinear", align_corners=True)[:, 0]
    assert torch.allclose(binary, want, atol=1e-6)
    # An explicit size; the saliency at the layer resolution.
    assert PandaParts(parts, 3, size=(16, 16))(images, feats).shape == (3, 16, 16)
    assert torch.equal(PandaParts(parts, 3).saliency(feats["block3"]), s)


def test_panda_parts_errors(dcgan):
    parts = StandInParts()
    feats = _features(dcgan, dcgan.sample_latents(2))
    images = torch.zeros(2, 3, 64, 64)

    class NoSaliency:
        layer = "block3"

    with pytest.raises(TypeError, match="PandaParts: expected the result of lowrankedit.panda .* without .saliency"):
        PandaParts(NoSaliency(), 0)
    with pytest.raises(TypeError, match="PandaParts: expected part_index to be an int or a sequence of ints"):
        PandaParts(parts, "mouth")
    with pytest.raises(ValueError, match="PandaParts: expected one or more non-negative part indices"):
        PandaParts(parts, [-1])
    with pytest.raises(ValueError, match=r"PandaParts: expected threshold to be a finite number in \[0, 1\], got 1.5"):
        PandaParts(parts, 0, threshold=1.5)
    with pytest.raises(ValueError, match="PandaParts: expected features to hold layer 'block3'"):
        PandaParts(parts, 0)(images, {"block4": feats["block3"]})

    class WrongShape(StandInParts):
        def saliency(self, features, k):
            return torch.zeros(features.shape[0], 5, 5)

    with pytest.raises(ValueError, match=r"PandaParts: expected parts.saliency\(features, 0\) of shape \(2, 16, 16\)"):
        PandaParts(WrongShape(), 0)(images, feats)

    class WithParts(StandInParts):
        parts = torch.zeros(256, 4)

    with pytest.raises(ValueError, match="PandaParts: part index out of range: got \\[4\\], the parts object has 4"):
        PandaParts(WithParts(), 4)


def test_lelsd_with_panda_parts_stand_in(dcgan):
    """LELSD computes the PandA layer for the segmenter (not a localization layer here) and localizes in the part."""
    parts = StandInParts("block3")
    seg = PandaParts(parts, 3)
    d = lowrankedit.lelsd(dcgan, seg, layers=("block4", "image"), steps=30, batch_size=4, lr=5e-2, seed=0,
                          progress=False, eval_samples=4)
    assert parts.calls and all(shape[1:] == (128, 16, 16) for shape, _ in parts.calls)
    assert {k for _, k in parts.calls} == {3}
    assert d.meta["region"] == {"segmenter": "PandaParts", "layer": "block3", "parts": [3], "threshold": None}
    z = dcgan.sample_latents(16, seed=99)
    r = torch.randn(4, 100, generator=torch.Generator().manual_seed(2))
    found = held_out_scores(dcgan, seg, d.vectors, z, alphas=(-3.0, 3.0))[0].item()
    rand = held_out_scores(dcgan, seg, r / r.norm(dim=1, keepdim=True), z, alphas=(-3.0, 3.0))[0].mean().item()
    print(f"stand-in PandA part 3: held-out score found {found:.3f}, random {rand:.3f}")
    assert found >= 1.8 * rand


# ---------------------------------------------------------------------------------------------------------------
# PandaParts on real PandA parts (runs once the PandA branch is merged)
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(lowrankedit, "panda"), reason="lowrankedit.panda is not merged into this checkout")
def test_lelsd_with_real_panda_parts(dcgan, mouth):
    """Unsupervised parts: PandA on block3, the part most concentrated on the mouth box, LELSD localizes in it."""
    layer = "block3"
    pa = lowrankedit.panda(dcgan, layer, ranks=(32, 8))
    assert pa.layer == layer
    z = dcgan.sample_latents(16, seed=5)
    f = _features(dcgan, z, layer)[layer]
    box = mouth.mask(*f.shape[-2:])
    share = []
    for k in range(8):
        s = pa.saliency(f, k)
        assert s.shape == (16, *f.shape[-2:]) and s.min() >= 0 and s.max() <= 1
        share.append(float((s * box).sum() / s.sum().clamp_min(1e-12)))
    k = max(range(8), key=lambda i: share[i])
    seg = PandaParts(pa, k)
    d = lowrankedit.lelsd(dcgan, seg, layers=("block3", "block4", "image"), steps=100, lr=5e-2, seed=0,
                          progress=False, eval_samples=8)
    z_eval = dcgan.sample_latents(32, seed=424242)
    r = torch.randn(8, 100, generator=torch.Generator().manual_seed(11))
    found = held_out_scores(dcgan, seg, d.vectors, z_eval)[0].item()
    rand = held_out_scores(dcgan, seg, r / r.norm(dim=1, keepdim=True), z_eval)[0].mean().item()
    print(f"PandA part {k} (mouth share {share[k]:.2f}): held-out score found {found:.3f}, random {rand:.3f}")
    assert found >= 2 * rand and found >= rand + 0.1
