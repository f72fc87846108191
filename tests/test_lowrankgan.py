"""lowrankgan: null-space projection on synthetic Grams with a known answer, the official route vs the NumPy
reference on the real DCGAN (mouth box), the default (IALM) route vs the official one, errors."""
import pytest
import torch

import lowrankedit as le
from lowrankedit import reference
from lowrankedit.ops import rpca


pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic_gram(D=12, seed=0, dead=(0, 1, 2), rows=50):
    """Background Jacobian independent of latent entries ``dead``: its null space contains them."""
    g = torch.Generator().manual_seed(seed)
    Jf = torch.randn(rows, 3, D, dtype=torch.float64, generator=g)[:, 0]
    Jf = Jf[:, :] @ torch.diag(torch.linspace(3, 1, D, dtype=torch.float64))
    Jb = torch.randn(rows, D, dtype=torch.float64, generator=g)
    Jb[:, list(dead)] = 0
    return le.Gram(Jf.T @ Jf / rows, Jb.T @ Jb / rows, rows, rows, (D,), {"method": "synthetic"})


def test_synthetic_null_space_projection():
    gram = synthetic_gram()
    dirs = le.lowrankgan(gram, lamb=1.0)
    meta = dirs.meta
    assert meta["method"] == "lowrankgan" and meta["rank_b"] == 9 and meta["null_dim"] == 3
    assert len(dirs) == meta["rank_f"] >= 1
    assert torch.allclose(dirs.vectors.norm(dim=1), torch.ones(len(dirs), dtype=torch.float64), atol=1e-12)
    # the projections live in span(e0, e1, e2), where the background Gram vanishes
    assert float(dirs.vectors[:, 3:].abs().max()) <= 1e-8
    assert float((dirs.vectors @ gram.bg @ dirs.vectors.T).abs().max()) <= 1e-8
    # each is the normalized projection of its principal direction
    P = meta["principal"]
    proj = P[:, :3] / P[:, :3].norm(dim=1, keepdim=True)
    assert torch.allclose(dirs.vectors[:, :3], proj, atol=1e-8)
    # scores are the singular values of L_f, best first
    assert bool((dirs.scores[:-1] >= dirs.scores[1:]).all()) and bool((dirs.scores > 0).all())


def test_relax_widens_the_null_space():
    gram = synthetic_gram()
    d0, d2 = le.lowrankgan(gram, lamb=1.0), le.lowrankgan(gram, lamb=1.0, relax=2)
    assert d2.meta["null_dim"] == d0.meta["null_dim"] + 2
    assert float(d2.vectors[:, 3:].abs().max()) > 1e-3  # no longer confined to the exact null space


def test_zero_low_rank_part_warns():
    # lamb ||sign(M_f)||_2 <= 12 lamb < 1: L_f = 0 is the optimum (dual certificate lamb sign(M_f)), no directions
    gram = synthetic_gram()
    with pytest.warns(RuntimeWarning, match=r"lowrankgan: the region's low-rank part L_f is 0 at lamb = 0.01"):
        dirs = le.lowrankgan(gram, lamb=0.01)
    assert len(dirs) == 0 and dirs.meta["rank_f"] == 0


def test_save_load_roundtrip(tmp_path):
    dirs = le.lowrankgan(synthetic_gram(), lamb=1.0)
    dirs.save(tmp_path / "d.pt")
    back = le.Directions.load(tmp_path / "d.pt")
    assert torch.equal(back.vectors, dirs.vectors) and back.meta["rank_f"] == dirs.meta["rank_f"]


def test_errors():
    gram = synthetic_gram()
    with pytest.raises(ValueError, match=r"lowrankgan: expected relax to be an int in \[0, 11\], got -1"):
        le.lowrankgan(gram, relax=-1)
    with pytest.raises(ValueError, match=r"lowrankgan: expected relax to be an int in \[0, 11\], got 12"):
        le.lowrankgan(gram, relax=12)
    with pytest.raises(ValueError, match=r"lowrankgan: expected lamb to be a finite number > 0, got 0"):
        le.lowrankgan(gram, lamb=0)
    with pytest.raises(ValueError, match=r"lowrankgan: expected method in"):
        le.lowrankgan(gram, method="svd")
    with pytest.raises(TypeError, match=r"lowrankgan: expected a lowrankedit.Gram, got Tensor"):
        le.lowrankgan(gram.fg)


# ---------------------------------------------------------------- the real DCGAN, mouth box
# ``reference.lowrankgan_official`` is the official code re-written plainly in NumPy (the official route of
# ``rpca`` repeats it iterate for iterate: test_rpca.py, and bench/bench_rpca.py on these very Grams).
@pytest.fixture(scope="module")
def dcgan_case(dcgan, mouth):
    z = dcgan.sample_latents(1, seed=0)[0]
    gram = reference.jacobian_gram(dcgan, z, mouth)
    return gram, reference.lowrankgan_official(gram), le.lowrankgan(gram, lamb=1 / 60)  # the official's lamb


def test_dcgan_region_directions_agree(dcgan_case):
    _, ref, ours = dcgan_case
    assert all(ours.meta["rpca"]["converged"]) and max(ref["iterations"]) < 10000
    assert ours.meta["rank_f"] == ref["rank_f"] >= 1
    assert ours.vectors.shape[1:] == (100,)
    # the region's principal (unprojected) direction is the same
    cos = float((ours.meta["principal"][0] @ ref["principal"][0]).abs())
    assert cos >= 0.99, f"|cos| of the principal directions = {cos:.4f}"


def test_dcgan_default_solver_is_certified_in_hundreds_of_iterations(dcgan_case):
    gram, ref, ours = dcgan_case
    rp = ours.meta["rpca"]
    assert max(rp["iterations"]) < 1500 < min(ref["iterations"])
    assert max(rp["primal_residual"]) <= 1e-7 and max(rp["dual_residual"]) <= 1e-7
    # the Krylov SVT changes the path, not the answer: an exact run (SVD every iteration) gives the same L
    M = torch.stack([gram.fg, gram.bg]).double()
    L, _, info = rpca(M, 1 / 60)
    L_x, _, info_x = rpca(M, 1 / 60, symmetric=False)
    assert bool(info_x["converged"].all())
    assert float((L - L_x).norm()) <= 1e-5 * float(M.norm())


def test_dcgan_background_optimum_is_zero_and_its_dominant_direction_is_dropped(dcgan_case):
    # The certified optimum of the background problem is L_b = 0 (rank 0: lamb ||sign(M_b)||_2 = 0.9987 < 1 makes
    # lamb sign(M_b) a dual certificate); the official primal-only rule stops at a rank-1 L_b. The official
    # k = max(1, rank_b) = 1 drops one direction either way: ours the dominant eigenvector of M_b (L_b's null-space
    # basis ordered by M_b), the official its L_b's top singular vector, which is nearly the same direction.
    gram, ref, ours = dcgan_case
    assert ours.meta["rank_b"] == 0 and ref["rank_b"] == 1
    assert float(ours.meta["rpca"]["dual_residual"][1]) <= 1e-7
    assert float(torch.linalg.matrix_norm(torch.sign(gram.bg.double()), 2)) / 60 < 1 and bool((gram.bg != 0).all())
    assert ours.meta["null_dim"] == 99
    top_b = torch.linalg.eigh(gram.bg.double())[1][:, -1]
    assert float((ours.vectors @ top_b).abs().max()) <= 1e-10  # the dropped direction
    _, _, Vh_ref = torch.linalg.svd(ref["L_b"])
    assert float((Vh_ref[0] @ top_b).abs()) >= 0.98


def test_dcgan_top_projected_direction_agrees_with_official(dcgan_case):
    _, ref, ours = dcgan_case
    cos = float((ours.vectors[0].double() @ ref["directions"][0]).abs())
    assert cos >= 0.99, f"|cos| of the top projected directions = {cos:.4f}"


def test_partial_method_passes_through():
    """method="partial" reaches lowrankedit.ops.rpca's partial-SVT solver and gives the default route's answer."""
    import test_rpca

    # PSD: the planted low-rank parts plus a sparse positive diagonal
    fg, bg = (test_rpca.planted(60, seed=s)[1] + torch.diag((torch.arange(60) % 9 == s).double() * 3) for s in (2, 3))
    gram = le.Gram(fg, bg, 100, 100, (60,), {"method": "synthetic"})
    dirs = le.lowrankgan(gram, lamb=0.15, method="partial")
    ref = le.lowrankgan(gram, lamb=0.15)
    meta = dirs.meta
    assert meta["params"]["rpca_method"] == "partial" and meta["rpca"]["method"] == "partial"
    assert (meta["rank_f"], meta["rank_b"], meta["null_dim"]) == (ref.meta["rank_f"], ref.meta["rank_b"],
                                                                   ref.meta["null_dim"])
    assert len(dirs) == len(ref) >= 1
    cos = (dirs.vectors @ ref.vectors.T).abs().diagonal()
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-5), cos


def _dense_directions(gram, lamb, relax, method="ialm"):
    """The dense route (full SVDs of both L's), forced: the reference of the thin route."""
    from lowrankedit.methods import lowrankgan as module

    saved = module._thin_directions
    module._thin_directions = lambda *args: None
    try:
        return le.lowrankgan(gram, lamb=lamb, relax=relax, method=method)
    finally:
        module._thin_directions = saved


@pytest.mark.parametrize("relax", [0, 1])
def test_thin_route_equals_the_dense_route_on_dcgan_grams(dcgan_case, relax):
    """The directions from thin factors (range finder on each L, the projection I - U_b U_b^T) equal the full-SVD
    route's: same ranks, same scores, the same vectors up to sign."""
    gram, _, _ = dcgan_case
    thin, dense = le.lowrankgan(gram, lamb=1 / 60, relax=relax), _dense_directions(gram, 1 / 60, relax)
    assert thin.meta["route"] == "thin" and dense.meta["route"] == "dense"
    for key in ("rank_f", "rank_b", "null_dim", "dropped"):
        assert thin.meta[key] == dense.meta[key], key
    assert len(thin) == len(dense) >= 1
    torch.testing.assert_close(thin.scores, dense.scores, rtol=1e-9, atol=1e-12)
    cos = (thin.vectors.double() @ dense.vectors.double().T).abs().diagonal()
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-9), cos


def test_thin_route_with_a_zero_background_part():
    """L_b = 0 (the whole background Gram is sparse): k = 1 drops the background Gram's top eigenvector, found
    without the full basis; equal to the dense route."""
    J = torch.randn(3, 60, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    gram = le.Gram(J.T @ J, torch.diag(torch.linspace(2, 1, 60, dtype=torch.float64)), 200, 200, (60,),
                   {"method": "synthetic"})
    thin, dense = le.lowrankgan(gram, lamb=0.1), _dense_directions(gram, 0.1, 0)
    assert thin.meta["rank_b"] == dense.meta["rank_b"] == 0 and thin.meta["route"] == "thin"
    assert len(thin) == len(dense) >= 1
    cos = (thin.vectors @ dense.vectors.T).abs().diagonal()
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-9), cos
    assert float(thin.vectors[:, 0].abs().max()) < 1e-9  # e_0 is the diagonal Gram's top eigenvector
