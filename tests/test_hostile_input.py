"""Hostile input at the public boundaries outside the ops: NaN/Inf, bools as ints, non-integral sizes, broken Grams,
directions for another generator, solvers that did not converge. Each case must raise (or warn) with a message
naming the argument; docs/hostile_input.md lists them per function."""
import math
import warnings

import pytest
import torch

import lowrankedit as le
from lowrankedit import Directions, Gram, Region
from lowrankedit.segmenters import PandaParts, StaticRegion

NAN, INF = float("nan"), float("inf")


def _toy(fn=None, name="toy"):
    """A small generator: z in R^4 -> (n, 3, 8, 8) images."""
    W = torch.randn(4, 3 * 8 * 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fn = fn or (lambda z: torch.tanh(z.double() @ W).reshape(-1, 3, 8, 8))
    return le.models.wrap(fn, (4,), name=name)


def _gram(D=4):
    g = torch.Generator().manual_seed(3)
    Jf, Jb = torch.randn(2, 30, D, generator=g, dtype=torch.float64)
    return Gram(Jf.T @ Jf / 30, Jb.T @ Jb / 30, 30.0, 34.0)


def _box():
    return Region.box(2, 2, 4, 4, size=(8, 8))


def _with(t, i, v):
    t = t.clone()
    t.view(-1)[i] = v
    return t


G = _toy()
Z = G.sample_latents(2, seed=1)
D4 = Directions(torch.eye(4, dtype=torch.float64)[:1], [1.0], {"generator": le.models.fingerprint(G)})
IMG = torch.zeros(2, 3, 8, 8)
MASK = _box().mask(8, 8)

# (label, call, exception, message fragment naming the argument)
NAN_CASES = [
    ("Directions vectors", lambda: Directions(_with(torch.eye(3), 4, NAN), [1, 1, 1]), ValueError,
     "Directions: expected vectors to be finite, got 1 NaN"),
    ("Directions scores Inf", lambda: Directions(torch.eye(2), [INF, 1.0]), ValueError, "expected finite scores"),
    ("Gram fg", lambda: Gram(_with(_gram().fg, 0, NAN), _gram().bg, 1.0, 1.0), ValueError,
     "Gram: expected fg to be finite"),
    ("Gram bg", lambda: Gram(_gram().fg, _with(_gram().bg, 5, INF), 1.0, 1.0), ValueError,
     "Gram: expected bg to be finite, got 1 Inf"),
    ("Gram n_fg", lambda: Gram(_gram().fg, _gram().bg, NAN, 1.0), ValueError, "Gram: expected n_fg to be a finite"),
    ("Gram n_bg", lambda: Gram(_gram().fg, _gram().bg, 1.0, INF), ValueError, "Gram: expected n_bg to be a finite"),
    ("edit latents", lambda: le.edit(G, _with(Z, 0, NAN), D4.vectors[0], [1.0]), ValueError,
     "edit: latents contains NaN or Inf"),
    ("edit direction", lambda: le.edit(G, Z, torch.tensor([NAN, 0, 0, 0]), [1.0]), ValueError,
     "edit: expected direction to be finite"),
    ("edit alphas", lambda: le.edit(G, Z, D4.vectors[0], [1.0, NAN]), ValueError,
     r"edit: expected alphas\[1\] to be a finite number"),
    ("edit alphas tensor", lambda: le.edit(G, Z, D4.vectors[0], torch.tensor([INF])), ValueError,
     "edit: expected alphas to be finite"),
    ("jacobian_gram latent", lambda: le.jacobian_gram(G, _with(Z[0], 1, NAN), _box(), progress=False), ValueError,
     "jacobian_gram: expected latent to be finite"),
    ("jacobian_gram NaN images", lambda: le.jacobian_gram(_toy(lambda z: torch.full((z.shape[0], 3, 8, 8), NAN)
                                                               + 0 * z.sum()), Z[0], _box(), progress=False),
     ValueError, r"jacobian_gram: expected the images G.synthesize\(latent\) returned to be finite"),
    ("jacobian_gram Inf derivatives", lambda: le.jacobian_gram(
        _toy(lambda z: z.abs().sqrt().sum(1).view(-1, 1, 1, 1).expand(-1, 3, 8, 8)), torch.zeros(4), _box(),
        progress=False), ValueError, "jacobian_gram: expected G's derivatives at latent 0 to be finite"),
    ("lowrankgan lamb", lambda: le.lowrankgan(_gram(), lamb=NAN), ValueError, "lowrankgan: expected lamb"),
    ("lowrankgan tol", lambda: le.lowrankgan(_gram(), tol=INF), ValueError, "lowrankgan: expected tol"),
    ("resefa tau", lambda: le.resefa(_gram(), tau=NAN), ValueError, "resefa: expected tau"),
    ("resefa_from_factors Jf", lambda: le.resefa_from_factors(_with(torch.randn(3, 4), 0, NAN), torch.randn(9, 4)),
     ValueError, "resefa_from_factors: expected Jf to be finite"),
    ("resefa_from_factors Jb", lambda: le.resefa_from_factors(torch.randn(3, 4), _with(torch.randn(9, 4), 2, INF)),
     ValueError, "resefa_from_factors: expected Jb to be finite"),
    ("resefa_from_factors n_fg", lambda: le.resefa_from_factors(torch.randn(3, 4), torch.randn(9, 4), n_fg=NAN),
     ValueError, "resefa_from_factors: expected n_fg"),
    ("roir original", lambda: le.metrics.roir(_with(IMG, 0, NAN), IMG, MASK), ValueError,
     "roir: expected original to be finite"),
    ("masked_mse edited", lambda: le.metrics.masked_mse(IMG, _with(IMG, 3, INF), MASK), ValueError,
     "masked_mse: expected edited to be finite"),
    ("masked_mse mask", lambda: le.metrics.masked_mse(IMG, IMG, _with(MASK, 0, NAN)), ValueError,
     "masked_mse: expected mask to be finite"),
    ("localization_score original", lambda: le.localization_score(_with(IMG, 0, NAN), IMG, MASK), ValueError,
     "localization_score: expected original to be finite"),
    ("Region.from_mask", lambda: Region.from_mask(_with(MASK, 0, NAN)), ValueError,
     "Region.from_mask: expected mask to be finite"),
    ("PandaParts threshold", lambda: PandaParts(le.PartsAppearances(torch.randn(4, 2), torch.rand(4, 2), "l",
                                                                    (4, 2, 2)), 0, threshold=NAN), ValueError,
     "PandaParts: expected threshold"),
]


@pytest.mark.parametrize("label, call, exc, match", NAN_CASES, ids=[c[0] for c in NAN_CASES])
def test_nan_and_inf_name_the_argument(label, call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_nan_at_method_entries(dcgan):
    seg = StaticRegion(le.models.dcgan_mouth_region())
    for kw, name in [({"lr": NAN}, "lr"), ({"temperature": INF}, "temperature"), ({"corr_weight": NAN}, "corr_weight"),
                     ({"eval_alphas": [1.0, NAN]}, "eval_alphas")]:
        with pytest.raises(ValueError, match=f"lelsd: expected {name}"):
            le.lelsd(dcgan, seg, steps=1, progress=False, **kw)
    for kw, name in [({"seed": 1.5}, "seed"), ({"progress": 1}, "progress")]:
        with pytest.raises(ValueError, match=f"lelsd: expected {name}"):
            le.lelsd(dcgan, seg, steps=1, **kw)
    for kw, name in [({"lr": NAN}, "lr"), ({"lr": True}, "lr"), ({"seed": 1.5}, "seed")]:
        with pytest.raises(ValueError, match=f"panda: expected {name} to be"):
            le.panda(dcgan, "block1", progress=False, **kw)
    with pytest.raises(ValueError, match="DCGAN.sample_latents: expected seed to be an int"):
        dcgan.sample_latents(2, seed=1.5)
    with pytest.raises(ValueError, match="panda: features contain NaN or Inf"):
        le.panda(dcgan, "block1", features=torch.full((2, 8, 2, 2), NAN), ranks=(2, 2), progress=False)
    pa = le.PartsAppearances(torch.randn(512, 2), torch.rand(16, 2), "block1", (512, 4, 4),
                             {"generator": le.models.fingerprint(dcgan)}, generator=dcgan)
    z = dcgan.sample_latents(1)
    with pytest.raises(ValueError, match="PartsAppearances.edit: expected alpha to be a finite number"):
        pa.edit(z, 0, 0, NAN)
    with pytest.raises(ValueError, match="PartsAppearances.edit: expected appearance to be finite"):
        pa.edit(z, 0, torch.full((512,), NAN), 1.0)
    bad = le.PartsAppearances(_with(torch.randn(512, 2), 0, NAN), torch.rand(16, 2), "block1", (512, 4, 4),
                              generator=dcgan)
    with pytest.raises(ValueError, match=r"PartsAppearances.edit: expected appearances\[:, 0\] to be finite"):
        bad.edit(z, 0, 0, 1.0)


BOOL_AND_SIZE_CASES = [
    ("lowrankgan max_iter=True", lambda: le.lowrankgan(_gram(), max_iter=True), "expected max_iter to be an int"),
    ("lowrankgan relax=False", lambda: le.lowrankgan(_gram(), relax=False), "expected relax to be an int"),
    ("lowrankgan lamb=True", lambda: le.lowrankgan(_gram(), lamb=True), "expected lamb to be a finite number"),
    ("resefa k=True", lambda: le.resefa(_gram(), k=True), "resefa: expected k to be an int"),
    ("resefa k=2.0", lambda: le.resefa(_gram(), k=2.0), "resefa: expected k to be an int"),
    ("jacobian_gram size=64.9", lambda: le.jacobian_gram(G, Z[0], _box(), size=64.9, progress=False),
     "jacobian_gram: expected size to be a shape"),
    ("jacobian_gram size=(8, 8.5)", lambda: le.jacobian_gram(G, Z[0], _box(), size=(8, 8.5), progress=False),
     "jacobian_gram: expected size to be a tuple of ints"),
    ("jacobian_gram chunk=True", lambda: le.jacobian_gram(G, Z[0], _box(), chunk=True, progress=False),
     "jacobian_gram: expected chunk to be an int"),
    ("jacobian_gram fuse_channels=1", lambda: le.jacobian_gram(G, Z[0], _box(), fuse_channels=1, progress=False),
     "jacobian_gram: expected fuse_channels to be a bool"),
    ("Region.box top=True", lambda: Region.box(True, 0, 2, 2, size=(8, 8)), "Region.box: expected top to be an int"),
    ("Region.box height=2.5", lambda: Region.box(0, 0, 2.5, 2, size=(8, 8)), "Region.box: expected height"),
    ("Region.box size=(8.9, 8)", lambda: Region.box(0, 0, 2, 2, size=(8.9, 8)), "Region.box: expected size"),
    ("Region.mask h=64.9", lambda: _box().mask(64.9, 64), "Region.mask: expected h to be an int"),
    ("sample_latents n=2.5", lambda: G.sample_latents(2.5), "sample_latents: expected n to be an int"),
    ("sample_latents n=True", lambda: G.sample_latents(True), "sample_latents: expected n to be an int"),
    ("sample_latents seed=1.5", lambda: G.sample_latents(2, seed=1.5), "sample_latents: expected seed to be an int"),
    ("jacobian_gram mode='x'", lambda: le.jacobian_gram(G, Z[0], _box(), mode="x", progress=False),
     "jacobian_gram: expected mode in"),
    ("jacobian_gram max_memory=nan", lambda: le.jacobian_gram(G, Z[0], _box(), max_memory=NAN, progress=False),
     "jacobian_gram: expected max_memory to be a finite number > 0"),
    ("PandaParts size=(8.5, 8)", lambda: PandaParts(le.PartsAppearances(torch.randn(4, 2), torch.rand(4, 2), "l",
                                                                        (4, 2, 2)), 0, size=(8.5, 8)),
     "PandaParts: expected size"),
    ("wrap latent_shape=(4.5,)", lambda: le.models.wrap(lambda z: z, (4.5,)), "wrap: expected latent_shape"),
    ("edit force=1", lambda: le.edit(G, Z, D4, [1.0], force=1), "edit: expected force to be a bool"),
    ("Directions normalize=1", lambda: Directions(torch.eye(2), [1, 1], normalize=1),
     "Directions: expected normalize to be a bool"),
    ("PandaParts part_index=1.5", lambda: PandaParts(le.PartsAppearances(torch.randn(4, 2), torch.rand(4, 2), "l",
                                                                         (4, 2, 2)), 1.5),
     "PandaParts: expected part_index"),
    ("Gram latent_shape=(2.0, 2)", lambda: Gram(_gram().fg, _gram().bg, 1.0, 1.0, (2.0, 2)),
     "Gram: expected latent_shape"),
]


@pytest.mark.parametrize("label, call, match", BOOL_AND_SIZE_CASES, ids=[c[0] for c in BOOL_AND_SIZE_CASES])
def test_bools_and_non_integral_sizes_refused(label, call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call()


def test_rpca_bool_max_iter_through_lowrankgan_is_not_one_iteration():
    """A bool is refused before it reaches the solver (it used to run one iteration)."""
    with pytest.raises(le.ArgumentError, match=r"got True \(bool\)"):
        le.lowrankgan(_gram(), max_iter=True)


def test_broken_grams_refused():
    g = _gram()
    A = g.fg.clone()
    A[0, 1] += 0.1
    with pytest.raises(ValueError, match="Gram: expected fg to be symmetric"):
        Gram(A, g.bg, 1.0, 1.0)
    with pytest.raises(ValueError, match="Gram: expected bg to be positive semi-definite"):
        Gram(g.fg, -g.bg, 1.0, 1.0)
    with pytest.raises(ValueError, match="Gram: expected n_fg to be a finite number > 0, got -3"):
        Gram(g.fg, g.bg, -3.0, 1.0)
    with pytest.raises(ValueError, match="Gram: expected n_bg to be a finite number > 0, got 0"):
        Gram(g.fg, g.bg, 1.0, 0)
    with pytest.raises(ValueError, match="Gram: fg is all zero"):
        Gram(torch.zeros(4, 4), g.bg, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"Gram: expected latent_shape with prod = D = 4, got \(5,\)"):
        Gram(g.fg, g.bg, 1.0, 1.0, (5,))
    # symmetric only to rounding (as a GEMM makes it) is accepted
    J = torch.randn(50, 4)
    Gram(J.T @ J, g.bg.float(), 1.0, 1.0)


def test_jacobian_gram_of_a_region_the_image_ignores():
    """A generator whose region pixels do not move gives an all-zero fg: refused with the cause."""
    def fn(z):
        x = torch.zeros(z.shape[0], 3, 8, 8, dtype=z.dtype) + 0 * z.sum()
        x[:, :, 6:, 6:] = z[:, :1, None, None]  # only the corner moves; the box (2..5) does not
        return x

    with pytest.raises(ValueError, match="fg is all zero"):
        le.jacobian_gram(_toy(fn), Z[0], _box(), progress=False)


# ------------------------------------------------------------------------------------------------ provenance


def test_directions_for_another_generator_refused(tmp_path):
    G2 = _toy(name="other")
    G3 = _toy(name="toy")
    G3.latent_space = "w"
    d = Directions(torch.eye(4, dtype=torch.float64)[:1], [1.0],
                   {"generator": le.models.fingerprint(G), "latent_space": "z"})
    d.save(tmp_path / "d.lre")
    with pytest.raises(ValueError, match=r"generator fingerprint differ \(recorded: generator fingerprint "
                                         r"'toy:.*; this generator: generator fingerprint 'other:.*force=True"):
        Directions.load(tmp_path / "d.lre", generator=G2)
    with pytest.raises(ValueError, match="edit: this was made for another generator: generator fingerprint"):
        le.edit(G2, Z, d, [1.0])
    with pytest.raises(ValueError, match="latent space differ .*latent space 'z'.*latent space 'w'"):
        le.edit(G3, Z, d, [1.0])
    G5 = le.models.wrap(lambda z: torch.zeros(z.shape[0], 3, 8, 8), (5,), name="toy")
    with pytest.raises(ValueError, match=r"latent shape \(4,\).*latent shape \(5,\)"):
        Directions.load(tmp_path / "d.lre", generator=G5)
    # force=True uses it anyway; the right generator needs no force
    assert Directions.load(tmp_path / "d.lre", generator=G2, force=True).meta["latent_space"] == "z"
    assert le.edit(G2, Z, d, [0.0, 1.0], force=True).shape == (2, 2, 3, 8, 8)
    assert le.edit(G, Z, Directions.load(tmp_path / "d.lre", generator=G), [1.0]).shape == (2, 1, 3, 8, 8)


def test_dcgan_directions_carry_their_provenance(dcgan, mouth, tmp_path):
    """Directions found on the DCGAN record its fingerprint; the same file is refused for a changed DCGAN."""
    gram = le.jacobian_gram(dcgan, dcgan.sample_latents(1)[0], mouth, progress=False)
    assert gram.meta["generator"] == le.models.fingerprint(dcgan) and gram.meta["latent_shape"] == [100]
    d = le.resefa(gram, k=2)
    d.save(tmp_path / "r.lre")
    back = Directions.load(tmp_path / "r.lre", generator=dcgan)
    assert back.meta["generator"] == le.models.fingerprint(dcgan)
    other = le.models.dcgan_digiface()
    with torch.no_grad():
        other.main[0].weight.mul_(1.01)
    with pytest.raises(ValueError, match="generator fingerprint differ"):
        le.edit(other, dcgan.sample_latents(1), back[0:1], [1.0])


# ------------------------------------------------------------------------------------------------ solvers


def test_lowrankgan_warns_when_rpca_did_not_converge():
    g = _gram(D=12)
    with pytest.warns(RuntimeWarning, match=r"lowrankgan: robust PCA of the .*Gram did not converge to "
                                            r"tol=1e-07 within max_iter=2 .*raise max_iter"):
        d = le.lowrankgan(g, max_iter=2)
    assert d.meta["converged"] is False and "did not converge" in d.meta["warnings"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ok = le.lowrankgan(g, lamb=0.5)
    assert ok.meta["converged"] is True and ok.meta["warnings"] == []
    assert math.isfinite(float(ok.scores.sum()))
