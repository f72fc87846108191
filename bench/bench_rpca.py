"""Robust PCA: ours (default IALM, and the official iteration) vs the official LowRankGAN iteration in NumPy
(a full SVD per iteration), on the real DCGAN's mouth-region Grams and on synthetic low-rank + sparse Grams.

Run as a script (checks agreement first, prints and writes bench/results/rpca.md):
    /work/main/.venv/bin/python bench/bench_rpca.py [--quick] [--ref-cap-2048 N]
or with pytest-benchmark:
    /work/main/.venv/bin/python -m pytest bench/bench_rpca.py --benchmark-only
"""
import os

# Single-threaded BLAS/LAPACK for both sides (set before NumPy/torch load): the benchmark machine is shared, and
# multi-threaded LAPACK on 100x100 matrices under load is 10-20x slower than one thread.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

import lowrankedit as le  # noqa: E402
from lowrankedit import reference  # noqa: E402
from lowrankedit.ops import rpca  # noqa: E402


def planted(n, rank, frac=0.05, seed=0):
    """Symmetric PSD rank-``rank`` matrix plus a symmetric ``frac``-sparse corruption (a synthetic Gram)."""
    g = torch.Generator().manual_seed(seed)
    U = torch.randn(n, rank, dtype=torch.float64, generator=g)
    L0 = U @ U.T / rank
    mask = torch.triu(torch.rand(n, n, generator=g) < frac)
    mask = mask | mask.T
    vals = (torch.rand(n, n, generator=g, dtype=torch.float64) * 2 - 1) * 5
    vals = torch.triu(vals) + torch.triu(vals, 1).T
    return L0 + torch.where(mask, vals, torch.zeros((), dtype=torch.float64)), L0


def dcgan_gram(seed=0):
    G = le.models.dcgan_digiface()
    z = G.sample_latents(1, seed=seed)[0]
    return reference.jacobian_gram(G, z, le.models.dcgan_mouth_region())


def timed(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, times


def rel(a, b):
    return float((a - b).norm() / b.norm())


# ---------------------------------------------------------------- pytest-benchmark entry points
@pytest.fixture(scope="module")
def gram():
    return dcgan_gram()


@pytest.mark.parametrize("method", ["ialm", "official"])
def test_bench_dcgan_ours(benchmark, gram, method):
    M = torch.stack([gram.fg, gram.bg])
    benchmark.pedantic(lambda: rpca(M, 1 / 60, method=method), rounds=3 if method == "ialm" else 1, iterations=1)


def test_bench_dcgan_numpy_reference(benchmark, gram):
    benchmark.pedantic(lambda: [reference.rpca_official(m, 1 / 60) for m in (gram.fg, gram.bg)], rounds=1,
                       iterations=1)


@pytest.mark.parametrize("n", [512])
def test_bench_synthetic_ours(benchmark, n):
    M, _ = planted(n, rank=10)
    benchmark.pedantic(lambda: rpca(M), rounds=3, iterations=1)


# ---------------------------------------------------------------- the script
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="timing repeats of our runs (the median is reported)")
    ap.add_argument("--ref-cap-2048", type=int, default=3,
                    help="iteration cap of the NumPy reference run at n=2048")
    ap.add_argument("--quick", action="store_true", help="skip n=2048")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "rpca.md"))
    args = ap.parse_args()
    rows = []
    header = ("| problem | solver | iterations | time (s) | speed-up vs NumPy official |\n"
              "|---|---|---|---|---|")

    # ---- DCGAN mouth-region Grams (n = 100), both in one batched call
    gram = dcgan_gram()
    (ref_dirs, ref_t) = timed(lambda: reference.lowrankgan_official(gram), 1)
    ref_iters = list(ref_dirs["iterations"])
    (off, off_t) = timed(lambda: le.lowrankgan(gram, method="official"), 1)
    (ours, ial_t) = timed(lambda: le.lowrankgan(gram), args.repeat)
    # agreement: the official route == the NumPy reference iterate for iterate (same counts, same directions)
    assert off.meta["rpca"]["iterations"] == ref_iters, (off.meta["rpca"]["iterations"], ref_iters)
    assert float((off.vectors @ ref_dirs["directions"].T).diagonal().abs().min()) > 1 - 1e-8
    assert all(ours.meta["rpca"]["converged"])
    cos = float((ours.vectors[0] @ ref_dirs["directions"][0]).abs())
    cos_p = float((ours.meta["principal"][0] @ ref_dirs["principal"][0]).abs())
    print(f"DCGAN: ranks ours (f, b) = {ours.meta['rank_f']}, {ours.meta['rank_b']}; reference "
          f"{ref_dirs['rank_f']}, {ref_dirs['rank_b']}; |cos| principal {cos_p:.5f}, projected {cos:.5f}")
    ial_iters = ours.meta["rpca"]["iterations"]
    # L = 0 is optimal iff some Y with ||Y||_2 <= 1 has Y = lamb sign(M) on M's support: lamb ||sign(M)||_2 <= 1 suffices
    cert = float(torch.linalg.matrix_norm(torch.sign(gram.bg.double()), 2)) / 60
    tr = ref_t[0]
    rows.append(f"| DCGAN mouth fg+bg (n=100), lowrankgan() | NumPy official (full SVD/iter) | {ref_iters[0]} + {ref_iters[1]} | "
                f"{tr:.2f} | 1x |")
    rows.append(f"| DCGAN mouth fg+bg (n=100), lowrankgan() | ours official (eigh + fused step, C++ loop, batched) | "
                f"{' + '.join(map(str, off.meta['rpca']['iterations']))} | {off_t[0]:.2f} | {tr / off_t[0]:.1f}x |")
    med = statistics.median(ial_t)
    rows.append(f"| DCGAN mouth fg+bg (n=100), lowrankgan() | **ours default (IALM: over-relaxed ADMM, Krylov SVT, certified; batched)** | "
                f"{' + '.join(map(str, ial_iters))} | {med:.3f} (min {min(ial_t):.3f}) | "
                f"**{tr / med:.0f}x** |")

    # ---- synthetic low-rank + sparse Grams. The official fixed mu = n^2 / (4 ||M||_1) (induced norm) grows with n:
    # the SVT threshold 1/mu is then tiny, L + S = M holds after a few iterations and the primal-only rule stops at
    # a point that is not a solution. So besides total time we give the time per iteration (full SVD vs ours).
    sizes = [512] if args.quick else [512, 2048]
    for n in sizes:
        Mn, L0 = planted(n, rank=10, seed=1)
        lamb = 1 / n ** 0.5
        cap = 10000 if n <= 512 else args.ref_cap_2048
        t0 = time.perf_counter()
        Lr, _, it_r = reference.rpca_official(Mn, lamb, max_iter=cap)
        t_ref = time.perf_counter() - t0
        rep = args.repeat if n <= 512 else 1
        (o, o_t) = timed(lambda: rpca(Mn, lamb), rep)
        assert bool(o[2]["converged"]), o[2]
        err, err_ref = rel(o[0], L0), rel(Lr, L0)
        print(f"n={n}: IALM rel. error to the planted L0 = {err:.2e}; official (NumPy) {err_ref:.2e} after {it_r} "
              f"iterations")
        assert err < 1e-3
        med = statistics.median(o_t)
        it_o = int(o[2]["iterations"])
        per_ref, per_o = t_ref / it_r, med / it_o
        prob = f"synthetic n={n}, rank 10 + 5% sparse, lamb 1/sqrt(n)"
        rows.append(f"| {prob} | NumPy official (full SVD/iter) | {it_r} (stops; rel. error to L0 {err_ref:.2f}) | "
                    f"{t_ref:.2f} ({per_ref * 1e3:.0f} ms/iter) | 1x total, 1x per iteration |")
        rows.append(f"| {prob} | **ours default (IALM, certified)** | {it_o} (rel. error to L0 {err:.1e}) | "
                    f"{med:.2f} ({per_o * 1e3:.0f} ms/iter; min {min(o_t):.2f}) | {t_ref / med:.2f}x total, "
                    f"**{per_ref / per_o:.1f}x per iteration** |")

    table = header + "\n" + "\n".join(rows)
    notes = (f"\n\nCPU, float64, torch {torch.__version__}, {torch.get_num_threads()} threads, on a 2-core machine "
             "shared with other jobs (timings are noisy; ours is the median of the repeats, the NumPy reference one "
             "run). lamb = 1/60 on the DCGAN Grams (LowRankGAN's), 1/sqrt(n) on the synthetic ones. Ratios are "
             "NumPy-reference time / our time. The IALM rows stop on primal AND dual residual <= 1e-7 (certified); "
             "the official rows stop on the primal residual only, as the official code. On the synthetic problems the "
             "official rule stops after a few iterations at a non-solution (its fixed mu grows with n), so only the "
             "per-iteration ratio compares like with like there.\n"
             f"DCGAN: ranks (rank_f, rank_b) ours {ours.meta['rank_f']}, {ours.meta['rank_b']}, reference official "
             f"{ref_dirs['rank_f']}, {ref_dirs['rank_b']}; |cos| of the region's principal directions {cos_p:.5f}, "
             f"of the top projected directions {cos:.5f}. Certificate for the background Gram: lamb ||sign(M_b)||_2 = "
             f"{cert:.4f} {'<' if cert < 1 else '>='} 1, so Y = lamb sign(M_b) is dual feasible and L_b = 0, S_b = M_b "
             f"is {'exactly optimal' if cert < 1 else 'not optimal'} for the convex problem (M_b has no zero entries);"
             " the official rule stops at a rank-1 L_b before reaching it, so the null spaces differ.\n")
    print(table + notes)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("# rpca benchmark\n\nCommand: `/work/main/.venv/bin/python bench/bench_rpca.py`\n\n" + table + notes)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
