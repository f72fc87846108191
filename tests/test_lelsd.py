"""LELSD: the localization scores on hand-made tensors, the optimization on the real DCGAN, errors."""
import pytest
import torch

import lowrankedit
from lowrankedit.methods.lelsd import (combine_masks, correlation_penalty, feature_localization_score,
                                       held_out_scores, learning_rate, _relaxed_one_hot, _sample_alpha)
from lowrankedit.segmenters import StaticRegion

# Settings of the acceptance runs (tuned on the DCGAN mouth box; see bench/results/lelsd.md).
ACCEPT = dict(layers=("block3", "block4", "image"), steps=100, batch_size=4, lr=5e-2, seed=0, progress=False,
              eval_samples=8)
N_EVAL = 32  # held-out codes of the test's own evaluation (a seed no run below trains on)


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------------------------
# Image-level localization score
# ---------------------------------------------------------------------------------------------------------------

def _direct_score(original, edited, mask):
    """Per-sample sum(d * m) / sum(d), written out with loops in float64."""
    n, C, H, W = original.shape
    out = []
    for i in range(n):
        num = den = 0.0
        for y in range(H):
            for x in range(W):
                d = sum((float(original[i, c, y, x]) - float(edited[i, c, y, x])) ** 2 for c in range(C)) / C
                m = float(mask[i, y, x]) if mask.dim() == 3 else float(mask[y, x])
                num += d * m
                den += d
        out.append(num / den if den > 0 else 0.0)
    return torch.tensor(out, dtype=torch.float64)


def test_score_change_only_inside_is_one_only_outside_is_zero():
    x = torch.randn(2, 3, 8, 8)
    m = torch.zeros(8, 8)
    m[2:5, 1:6] = 1
    inside, outside = x.clone(), x.clone()
    inside[..., 2:5, 1:6] += torch.randn(2, 3, 3, 5)
    outside[..., 6:, :] -= 0.5
    assert lowrankedit.localization_score(x, inside, m).item() == pytest.approx(1.0, abs=1e-7)
    assert lowrankedit.localization_score(x, outside, m).item() == 0.0
    # A uniform change scores the mask's area fraction.
    assert lowrankedit.localization_score(x, x + 0.3, m).item() == pytest.approx(15 / 64, rel=1e-6)


@pytest.mark.parametrize("per_sample_mask", [False, True])
def test_score_matches_direct_computation(per_sample_mask):
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(3, 3, 6, 5, generator=g), torch.randn(3, 3, 6, 5, generator=g)
    m = torch.rand(3, 6, 5, generator=g) if per_sample_mask else torch.rand(6, 5, generator=g)
    y[1] = x[1]  # a sample that did not change scores 0
    want = _direct_score(x.double(), y.double(), m.double())
    got = lowrankedit.localization_score(x.double(), y.double(), m.double(), reduction="none")
    assert got.shape == (3,)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-14)
    assert got[1] == 0
    assert lowrankedit.localization_score(x.double(), y.double(), m.double()).item() == pytest.approx(
        float(want.mean()), rel=1e-12)


def test_score_rejects_bad_input():
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="localization_score: expected original and edited of the same shape"):
        lowrankedit.localization_score(x, torch.zeros(2, 3, 4, 5), torch.ones(4, 4))
    with pytest.raises(ValueError, match=r"localization_score: expected mask values in \[0, 1\]"):
        lowrankedit.localization_score(x, x + 1, torch.full((4, 4), 1.5))
    with pytest.raises(ValueError, match="localization_score: expected mask of spatial size"):
        lowrankedit.localization_score(x, x + 1, torch.ones(3, 3))
    with pytest.raises(ValueError, match="localization_score: expected reduction"):
        lowrankedit.localization_score(x, x + 1, torch.ones(4, 4), reduction="sum")


# ---------------------------------------------------------------------------------------------------------------
# Feature-level score (the training objective), correlation penalty, sampling
# ---------------------------------------------------------------------------------------------------------------

def test_feature_score_inside_outside_and_direct():
    g = torch.Generator().manual_seed(5)
    r = {"a": torch.randn(2, 4, 4, 4, generator=g, dtype=torch.float64),
         "b": torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64)}
    # Mask given at the resolution of "b" (3x3) is resized to "a" (4x4) bilinearly with align_corners=True.
    mask = torch.zeros(2, 3, 3, dtype=torch.float64)
    mask[:, 0, 0] = 1.0
    # Change "a" only where the resized mask is 1 (the top-left corner pixel) and "b" only outside its mask.
    e = {"a": r["a"].clone(), "b": r["b"].clone()}
    e["a"][:, :, 0, 0] += 1.0
    e["b"][:, :, 2, 2] += 2.0
    s = feature_localization_score(r, e, mask, weights=[3.0, 1.0], eps=0.0)
    assert torch.allclose(s, torch.full((2,), 0.75, dtype=torch.float64), atol=1e-12)

    # General case against a direct computation, the resized mask written out by hand:
    # align_corners=True from 3 to 4 samples at positions 0, 2/3, 4/3, 2 of the 3-grid.
    e = {k: v + torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in r.items()}
    mask = torch.rand(2, 3, 3, generator=g, dtype=torch.float64)
    pos = torch.tensor([0.0, 2 / 3, 4 / 3, 2.0], dtype=torch.float64)
    lo = pos.floor().long().clamp(max=1)
    t = pos - lo
    A = torch.zeros(4, 3, dtype=torch.float64)
    A[torch.arange(4), lo] += 1 - t
    A[torch.arange(4), lo + 1] += t
    m_a = A @ mask @ A.T
    want = torch.zeros(2, dtype=torch.float64)
    for name, w, m in (("a", 0.25, m_a), ("b", 0.75, mask)):
        diff = (r[name] - e[name]).pow(2).mean(1)
        want += w * (diff * m).sum((1, 2)) / (diff.sum((1, 2)) + 1e-6)
    got = feature_localization_score(r, e, mask, weights=[1.0, 3.0])
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-14)


def test_feature_score_rejects_bad_input():
    r = {"a": torch.zeros(2, 4, 4, 4)}
    with pytest.raises(ValueError, match="feature_localization_score: expected 1 layer weights, got 2"):
        feature_localization_score(r, r, torch.ones(4, 4), weights=[1, 1])
    with pytest.raises(ValueError, match="feature_localization_score: expected non-negative"):
        feature_localization_score(r, r, torch.ones(4, 4), weights=[-1])
    with pytest.raises(ValueError, match="same layers"):
        feature_localization_score(r, {"b": r["a"]}, torch.ones(4, 4))


def test_correlation_penalty_and_mask_combination():
    e = torch.eye(3, 5)
    assert correlation_penalty(e).item() == 0.0
    same = torch.ones(3, 5) / 5 ** 0.5
    assert correlation_penalty(same).item() == pytest.approx(6 / 9, rel=1e-6)  # 6 off-diagonal ones over 9 entries
    assert correlation_penalty(e[:1]).item() == 0.0
    a, b = torch.tensor([0.0, 1.0, 1.0, 0.5]), torch.tensor([0.0, 0.0, 1.0, 0.5])
    assert combine_masks(a, b, "average").tolist() == [0.0, 0.5, 1.0, 0.5]
    assert combine_masks(a, b, "union").tolist() == [0.0, 1.0, 1.0, 0.75]
    assert combine_masks(a, b, "intersection").tolist() == [0.0, 0.0, 1.0, 0.25]


def test_alpha_and_mixture_sampling():
    g = torch.Generator().manual_seed(0)
    alphas = torch.tensor([_sample_alpha(0.5, 3.0, g) for _ in range(2000)])
    assert alphas.abs().min() >= 0.5 and alphas.abs().max() <= 3.0
    assert 0.4 < (alphas > 0).double().mean() < 0.6
    # Uniform on [-3, -0.5] u [0.5, 3]: mean |alpha| = 1.75.
    assert alphas.abs().mean().item() == pytest.approx(1.75, abs=0.06)
    c = torch.stack([_relaxed_one_hot(3, 1e-3, g) for _ in range(300)])
    assert torch.allclose(c.sum(1), torch.ones(300, dtype=torch.float64))
    assert (c.max(1).values > 0.99).double().mean() > 0.95  # near one-hot (two close Gumbel draws may share)
    assert ((c.argmax(1)[:, None] == torch.arange(3)).double().mean(0) > 0.2).all()  # every direction drawn


def test_learning_rate_halved_four_times():
    got = [learning_rate(1e-3, i, 100) for i in range(100)]
    want = [1e-3 * 0.5 ** (i // 20) for i in range(100)]
    assert got == pytest.approx(want, rel=1e-15)
    assert len(set(got)) == 5 and min(got) == pytest.approx(1e-3 / 16)
    assert learning_rate(1e-3, 3, 4) == 1e-3  # too few steps to halve


# ---------------------------------------------------------------------------------------------------------------
# The real DCGAN and the mouth box
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seg(mouth):
    return StaticRegion(mouth)


@pytest.fixture(scope="module")
def z_eval(dcgan):
    return dcgan.sample_latents(N_EVAL, seed=424242)


@pytest.fixture(scope="module")
def random_score(dcgan, seg, z_eval):
    """Held-out score of a random unit direction: the mean over 16 draws, each at alpha = 3.

    Random directions score 0.02-0.09 one by one (a rare one happens to move the mouth), so one draw would make
    the 8x criterion a lottery. One alpha per draw: the score hardly depends on |alpha| (the edits are close to
    linear) and -alpha on r is +alpha on -r, an equally likely draw; so 16 draws at one alpha cost what 8 at two
    do and estimate the mean better."""
    r = torch.randn(16, *dcgan.latent_shape, generator=torch.Generator().manual_seed(11))
    r = r / r.norm(dim=1, keepdim=True)
    return held_out_scores(dcgan, seg, r, z_eval, alphas=(3.0,))[0].mean().item()


@pytest.fixture(scope="module")
def one_direction(dcgan, seg):
    return lowrankedit.lelsd(dcgan, seg, num_directions=1, **ACCEPT)


@pytest.fixture(scope="module")
def three_directions(dcgan, seg):
    return lowrankedit.lelsd(dcgan, seg, num_directions=3, **{**ACCEPT, "steps": 150})


def test_found_direction_is_localized(dcgan, seg, z_eval, random_score, one_direction):
    d = one_direction
    assert isinstance(d, lowrankedit.Directions) and d.vectors.shape == (1, 100)
    assert torch.allclose(d.vectors.norm(dim=1), torch.ones(1), atol=1e-5)
    found = held_out_scores(dcgan, seg, d.vectors, z_eval)[0].item()
    print(f"held-out localization score: found {found:.3f}, random {random_score:.3f}, "
          f"{d.meta['seconds_per_step'] * 1e3:.1f} ms/step")
    assert found >= 0.3
    assert found >= 8 * random_score
    # The returned score is the same measure on the run's own held-out codes.
    assert d.scores[0].item() >= 0.3
    assert d.meta["method"] == "lelsd" and d.meta["params"]["steps"] == ACCEPT["steps"]


def test_several_directions_decorrelated_and_localized(dcgan, seg, z_eval, random_score, three_directions):
    d = three_directions
    V = d.vectors
    assert V.shape == (3, 100)
    cos = V @ V.T
    off = cos[~torch.eye(3, dtype=torch.bool)].abs()
    scores = held_out_scores(dcgan, seg, V, z_eval)[0]
    print(f"3 directions: held-out scores {scores.tolist()}, max |cos| {off.max():.3f}, random {random_score:.3f}")
    assert off.max() < 0.2
    assert (scores >= 0.2).all() and (scores >= 5 * random_score).all()
    assert (d.scores[:-1] >= d.scores[1:]).all()  # best first


def test_reproducible_from_seed_and_saved(dcgan, seg, tmp_path):
    kw = dict(layers=("block4",), steps=3, batch_size=2, lr=1e-2, progress=False, eval_samples=2)
    a = lowrankedit.lelsd(dcgan, seg, num_directions=2, seed=7, **kw)
    b = lowrankedit.lelsd(dcgan, seg, num_directions=2, seed=7, **kw)
    c = lowrankedit.lelsd(dcgan, seg, num_directions=2, seed=8, **kw)
    assert torch.equal(a.vectors, b.vectors) and torch.equal(a.scores, b.scores)
    assert not torch.allclose(a.vectors, c.vectors)
    a.save(tmp_path / "lelsd.pt")
    back = lowrankedit.Directions.load(tmp_path / "lelsd.pt")
    assert torch.equal(back.vectors, a.vectors) and back.meta["params"] == a.meta["params"]


@pytest.mark.parametrize("combine", ["union", "intersection"])
def test_mask_combinations_run(dcgan, seg, combine):
    d = lowrankedit.lelsd(dcgan, seg, layers=("block4",), steps=2, batch_size=2, mask_combine=combine,
                          progress=False, eval_samples=2)
    assert d.meta["params"]["mask_combine"] == combine and torch.isfinite(d.scores).all()


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------

QUICK = dict(layers=("block4",), steps=2, batch_size=2, progress=False, eval_samples=2)


@pytest.mark.parametrize("bad, match", [
    (lambda x, f: torch.ones(x.shape[0] + 1, 64, 64), r"expected the segmenter to return masks of shape \(2, h, w\)"),
    (lambda x, f: torch.ones(x.shape[0], 1, 64, 64), r"masks of shape \(2, h, w\) for 2 images, got \(2, 1, 64, 64\)"),
    (lambda x, f: torch.full((x.shape[0], 64, 64), 1.5), r"mask values in \[0, 1\], got range \[1.5, 1.5\]"),
    (lambda x, f: -torch.ones(x.shape[0], 64, 64), r"mask values in \[0, 1\]"),
    (lambda x, f: torch.full((x.shape[0], 64, 64), float("nan")), "masks containing NaN"),
    (lambda x, f: torch.zeros(x.shape[0], 64, 64), "masks are empty for every sample of the batch at step 0"),
])
def test_bad_segmenter_output_raises(dcgan, bad, match):
    with pytest.raises(ValueError, match=match):
        lowrankedit.lelsd(dcgan, bad, **QUICK)


def test_bad_segmenter_type_raises(dcgan):
    with pytest.raises(TypeError, match="lelsd: expected the segmenter to return a torch.Tensor, got list"):
        lowrankedit.lelsd(dcgan, lambda x, f: [[0.5]], **QUICK)
    with pytest.raises(TypeError, match="lelsd: expected segmenter to be callable"):
        lowrankedit.lelsd(dcgan, "mouth", **QUICK)


@pytest.mark.parametrize("kw, match", [
    (dict(layers=("block9",)), "lelsd: the generator has no layer 'block9'"),
    (dict(layers=()), "lelsd: expected a non-empty list of distinct layers"),
    (dict(layers=("block4",), layer_weights=(1, 2)), "lelsd: expected 1 layer weights, got 2"),
    (dict(mask_combine="max"), "lelsd: expected mask_combine in"),
    (dict(alpha_range=(3, 1)), "lelsd: expected alpha_range"),
    (dict(num_directions=0), "lelsd: expected num_directions to be an int >= 1"),
    (dict(steps=1.5), "lelsd: expected steps to be an int >= 1"),
    (dict(lr=0), "lelsd: expected lr to be a finite number > 0, got 0"),
])
def test_bad_arguments_raise(dcgan, seg, kw, match):
    with pytest.raises(ValueError, match=match):
        lowrankedit.lelsd(dcgan, seg, **{**QUICK, **kw})


def test_generator_missing_members_raises(seg):
    class NotAGenerator:
        latent_shape = (4,)

    with pytest.raises(TypeError, match="lelsd: expected a generator with .*NotAGenerator lacks"):
        lowrankedit.lelsd(NotAGenerator(), seg, **QUICK)
