"""End-to-end Grams for one DCGAN image: jacobian_gram vs the reverse-mode loop of the official code.

Script:  python bench/bench_jacobian_gram.py   (checks agreement, prints the table, writes bench/results/jacobian_gram.md)
pytest:  python -m pytest bench/bench_jacobian_gram.py --benchmark-only

Baseline: the official route, the whole (4096, 100) Jacobian by reverse mode (`torch.autograd.functional.jacobian`,
one backward pass per output pixel), then `J^T diag(w) J / n` and the complement. The machine is shared: every route
runs several times and the table shows the median (and the minimum).

`--baseline-rows N` (default: all 4096) runs the reverse-mode loop over the first N rows only and scales its time by
4096 / N (each row is one backward pass of the same cost); the table says when it did. Its result is then checked on
those N rows against the float64 reference Jacobian.
"""
import argparse
import os
import statistics
import sys
import time

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

import lowrankedit  # noqa: E402
from lowrankedit import reference  # noqa: E402
from lowrankedit.jacobian_gram import jacobian_gram  # noqa: E402

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


def timeit(fn, *args, repeats, **kw):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), out


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--baseline-rows", type=int, default=4096)
    ap.add_argument("--baseline-repeats", type=int, default=REPEATS_BASELINE)
    args = ap.parse_args()
    G = lowrankedit.models.dcgan_digiface()
    region = lowrankedit.models.dcgan_mouth_region()
    z = G.sample_latents(1, seed=3)[0]
    ref = reference.jacobian_gram(G, z, region)
    ours(G, z, region)  # warm-up
    n = args.baseline_rows
    if n >= 4096:
        t_base, t_base_min, (bfg, bbg) = timeit(reverse_mode_gram, G, z, region, repeats=args.baseline_repeats)
        err_base = f"{max(rel(bfg, ref.fg), rel(bbg, ref.bg)):.1e}"
        base_label = "reverse-mode loop (torch.autograd.functional.jacobian + Grams)"
    else:
        import copy

        t_part, t_part_min, Jn = timeit(reverse_mode_rows, G, z, n, repeats=args.baseline_repeats)
        t_base, t_base_min = t_part * 4096 / n, t_part_min * 4096 / n
        Gd = copy.deepcopy(G).double()
        Jref = torch.func.jacfwd(lambda f: Gd.synthesize(f[None])[0].mean(0).reshape(-1)[:n])(z.double())
        err_base = f"{rel(Jn, Jref):.1e} (J rows)"
        base_label = (f"reverse-mode loop (torch.autograd.functional.jacobian), timed on {n} of 4096 rows "
                      f"x {4096 / n:g}")
        bfg = bbg = None
    print(f"baseline: {t_base:.2f} s ({base_label})", flush=True)
    rows = []
    # "auto" picks "forward" here (checked below); the fallback modes are slower and timed fewer times.
    assert jacobian_gram(G, z, region, size=16, progress=False).meta["mode"] == "forward"
    for mode, repeats in (("forward", REPEATS_OURS), ("double_vjp", 1), ("matrix_free", 1)):
        t, t_min, (fg, bg) = timeit(ours, G, z, region, mode=mode, repeats=repeats)
        err = max(rel(fg, ref.fg), rel(bg, ref.bg))
        agree = max(rel(fg, bfg), rel(bg, bbg)) if bfg is not None else float("nan")
        assert err < 1e-4 and not agree >= 1e-4, (mode, err, agree)
        agree_s = f"{agree:.1e}" if bfg is not None else "-"
        rows.append(f"| jacobian_gram(mode={mode!r}) | {t:.3f} ({t_min:.3f}) | {t_base / t:.1f}x | {err:.1e} "
                    f"| {agree_s} |")
        print(rows[-1], flush=True)
    rows.insert(0, f"| {base_label} | {t_base:.3f} ({t_base_min:.3f}) | 1.0x | {err_base} | - |")
    header = ("| route | seconds, median (min) | speed-up vs reverse loop | rel. error vs float64 reference "
              "| rel. diff vs reverse loop |\n|---|---|---|---|---|")
    table = header + "\n" + "\n".join(rows)
    note = (
        "# Jacobian Grams of one DCGAN image (64x64, z in R^100, mouth box, channels averaged), CPU float32\n\n"
        f"torch {torch.__version__}, {torch.get_num_threads()} threads on a CPU shared with other jobs; median (min) of "
        f"{REPEATS_OURS} runs of ours (1 of each fallback mode) and {args.baseline_repeats} of the reverse-mode loop. Errors: max over fg/bg of "
        "||G - G_ref||_F / ||G_ref||_F against reference.jacobian_gram (float64).\n\n"
        f"Command: `python bench/bench_jacobian_gram.py --baseline-rows {n} --baseline-repeats {args.baseline_repeats}`"
        "\n\n"
    )
    with open(os.path.join(ROOT, "bench", "results", "jacobian_gram.md"), "w") as fh:
        fh.write(note + table + "\n")
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
