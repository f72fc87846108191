"""End-to-end Grams for one DCGAN image: jacobian_gram vs the reverse-mode loop of the official code.

Script:  python bench/bench_jacobian_gram.py   (checks agreement, prints the table, writes bench/results/jacobian_gram.md)
pytest:  python -m pytest bench/bench_jacobian_gram.py --benchmark-only

Baseline: the official route, the whole (4096, 100) Jacobian by reverse mode (`torch.autograd.functional.jacobian`,
one backward pass per output pixel), then `J^T diag(w) J / n` and the complement. The machine is shared: every route
runs several times and the table shows the median (and the minimum).

`--baseline-rows N` (default: all 4096) runs the reverse-mode loop over the first N rows only and scales its time by
4096 / N (each row is one backward pass of the same cost); the table says when it did. Its result is then checked on
those N rows against the float64 reference Jacobian. ``--quick``: 64 baseline rows, one run of the forward mode only.
Every route is timed by ``harness.time_routes`` (the routes alternate, ours warmed up first).
"""
import copy

import harness
import pytest
import torch

import lowrankedit
from lowrankedit import reference
from lowrankedit.jacobian_gram import jacobian_gram

REPEATS_OURS = 3
REPEATS_BASELINE = 3


def reverse_mode_gram(G, z, region):
    """The official route: reverse-mode Jacobian (one backward per pixel), then the two normalized Grams."""
    def rows(flat):
        return G.synthesize(flat[None])[0].mean(0).reshape(-1)

    J = torch.autograd.functional.jacobian(rows, z)  # (4096, 100)
    m = region.mask(64, 64).reshape(-1)
    fg = (J * m[:, None]).T @ J / m.sum()
    bg = (J * (1 - m)[:, None]).T @ J / (1 - m).sum()
    return fg, bg


def reverse_mode_rows(G, z, n):
    """The first n rows of the same reverse-mode Jacobian, by the same loop (one backward pass per row)."""
    def rows(flat):
        return G.synthesize(flat[None])[0].mean(0).reshape(-1)[:n]

    return torch.autograd.functional.jacobian(rows, z)  # (n, 100)


def ours(G, z, region, mode="auto"):
    g = jacobian_gram(G, z, region, mode=mode, progress=False)
    return g.fg, g.bg


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def main():
    ap = harness.parser(__doc__)
    ap.add_argument("--baseline-rows", type=int, default=None, help="rows of the reverse-mode loop (default 4096)")
    ap.add_argument("--baseline-repeats", type=int, default=None, help=f"default {REPEATS_BASELINE}")
    args = ap.parse_args()
    harness.pin_threads(args.threads)
    n = args.baseline_rows or (64 if args.quick else 4096)
    rep_base = args.baseline_repeats or (1 if args.quick else REPEATS_BASELINE)
    rep_ours = 1 if args.quick else REPEATS_OURS
    if not 1 <= n <= 4096:
        raise ValueError(f"--baseline-rows must be in [1, 4096], got {n}")
    G = lowrankedit.models.dcgan_digiface()
    region = lowrankedit.models.dcgan_mouth_region()
    z = G.sample_latents(1, seed=3)[0]
    ref = reference.jacobian_gram(G, z, region)
    # "auto" picks "forward" here (checked); the fallback modes are slower and timed once.
    assert jacobian_gram(G, z, region, size=16, progress=False).meta["mode"] == "forward"
    ours(G, z, region)  # warm-up (the baseline's first run is as fast as its others)
    if n >= 4096:
        baseline = lambda: reverse_mode_gram(G, z, region)  # noqa: E731
        base_label = "reverse-mode loop (torch.autograd.functional.jacobian + Grams)"
    else:
        baseline = lambda: reverse_mode_rows(G, z, n)  # noqa: E731
        base_label = (f"reverse-mode loop (torch.autograd.functional.jacobian), timed on {n} of 4096 rows "
                      f"x {4096 / n:g}")
    routes = {"baseline": (baseline, rep_base)}
    modes = ("forward",) if args.quick else ("forward", "double_vjp", "matrix_free")
    for mode, repeats in zip(modes, (rep_ours, 1, 1)):
        routes[mode] = ((lambda mode=mode: ours(G, z, region, mode=mode)), repeats)
    timings = harness.time_routes(routes, warmup=0)
    scale = 4096 / n
    t_base, t_base_min = timings["baseline"].median * scale, timings["baseline"].min * scale
    if n >= 4096:
        bfg, bbg = timings["baseline"].output
        err_base = f"{max(rel(bfg, ref.fg), rel(bbg, ref.bg)):.1e}"
    else:
        Gd = copy.deepcopy(G).double()
        Jref = torch.func.jacfwd(lambda f: Gd.synthesize(f[None])[0].mean(0).reshape(-1)[:n])(z.double())
        err_base = f"{rel(timings['baseline'].output, Jref):.1e} (J rows)"
        bfg = bbg = None
    print(f"baseline: {t_base:.2f} s ({base_label})", flush=True)
    rows = [[base_label, f"{t_base:.3f} ({t_base_min:.3f})", timings["baseline"].runs, "1.0x", err_base, "-"]]
    for mode in modes:
        t = timings[mode]
        fg, bg = t.output
        err = max(rel(fg, ref.fg), rel(bg, ref.bg))
        agree = max(rel(fg, bfg), rel(bg, bbg)) if bfg is not None else float("nan")
        assert err < 1e-4 and not agree >= 1e-4, (mode, err, agree)
        rows.append([f"jacobian_gram(mode={mode!r})", t.s(), t.runs, f"{t_base / t.median:.1f}x", f"{err:.1e}",
                     f"{agree:.1e}" if bfg is not None else "-"])
        print(rows[-1], flush=True)
    table = harness.markdown_table(["route", "seconds, median (min)", "runs", "speed-up vs reverse loop (median)",
                                    "rel. error vs float64 reference", "rel. diff vs reverse loop"], rows)
    note = (
        "# Jacobian Grams of one DCGAN image (64x64, z in R^100, mouth box, channels averaged), CPU float32\n\n"
        "Routes timed alternately (`harness.time_routes`; ours warmed up first); median (min) over the runs column. "
        "Errors: max over fg/bg of ||G - G_ref||_F / ||G_ref||_F against reference.jacobian_gram (float64).\n\n"
    )
    harness.write_result("jacobian_gram", note + table, args.out_dir)
    print()
    print(table)


@pytest.fixture(scope="module")
def setup():
    G = lowrankedit.models.dcgan_digiface()
    return G, G.sample_latents(1, seed=3)[0], lowrankedit.models.dcgan_mouth_region()


def test_jacobian_gram_forward(benchmark, setup):
    benchmark.pedantic(ours, args=setup, rounds=3, iterations=1)


def test_reverse_mode_loop(benchmark, setup):
    benchmark.pedantic(reverse_mode_gram, args=setup, rounds=1, iterations=1)


if __name__ == "__main__":
    main()
