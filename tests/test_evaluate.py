"""lowrankedit.evaluate: the calibration reaches its target, the evaluation is sign-symmetric, results round-trip."""
import math

import pytest
import torch

import lowrankedit as le
from lowrankedit.evaluate import EVAL_SEED, METRICS, PartEdit, calibrate, mean_rms_inside

pytestmark = pytest.mark.usefixtures("one_thread")


def _direction(seed=3):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(100, generator=g)
    return d / d.norm()


@pytest.fixture(scope="module")
def eyes():
    return le.models.dcgan_region("eyes")


@pytest.mark.parametrize("target", [0.05, 0.2])
def test_calibration_reaches_target(dcgan, eyes, target):
    z = dcgan.sample_latents(4, seed=11)
    mask = eyes.mask(64, 64)
    alpha = calibrate(dcgan, _direction(), z, mask, target, rtol=1e-3)
    assert alpha > 0
    reached = mean_rms_inside(dcgan, _direction(), z, mask, alpha)
    assert abs(reached - target) <= 1e-3 * target, (alpha, reached)


def test_calibration_gives_up_with_a_clear_error(dcgan, eyes):
    tiny = _direction() * 1e-9
    with pytest.raises(ValueError, match="does not reach a mean RMS change of 0.1 .* lower the target"):
        calibrate(dcgan, tiny, dcgan.sample_latents(2), eyes.mask(64, 64), 0.1, max_alpha=10.0)
    with pytest.raises(ValueError, match="expected target > 0"):
        calibrate(dcgan, _direction(), dcgan.sample_latents(2), eyes.mask(64, 64), -1.0)


def test_evaluation_is_sign_symmetric(dcgan, eyes):
    d = _direction()
    ev = le.evaluate(dcgan, {"plus": d, "minus": -d}, eyes, samples=4, calibration_samples=2, progress=False)
    p, m = ev.row("plus"), ev.row("minus")
    assert p["alpha"] == pytest.approx(m["alpha"], rel=1e-12)
    for metric in METRICS:
        # Negating the direction swaps the signs: the per-sign means trade places, mean and spread stay.
        assert p[f"{metric}_mean"] == pytest.approx(m[f"{metric}_mean"], rel=1e-5), metric
        assert p[f"{metric}_std"] == pytest.approx(m[f"{metric}_std"], rel=1e-4), metric
        assert p[f"{metric}_plus"] == pytest.approx(m[f"{metric}_minus"], rel=1e-5), metric
        torch.testing.assert_close(ev.samples["plus"][metric], ev.samples["minus"][metric].flip(0), rtol=1e-4,
                                   atol=1e-9)
    # The two signs differ for a real edit: a one-sided number would mislead.
    assert p["roir_plus"] != pytest.approx(p["roir_minus"], rel=1e-3)


def test_evaluation_values_match_the_metrics(dcgan, eyes):
    d = _direction(5)
    ev = le.evaluate(dcgan, {"d": d}, eyes, samples=3, calibration_samples=2, chunk=2, progress=False)
    r, alpha = ev.row("d"), ev.row("d")["alpha"]
    z = dcgan.sample_latents(3, seed=EVAL_SEED)
    x0, mask = dcgan.synthesize(z), eyes.mask(64, 64)
    vals = []
    for s in (-1, 1):
        x1 = dcgan.synthesize(z + s * alpha * d)
        vals.append(le.metrics.roir(x0, x1, mask).double())
    roir = torch.stack(vals)
    torch.testing.assert_close(ev.samples["d"]["roir"], roir, rtol=1e-4, atol=0)
    assert r["roir_mean"] == pytest.approx(float(roir.mean()), rel=1e-4)
    assert r["roir_std"] == pytest.approx(float(roir.std()), rel=1e-3)
    assert ev.params["target"] == 0.1 and ev.params["samples"] == 3


def test_results_round_trip_in_the_file_format(dcgan, eyes, tmp_path):
    d = le.Directions(_direction()[None], torch.ones(1), {"seconds": 1.5})
    ev = le.evaluate(dcgan, {"a": d}, eyes, samples=2, calibration_samples=2, progress=False)
    path = tmp_path / "ev.safetensors"
    ev.save(path)
    back = le.Evaluation.load(path)
    assert back.rows == ev.rows and back.params == ev.params
    assert back.row("a")["seconds"] == 1.5
    torch.testing.assert_close(back.samples["a"]["localization"], ev.samples["a"]["localization"])
    assert "| a |" in back.table()
    with pytest.raises(ValueError, match="holds a 'evaluation' file, not 'directions'"):
        le.fileformat.load(path, "directions")
    (tmp_path / "junk").write_bytes(b"not a file of ours")
    with pytest.raises(ValueError, match="not a lowrankedit"):
        le.Evaluation.load(tmp_path / "junk")


def test_part_edit_is_evaluated_like_a_direction(dcgan, eyes):
    pa = le.panda(dcgan, "block3", ranks=(8, 4), n_samples=16, iters=3, progress=False)
    ev = le.evaluate(dcgan, {"panda": PartEdit(pa, 0, 0)}, eyes, samples=2, calibration_samples=2, progress=False)
    r = ev.row("panda")
    assert math.isfinite(r["roir_mean"]) and 0 <= r["localization_mean"] <= 1
    assert r["rms_inside_mean"] == pytest.approx(0.1, rel=0.5)  # calibrated on other faces: near the target


@pytest.mark.parametrize("edits, match", [
    ({}, "expected edits as a non-empty dict"),
    ({"a/b": torch.zeros(100)}, "without '/'"),
    ({"a": "north"}, "expected an edit as Directions"),
])
def test_bad_edits(dcgan, eyes, edits, match):
    with pytest.raises((ValueError, TypeError), match=match):
        le.evaluate(dcgan, edits, eyes, samples=2, calibration_samples=2, progress=False)
