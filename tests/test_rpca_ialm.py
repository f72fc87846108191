"""rpca_ialm (Lin et al.'s inexact ALM, over-relaxed, balanced penalty, partial SVT): recovers planted rank-10 + 5%
sparse problems, equals the exact-SVT solvers (its own exact route and ops.rpca) to 1e-6 on planted problems and on
W+ Grams of a stylegan2, certifies with a stated gap; errors."""
import pytest
import torch

from lowrankedit import Region, jacobian_gram
from lowrankedit.models import stylegan2
from lowrankedit.ops import rpca
from lowrankedit.ops.rpca_ialm import rpca_ialm
from lowrankedit.testing import planted_rpca

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def _rel(a, b):
    return float((a.double().cpu() - b.double().cpu()).norm() / b.double().cpu().norm())


@pytest.fixture(scope="module", params=[(256, 0), (512, 1)], ids=["n256", "n512"])
def problem(request):
    n, seed = request.param
    M, L0, S0 = planted_rpca(n, rank=10, density=0.05, magnitude=0.05, seed=seed)
    return n, M, L0, S0


@pytest.mark.parametrize("device", DEVICES)
def test_recovers_the_planted_solution_and_certifies(problem, device):
    n, M, L0, S0 = problem
    L, S, info = rpca_ialm(M.to(device))
    assert info["converged"] and info["certified"], info
    assert info["primal_residual"] <= 1e-7 and info["dual_residual"] <= 1e-7
    assert info["rank"] == 10 and 0 < info["gap"] <= 1 and info["tail"] < info["threshold"]
    assert info["iterations"] < 60, info["iterations"]  # tens, not hundreds
    assert info["full_svt"] == 0 and info["method"] == "ialm_partial"
    assert _rel(L, L0) < 1e-6 and _rel(S, S0) < 1e-4
    assert L.dtype == M.dtype and L.device.type == device


def test_equals_the_exact_svt_solvers(problem):
    n, M, _, _ = problem
    L, S, info = rpca_ialm(M)
    Le, Se, info_e = rpca_ialm(M, exact_svt=True)
    assert info_e["full_svt"] == info_e["iterations"] and info_e["method"] == "ialm_exact"
    assert info["certified"] and info_e["certified"]
    # the same iteration, only the SVT route differs (its 1e-10 Ritz residuals can cost a few iterations)
    assert abs(info["iterations"] - info_e["iterations"]) <= 5
    assert _rel(L, Le) < 1e-6 and _rel(S, Se) < 1e-6
    Lr, Sr, info_r = rpca(M, tol=1e-9)  # the package's certified exact-SVT solver (another schedule)
    assert bool(info_r["converged"])
    assert _rel(L, Lr) < 1e-6 and _rel(S, Sr) < 1e-6


@pytest.fixture(scope="module")
def wplus_grams():
    """Region and background Grams in W+ of a random-weight stylegan2 (16 px, 6 ws of 32: n = 192), a centre box:
    Jacobian Grams with a decaying spectrum, where Lin et al.'s penalty schedule stalls."""
    G = stylegan2(16, w_dim=32, channel_base=256, channel_max=64, dtype=torch.float64)
    g = jacobian_gram(G, G.sample_latents(1, seed=1)[0], Region.box(4, 4, 8, 8, size=(16, 16)), progress=False)
    return {"fg": g.fg, "bg": g.bg}


@pytest.mark.parametrize("lamb", [1 / 40, 1 / 60], ids=["lamb40", "lamb60"])
@pytest.mark.parametrize("part", ["fg", "bg"])
def test_equals_the_exact_solver_on_wplus_grams(wplus_grams, part, lamb):
    # 2000-3000 iterations each (the default solver: 2200-6800); tol 1e-10 leaves both 1e-8 to 1e-7 from the optimum
    M = wplus_grams[part]
    L, S, info = rpca_ialm(M, lamb, tol=1e-10, max_iter=10000)
    assert info["converged"] and info["certified"], info
    assert info["full_svt"] == 0, info
    Lr, Sr, info_r = rpca(M, lamb, tol=1e-10)  # the package's default solver: exact SVT at the end, another schedule
    assert bool(info_r["converged"])
    assert int(info_r["rank"]) == info["rank"]
    assert _rel(L, Lr) < 1e-6 and _rel(S, Sr) < 1e-6


def _reference_ialm(M, max_iter=300, tol=1e-7, *, alpha=1.6, balance=True, mu_max_factor=1e5, rho=1.5):
    """The solver's iteration with a full float64 eigendecomposition per iteration, in plain torch on full matrices:
    the reference for its passes on upper tiles (same schedule and stopping test). Lin et al.'s inexact ALM,
    over-relaxed by ``alpha``; ``mu`` grows by ``rho`` up to ``mu_max_factor mu0``, then (``balance``) follows the
    residuals, deciding on the previous primal one."""
    M = ((M + M.T) / 2).double()
    n = M.shape[0]
    lamb = 1 / n ** 0.5
    fro = float(M.norm())
    norm2 = float(torch.linalg.eigvalsh(M).abs().max())
    Y = M / max(norm2, float(M.abs().max()) / lamb)
    mu = mu0 = 1.25 / norm2
    shrink = torch.nn.functional.softshrink
    L = torch.zeros_like(M)
    S = shrink(M + Y / mu, lamb / mu)
    X = M + Y / mu - alpha * S - (1 - alpha) * M
    balancing, primal_prev = False, float("inf")
    for it in range(1, max_iter + 1):
        w, U = torch.linalg.eigh(X)
        keep = w.abs() > 1 / mu
        L_new = (U[:, keep] * (w[keep].sign() * (w[keep].abs() - 1 / mu))) @ U[:, keep].T
        dual = mu * float((L_new - L).norm()) / n
        L = L_new
        balancing = balancing or (balance and mu >= mu_max_factor * mu0)
        if not balancing:
            mu_next = min(rho * mu, mu_max_factor * mu0)
        elif primal_prev > 10 * dual:
            mu_next = min(rho * mu, 1e10 * mu0)
        elif dual > 10 * primal_prev:
            mu_next = max(mu / rho, 1e-3 * mu0)
        else:
            mu_next = mu
        primal = float((M - L - S).norm()) / fro
        Y = mu * (X - L)
        if primal <= tol and dual <= tol:
            return L, S, it
        primal_prev, mu = primal, mu_next
        S = shrink(M + Y / mu - L, lamb / mu)
        X = M + Y / mu - alpha * S - (1 - alpha) * (M - L)
    return L, S, max_iter


LIN = dict(alpha=1.0, balance=False, mu_max_factor=1e7)  # Lin et al.'s schedule exactly


@pytest.mark.parametrize("schedule", [{}, LIN], ids=["default", "lin"])
@pytest.mark.parametrize("n,rank", [(23, 2), (262, 10)])
def test_tiled_passes_equal_the_reference_iteration_on_full_matrices(n, rank, schedule):
    # 23: one tile, narrower than a vector register block; 262 = 128 + 128 + 6: edge tiles of 6, row counts not a
    # multiple of the kernel's 4-, 6- and 12-row blocks
    M, _, _ = planted_rpca(n, rank=rank, density=0.05, magnitude=0.05, seed=3)
    L_ref, S_ref, it_ref = _reference_ialm(M, **schedule)
    assert it_ref < 300
    for exact in (True, False):
        L, S, info = rpca_ialm(M, exact_svt=exact, **schedule)
        assert info["certified"], info
        assert torch.equal(S, S.T)  # the lower triangle mirrored from the upper tiles
        tol = 1e-10 if exact else 1e-6  # relative to ||M||_F (S_ref may be 0 for the small dense ones)
        assert float((L - L_ref).norm()) <= tol * float(M.norm()), exact
        assert float((S - S_ref).norm()) <= tol * float(M.norm()), exact
        if exact:
            assert info["iterations"] == it_ref


def test_gap_matches_the_exact_spectrum():
    M, _, _ = planted_rpca(300, seed=4)
    _, _, info = rpca_ialm(M, max_iter=5)  # stop early: the last SVT argument still has a real tail
    _, _, exact = rpca_ialm(M, max_iter=5, exact_svt=True)
    assert info["rank"] == exact["rank"]
    assert info["tail"] == pytest.approx(exact["tail"], rel=1e-6)
    assert info["gap"] == pytest.approx(exact["gap"], rel=1e-5, abs=1e-9)
    assert not info["converged"] and not info["certified"]


def test_float32_input_and_lamb():
    M, L0, _ = planted_rpca(200, seed=2)
    L, S, info = rpca_ialm(M.float(), lamb=1 / 200 ** 0.5)
    assert L.dtype == torch.float32 and info["certified"] and info["lamb"] == pytest.approx(1 / 200 ** 0.5)
    assert _rel(L, L0) < 1e-5


def test_zero_matrix():
    L, S, info = rpca_ialm(torch.zeros(5, 5, dtype=torch.float64))
    assert info["certified"] and not L.any() and not S.any()


@pytest.mark.parametrize(
    "M,kwargs,exc,match",
    [
        (torch.ones(4, 5), {}, ValueError, r"expected M of shape \(n, n\)"),
        (torch.ones(4, 4, dtype=torch.int32), {}, TypeError, "float32 or float64"),
        (torch.tensor([[1.0, 2.0], [0.0, 1.0]]), {}, ValueError, "expected a symmetric M"),
        (torch.full((3, 3), float("inf")), {}, ValueError, "finite"),
        (torch.eye(3), {"lamb": -1.0}, ValueError, "expected lamb to be a finite number > 0"),
        (torch.eye(3), {"mu0": 0.0}, ValueError, "expected mu0 to be a finite number > 0"),
        (torch.eye(3), {"rho": 0.5}, ValueError, "expected rho >= 1"),
        (torch.eye(3), {"max_iter": 0}, ValueError, "expected max_iter >= 1, got 0"),
        (torch.eye(3), {"svt_tol": 0.0}, ValueError, "expected svt_tol > 0"),
        (torch.eye(3), {"alpha": 2.0}, ValueError, r"expected alpha in \(0, 2\), got 2"),
        (torch.eye(3), {"balance": 1}, TypeError, "expected balance to be a bool"),
    ],
)
def test_bad_input(M, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        rpca_ialm(M, **kwargs)
