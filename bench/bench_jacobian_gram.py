"""End-to-end Grams for one DCGAN image: jacobian_gram vs the reverse-mode loop of the official code.

Script:  python bench/bench_jacobian_gram.py   (checks agreement, prints the table, writes bench/results/jacobian_gram.md)
pytest:  python -m pytest bench/bench_jacobian_gram.py --benchmark-only

Baseline: the official route, the whole (4096, 100) Jacobian by reverse mode (`torch.autograd.functional.jacobian`,
one backward pass per output pixel), then `J^T diag(w) J / n` and the complement. The machine is shared: every route
runs several times and the table shows the median (and the minimum).
"""
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

REPEATS_OURS = 5
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
    G = lowrankedit.models.dcgan_digiface()
    region = lowrankedit.models.dcgan_mouth_region()
    z = G.sample_latents(1, seed=3)[0]
    ref = reference.jacobian_gram(G, z, region)
    ours(G, z, region)  # warm-up
    t_base, t_base_min, (bfg, bbg) = timeit(reverse_mode_gram, G, z, region, repeats=REPEATS_BASELINE)
    err_base = max(rel(bfg, ref.fg), rel(bbg, ref.bg))
    rows = []
    for mode in ("auto", "forward", "double_vjp", "matrix_free"):
        t, t_min, (fg, bg) = timeit(ours, G, z, region, mode=mode, repeats=REPEATS_OURS)
        err = max(rel(fg, ref.fg), rel(bg, ref.bg))
        agree = max(rel(fg, bfg), rel(bg, bbg))
        assert err < 1e-4 and agree < 1e-4, (mode, err, agree)
        rows.append(f"| jacobian_gram(mode={mode!r}) | {t:.3f} ({t_min:.3f}) | {t_base / t:.1f}x | {err:.1e} "
                    f"| {agree:.1e} |")
        print(rows[-1], flush=True)
    rows.insert(0, f"| reverse-mode loop (torch.autograd.functional.jacobian + Grams) | {t_base:.3f} "
                   f"({t_base_min:.3f}) | 1.0x | {err_base:.1e} | - |")
    header = ("| route | seconds, median (min) | speed-up vs reverse loop | rel. error vs float64 reference "
              "| rel. diff vs reverse loop |\n|---|---|---|---|---|")
    table = header + "\n" + "\n".join(rows)
    note = (
        "# Jacobian Grams of one DCGAN image (64x64, z in R^100, mouth box, channels averaged), CPU float32\n\n"
        f"torch {torch.__version__}, {torch.get_num_threads()} threads on a CPU shared with other jobs; median (min) of "
        f"{REPEATS_OURS} runs of ours and {REPEATS_BASELINE} of the reverse-mode loop. Errors: max over fg/bg of "
        "||G - G_ref||_F / ||G_ref||_F against reference.jacobian_gram (float64).\n\n"
        "Command: `python bench/bench_jacobian_gram.py`\n\n"
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
