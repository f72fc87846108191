import os

import pytest
import torch

import lowrankedit as le
from lowrankedit import Directions, metrics


def _dirs(k=3, shape=(100,)):
    v = torch.randn(k, *shape, dtype=torch.float64)
    return Directions(v, torch.arange(k, 0, -1).double(), {"method": "test"}, normalize=True)


def test_unit_norm_and_indexing():
    d = _dirs()
    assert len(d) == 3
    torch.testing.assert_close(d.vectors.norm(dim=1), torch.ones(3, dtype=torch.float64))
    assert d[0].shape == (100,)
    assert len(d[1:]) == 2 and d[1:].scores.tolist() == [2.0, 1.0]


def test_rejects_non_unit():
    with pytest.raises(ValueError, match="expected unit-norm vectors"):
        Directions(torch.ones(2, 4), torch.ones(2))
    with pytest.raises(ValueError, match=r"expected scores of shape \(2,\), got \(3,\)"):
        Directions(torch.eye(2), torch.ones(3))


def test_save_load_roundtrip(tmp_path):
    d = _dirs(shape=(2, 5))
    p = tmp_path / "sub" / "d.pt"
    d.save(p)
    e = Directions.load(p)
    assert torch.equal(e.vectors, d.vectors) and torch.equal(e.scores, d.scores) and e.meta == d.meta
    assert os.listdir(p.parent) == ["d.pt"]  # no temp file left behind


def test_save_failure_leaves_no_file(tmp_path):
    d = _dirs()
    d.meta["unpicklable"] = lambda: None
    p = tmp_path / "d.pt"
    with pytest.raises(Exception):
        d.save(p)
    assert os.listdir(tmp_path) == []


def test_edit_moves_image(dcgan):
    z = dcgan.sample_latents(2, seed=4)
    d = _dirs(1)
    out = le.edit(dcgan, z, d.vectors[0].float(), [0.0, 3.0])
    assert out.shape == (2, 2, 3, 64, 64)
    torch.testing.assert_close(out[:, 0], dcgan.synthesize(z))
    assert (out[:, 1] - out[:, 0]).abs().mean() > 1e-3
    with pytest.raises(ValueError, match=r"expected a direction of shape \(100,\), got \(5,\)"):
        le.edit(dcgan, z, torch.ones(5), [1.0])


def test_metrics_by_hand():
    a = torch.zeros(1, 3, 4, 4)
    b = a.clone()
    b[..., :2, :] = 1.0  # change only the top half
    top = torch.zeros(4, 4)
    top[:2] = 1
    inside, outside = metrics.masked_mse(a, b, top)
    assert inside.item() == 1.0 and outside.item() == 0.0
    assert metrics.roir(a, b, top).item() == 0.0
    assert metrics.roir(a, b, 1 - top).item() > 1e6
    with pytest.raises(ValueError, match="no pixels inside or none outside"):
        metrics.masked_mse(a, b, torch.zeros(4, 4))
