"""Robust PCA: ours (default IALM, and the official iteration) vs the official LowRankGAN iteration in NumPy
(a full SVD per iteration), on the real DCGAN's mouth-region Grams and on synthetic low-rank + sparse Grams.

Run as a script (checks agreement first, prints and writes bench/results/rpca.md):
    python bench/bench_rpca.py [--quick] [--ref-cap-2048 N] [--threads N] [--out-dir DIR]
or with pytest-benchmark:
    python -m pytest bench/bench_rpca.py --benchmark-only
The routes of each problem are timed alternately by ``harness.time_routes`` (ours warmed up first).
"""
import harness

# Single-threaded BLAS/LAPACK for both sides by default (set before NumPy/torch load): the benchmark machine is
# shared, and multi-threaded LAPACK on 100x100 matrices under load is 10-20x slower than one thread.
harness.pin_threads(1)

import statistics  # noqa: E402
import warnings  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

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
    ap = harness.parser(__doc__, default_threads=1)
    ap.add_argument("--repeat", type=int, default=3, help="timing repeats of our runs (the median is reported)")
    ap.add_argument("--ref-cap-2048", type=int, default=20,
                    help="iteration cap of the certified NumPy reference at n=2048 (a full run takes about 40 min)")
    ap.add_argument("--faces", type=int, default=8, help="faces (seeds) in the direction-agreement table")
    args = ap.parse_args()
    if args.quick:  # DCGAN Grams of one face, and a small synthetic problem
        args.faces, args.repeat = 1, 1
    rows = []
    header = ("| problem | solver | iterations | time (s) | speed-up vs the NumPy row marked 1x |\n"
              "|---|---|---|---|---|")

    # ---- DCGAN mouth-region Grams (n = 100), both in one batched call
    gram = dcgan_gram()
    le.lowrankgan(gram, lamb=1 / 60)  # warm-up of ours (at the official lamb: the solvers are compared)
    t = harness.time_routes({"numpy": (lambda: reference.lowrankgan_official(gram), 1),
                             "official": (lambda: le.lowrankgan(gram, lamb=1 / 60, method="official"), 1),
                             "ours": (lambda: le.lowrankgan(gram, lamb=1 / 60), args.repeat)}, warmup=0)
    ref_dirs, ref_t = t["numpy"].output, t["numpy"].times
    off, off_t = t["official"].output, t["official"].times
    ours, ial_t = t["ours"].output, t["ours"].times
    ref_iters = list(ref_dirs["iterations"])
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

    # ---- agreement over several faces: the top projected direction, ours (default) vs the NumPy reference, and how
    # much each leaks into the background (n^T M_b n / n^T M_f n, lower is more local)
    frows = []
    for seed in range(args.faces):
        g = gram if seed == 0 else dcgan_gram(seed)
        r = ref_dirs if seed == 0 else reference.lowrankgan_official(g)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # L_f = 0 is reported in the row
            d = le.lowrankgan(g, lamb=1 / 60)

        def leak(v):
            v = v.double()
            return float(v @ g.bg.double() @ v / (v @ g.fg.double() @ v))

        c = f"{float((d.vectors[0].double() @ r['directions'][0]).abs()):.4f}" if len(d) and r["rank_f"] else "-"
        frows.append(f"| {seed} | {d.meta['rank_f']}, {d.meta['rank_b']} | {r['rank_f']}, {r['rank_b']} | {c} | "
                     f"{leak(d.vectors[0]) if len(d) else float('nan'):.3f} | "
                     f"{leak(r['directions'][0]) if r['rank_f'] else float('nan'):.3f} |")
    faces_table = ("\nTop projected direction on the DCGAN mouth Grams of single faces (`sample_latents(1, seed)`), "
                   "ours (default) vs the NumPy official reference; leak = n^T M_b n / n^T M_f n (lower: the edit "
                   "stays in the region). A '-' is a face where ours finds L_f = 0 (the certified optimum at lamb = 1/60; "
                   "lowrankgan warns and returns no direction).\n\n"
                   "| face seed | ranks ours (f, b) | ranks official (f, b) | top direction \\|cos\\| | leak ours | "
                   "leak official |\n|---|---|---|---|---|---|\n" + "\n".join(frows) + "\n")

    # ---- synthetic low-rank + sparse Grams. The official fixed mu = n^2 / (4 ||M||_1) (induced norm) grows with n:
    # the SVT threshold 1/mu is then tiny, L + S = M holds after a few iterations and the primal-only rule stops at
    # a point that is not a solution (run on, with that mu, it had not converged after 620 iterations at n = 512).
    # The time-to-solution baseline is therefore the same NumPy ADMM (full SVD per iteration) with Candes et al.'s
    # mu = n^2 / (4 sum |M_ij|) (the rule the official code meant: entrywise norm), stopped by our certified rule
    # (primal and dual residual <= 1e-7), so both sides reach the same solution.
    sizes = [128] if args.quick else [512, 2048]
    for n in sizes:
        Mn, L0 = planted(n, rank=10, seed=1)
        lamb = 1 / n ** 0.5
        cap = 10000 if n <= 512 else args.ref_cap_2048
        mu_candes = n * n / (4 * float(Mn.abs().sum()))
        rep = args.repeat if n <= 512 else 1
        rpca(Mn, lamb)  # warm-up of ours
        t = harness.time_routes({
            "official": (lambda: reference.rpca_official(Mn, lamb), 1),
            "certified": (lambda: reference.rpca_official(Mn, lamb, mu=mu_candes, certify=True, max_iter=cap), 1),
            "ours": (lambda: rpca(Mn, lamb), rep)}, warmup=0)
        (Lr, _, it_r), t_off = t["official"].output, t["official"].min
        (Lc, _, it_c), t_cert = t["certified"].output, t["certified"].min
        o, o_t = t["ours"].output, t["ours"].times
        assert bool(o[2]["converged"]), o[2]
        err, err_off, err_c = rel(o[0], L0), rel(Lr, L0), rel(Lc, L0)
        print(f"n={n}: ours rel. error to the planted L0 = {err:.2e}; NumPy official {err_off:.2e} after {it_r}"
              f" iterations; NumPy certified {err_c:.2e} after {it_c} iterations")
        assert err < 1e-3
        med = statistics.median(o_t)
        it_o = int(o[2]["iterations"])
        per_c, per_o = t_cert / it_c, med / it_o
        done = it_c < cap
        if done:
            assert err_c < 1e-3 and rel(o[0], Lc) < 1e-4  # the same solution
        prob = f"synthetic n={n}, rank 10 + 5% sparse, lamb 1/sqrt(n)"
        rows.append(f"| {prob} | NumPy official (full SVD/iter, official mu and rule) | {it_r} (stops; rel. error to "
                    f"L0 {err_off:.2f}: not a solution) | {t_off:.2f} | not comparable |")
        rows.append(f"| {prob} | NumPy ADMM, full SVD/iter, Candes mu, certified stop | {it_c}"
                    f"{'' if done else f' (capped, not converged: rel. error to L0 {err_c:.1e})'}"
                    f"{f' (rel. error to L0 {err_c:.1e})' if done else ''} | "
                    f"{t_cert:.2f} ({per_c * 1e3:.0f} ms/iter) | 1x |")
        ratio = f"**{t_cert / med:.0f}x**" if done else f"more than {t_cert / med:.1f}x (baseline capped)"
        rows.append(f"| {prob} | **ours default (IALM, certified)** | {it_o} (rel. error to L0 {err:.1e}) | "
                    f"{med:.2f} ({per_o * 1e3:.0f} ms/iter; min {min(o_t):.2f}) | {ratio}; "
                    f"{per_c / per_o:.1f}x per iteration |")

    table = header + "\n" + "\n".join(rows)
    notes = (f"\n\nCPU, float64, {torch.get_num_threads()} thread(s) (timings are noisy on a shared machine; "
             "ours is the median of the repeats, the NumPy reference one run; the routes alternate). lamb = 1/60 on the DCGAN Grams (LowRankGAN's), 1/sqrt(n) on the synthetic ones. Ratios are "
             "NumPy-reference time / our time. The IALM rows stop on primal AND dual residual <= 1e-7 (certified); "
             "the official rows stop on the primal residual only, as the official code. On the synthetic problems the "
             "official rule stops after a few iterations at a non-solution (its fixed mu grows with n), so the "
             "time-to-solution baseline there is the same NumPy ADMM (full SVD per iteration) with Candes et al.'s "
             "mu = n^2 / (4 sum|M_ij|) and our certified stop; ours and it reach the same L (checked to 1e-4).\n"
             f"DCGAN: ranks (rank_f, rank_b) ours {ours.meta['rank_f']}, {ours.meta['rank_b']}, reference official "
             f"{ref_dirs['rank_f']}, {ref_dirs['rank_b']}; |cos| of the region's principal directions {cos_p:.5f}, "
             f"of the top projected directions {cos:.5f}. Certificate for the background Gram: lamb ||sign(M_b)||_2 = "
             f"{cert:.4f} {'<' if cert < 1 else '>='} 1, so Y = lamb sign(M_b) is dual feasible and L_b = 0, S_b = M_b "
             f"is {'exactly optimal' if cert < 1 else 'not optimal'} for the convex problem (M_b has no zero entries);"
             " the official rule stops at a rank-1 L_b before reaching it. Both drop one background direction "
             "(k = max(1, rank_b)): the official its L_b's top singular vector, ours M_b's dominant eigenvector "
             "(L_b's null-space basis is ordered by M_b), nearly the same direction.\n"
             + faces_table)

    print(table + notes)
    harness.write_result("rpca", "# rpca benchmark\n\n" + table + notes, args.out_dir)


if __name__ == "__main__":
    main()
