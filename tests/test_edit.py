"""lowrankedit.edit: per-latent strengths, chained edits, directions made orthogonal to others."""
import pytest
import torch

import lowrankedit as le

pytestmark = pytest.mark.usefixtures("one_thread")


def test_per_latent_strengths(dcgan):
    z, d = dcgan.sample_latents(2, seed=1), torch.eye(100)[7]
    out = le.edit(dcgan, z, d, torch.tensor([[0.0, 1.0], [2.0, -1.0]]))
    assert out.shape == (2, 2, 3, 64, 64)
    torch.testing.assert_close(out[1, 0], dcgan.synthesize(z[1:] + 2.0 * d)[0])
    torch.testing.assert_close(out[0, 1], dcgan.synthesize(z[:1] + d)[0])


def test_chained_edit_is_the_sum_of_moves(dcgan):
    z, d = dcgan.sample_latents(2, seed=2), torch.eye(100)[:2]
    out = le.edit(dcgan, z, le.Directions(d, torch.ones(2)), [[1.0, 0.0], [0.5, -2.0]])
    torch.testing.assert_close(out[:, 1], dcgan.synthesize(z + 0.5 * d[0] - 2.0 * d[1]))
    torch.testing.assert_close(out[:, 0], le.edit(dcgan, z, d[0], [1.0])[:, 0])


def test_orthogonal_to():
    g = torch.Generator().manual_seed(0)
    others = torch.randn(3, 100, generator=g, dtype=torch.float64)
    d = torch.randn(100, generator=g, dtype=torch.float64)
    o = le.orthogonalize(d, others)
    assert float(o.norm()) == pytest.approx(1.0, abs=1e-12)
    assert float((others @ o).abs().max()) < 1e-12
    # What is left is d's component outside the span, by least squares in float64.
    coef = torch.linalg.lstsq(others.T, d[:, None]).solution
    rest = d - (others.T @ coef)[:, 0]
    torch.testing.assert_close(o, rest / rest.norm())
    with pytest.raises(ValueError, match="lies in the span of the others"):
        le.orthogonalize(others[0] + others[1], others)


def test_edit_with_orthogonal_to(dcgan):
    z = dcgan.sample_latents(1, seed=3)
    d, other = torch.eye(100)[0] + torch.eye(100)[1], torch.eye(100)[1]
    out = le.edit(dcgan, z, d, [2.0], orthogonal_to=other[None])
    torch.testing.assert_close(out[:, 0], dcgan.synthesize(z + 2.0 * torch.eye(100)[0]))


@pytest.mark.parametrize("direction, alphas, match", [
    (torch.eye(100)[:2], [1.0, 2.0], r"expected alphas of shape \(k, 2\)"),
    (torch.eye(100)[0], torch.ones(3, 2), r"expected alphas of shape \(k,\) or \(2, k\)"),
    (torch.ones(5), [1.0], r"expected a direction of shape \(100,\), got \(5,\)"),
])
def test_bad_edit_input(dcgan, direction, alphas, match):
    with pytest.raises(ValueError, match=match):
        le.edit(dcgan, dcgan.sample_latents(2), direction, alphas)


def test_directions_of_several_need_chain_strengths(dcgan):
    with pytest.raises(ValueError, match=r"index it for one direction, or pass alphas of shape \(k, 2\)"):
        le.edit(dcgan, dcgan.sample_latents(1), le.Directions(torch.eye(100)[:2], torch.ones(2)), [1.0])
