"""lowrankedit.resefa and resefa_from_factors: the real DCGAN against the official inv + eig route, the Woodbury
route against the dense one, Directions and errors."""
import numpy as np
import pytest
import torch

import lowrankedit
from lowrankedit import Gram, reference, resefa, resefa_from_factors


@pytest.fixture(scope="module")
def dcgan_gram(dcgan, mouth):
    """Float64 reference Grams of the mouth box on one DCGAN face (computed once, ~5 s)."""
    z = dcgan.sample_latents(1, seed=0)[0]
    return reference.jacobian_gram(dcgan, z, mouth)


def top_cos(u, v):
    u, v = np.asarray(u, dtype=np.float64).ravel(), np.asarray(v, dtype=np.float64).ravel()
    return abs(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v))


@pytest.mark.parametrize("tau", [1e-3, 0.0])
def test_dcgan_top_direction_matches_official(dcgan_gram, tau):
    """Same regularization on both sides (the official default is tau = 0, i.e. no regularization)."""
    dirs = resefa(dcgan_gram, tau=tau, k=5)
    w_off, V_off = reference.resefa_official(dcgan_gram.fg, dcgan_gram.bg, tau=tau)
    assert top_cos(dirs.vectors[0], V_off[:, 0]) >= 0.999
    assert np.allclose(dirs.scores.numpy(), w_off[:5], rtol=1e-6)


def test_dcgan_directions(dcgan_gram):
    dirs = resefa(dcgan_gram, k=10)
    D = dcgan_gram.dim
    assert isinstance(dirs, lowrankedit.Directions) and len(dirs) == 10
    assert dirs.vectors.shape == (10, *dcgan_gram.latent_shape)
    assert torch.allclose(dirs.vectors.flatten(1).norm(dim=1), torch.ones(10, dtype=dirs.vectors.dtype), atol=1e-12)
    assert (dirs.scores[:-1] >= dirs.scores[1:]).all()
    assert dirs.meta["method"] == "resefa" and dirs.meta["tau"] == 1e-3 and dirs.meta["route"] == "dense"
    # score = generalized Rayleigh quotient n^T fg n / n^T bg' n of each direction
    bgp = dcgan_gram.bg + 1e-3 * dcgan_gram.bg.trace() * torch.eye(D, dtype=torch.float64)
    n = dirs.vectors.flatten(1).double()
    rq = ((n @ dcgan_gram.fg) * n).sum(1) / ((n @ bgp) * n).sum(1)
    assert torch.allclose(rq, dirs.scores, rtol=1e-9)
    assert len(resefa(dcgan_gram)) == D


def test_save_load_roundtrip(dcgan_gram, tmp_path):
    dirs = resefa(dcgan_gram, k=3)
    dirs.save(tmp_path / "d.pt")
    back = lowrankedit.Directions.load(tmp_path / "d.pt")
    assert torch.equal(back.vectors, dirs.vectors) and back.meta["tau"] == dirs.meta["tau"]


def _factors(D, r, m, seed, latent_shape=None):
    g = torch.Generator().manual_seed(seed)
    Jf = torch.randn(r, D, generator=g, dtype=torch.float64)
    Jb = torch.randn(m, D, generator=g, dtype=torch.float64) * torch.logspace(0, -1.5, D, dtype=torch.float64)
    return Jf, Jb


@pytest.mark.parametrize("D,r,m", [(96, 8, 30), (60, 70, 20)])
def test_factors_woodbury_equals_dense(D, r, m):
    Jf, Jb = _factors(D, r, m, seed=D)
    k = 5
    a = resefa_from_factors(Jf, Jb, k=k, latent_shape=(D // 2, 2), meta={"region": "box"})
    b = resefa_from_factors(Jf, Jb, k=k, route="dense", latent_shape=(D // 2, 2))
    assert a.meta["route"] == "woodbury" and b.meta["route"] == "dense" and a.meta["region"] == "box"
    assert a.vectors.shape == (k, D // 2, 2)
    assert torch.allclose(a.scores, b.scores, rtol=1e-9)
    assert torch.allclose(a.vectors, b.vectors, atol=1e-8)
    # ... and the same as resefa on the Gram built from the factors
    c = resefa(Gram(Jf.T @ Jf / r, Jb.T @ Jb / m, r, m, (D // 2, 2)), k=k)
    assert torch.allclose(c.vectors, b.vectors, atol=1e-10) and torch.allclose(c.scores, b.scores, rtol=1e-10)


def test_factors_auto_route_and_normalization():
    Jf, Jb = _factors(40, 5, 60, seed=1)  # Jb not thin: auto -> dense
    assert resefa_from_factors(Jf, Jb, k=2).meta["route"] == "dense"
    x = resefa_from_factors(Jf, Jb[:10], k=2)
    y = resefa_from_factors(Jf, Jb[:10], k=2, n_fg=10.0, n_bg=10.0)
    assert x.meta["route"] == "woodbury"
    # the normalizations only rescale the eigenvalues: n_fg 5 -> 10 halves them
    assert torch.allclose(y.scores, x.scores / 2, rtol=1e-10) and torch.allclose(x.vectors, y.vectors, atol=1e-10)


def test_errors(dcgan_gram):
    with pytest.raises(ValueError, match="resefa_from_factors"):
        resefa(dcgan_gram, route="woodbury")
    with pytest.raises(ValueError, match="route"):
        resefa(dcgan_gram, route="fast")
    with pytest.raises(ValueError, match=r"k to be an int in \[1, 100\]"):
        resefa(dcgan_gram, k=0)
    with pytest.raises(TypeError, match="lowrankedit.Gram"):
        resefa(dcgan_gram.fg)
    Jf, Jb = _factors(30, 4, 6, seed=2)
    with pytest.raises(RuntimeError, match="not positive definite"):
        resefa(Gram(Jf.T @ Jf, Jb.T @ Jb, 4, 6), tau=0.0)
    with pytest.raises(RuntimeError, match="not positive definite"):
        resefa_from_factors(Jf, Jb, tau=0.0)
    with pytest.raises(ValueError, match="same D"):
        resefa_from_factors(Jf, Jb[:, :5])
    with pytest.raises(ValueError, match="latent_shape"):
        resefa_from_factors(Jf, Jb, latent_shape=(7,))


def test_topk_route_on_a_large_gram_matches_dense():
    from lowrankedit.testing import synthetic_gram_pair

    fg, bg = synthetic_gram_pair(576, fg_rows=64, bg_rows=300, seed=9)
    gram = lowrankedit.Gram(fg, bg, 1.0, 1.0)
    top = resefa(gram, k=10)  # auto: D >= 512 and k <= D / 16
    dense = resefa(gram, k=10, route="dense")
    assert top.meta["route"] == "topk" and dense.meta["route"] == "dense" and top.meta["topk"]["converged"]
    cos = (top.vectors * dense.vectors).sum(1).abs()
    assert bool((cos >= 0.9999).all()), cos
    assert torch.allclose(top.scores, dense.scores, rtol=1e-8)
