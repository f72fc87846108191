"""Benchmark of ops.generalized_eigh (and the Woodbury route) against the official ReSeFa route, inv + general eig.

Runs two ways:
  python -m pytest bench/bench_generalized_eigh.py --benchmark-only     (pytest-benchmark, small sizes)
  python bench/bench_generalized_eigh.py [--quick] [--threads N] [--out-dir DIR]
                                                                        (agreement first, then the markdown table,
                                                                         also written to bench/results/generalized_eigh.md)
Timings (``harness.time_routes``: the routes alternate) are wall-clock medians (and minima) over repeats, float64 on the CPU, ONE thread for every contender
(torch and NumPy's BLAS; ``--threads N`` to change): the machine is shared with other jobs, and oversubscribed
threads made every timing several times slower and noisier. Look at the ratios more than the absolute numbers.
Peak memory of the Woodbury and dense routes: a fresh subprocess builds its inputs, runs a small warm-up solve
(so library loading is not counted), resets the kernel's peak-RSS counter (``/proc/self/clear_refs`` = 5), solves,
and reports ``VmHWM - VmRSS`` from ``/proc/self/status`` (``harness.peak_rss``: peak resident memory the solve added
on top of its inputs). Where the reset is unavailable it falls back to ``ru_maxrss`` growth (a lower bound).
"""
import json
import os
import subprocess
import sys
import time

import harness

_THREADS = harness.pin_threads(1)  # before NumPy / torch load their BLAS

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(_THREADS)

from lowrankedit.ops import generalized_eigh, generalized_eigh_woodbury  # noqa: E402

TAU = 1e-3


def synthetic_grams(D, seed=0, rows_fg=None, rows_bg=None):
    """PSD Grams like Jacobian Grams: J^T J / rows with a decaying column scale (float64)."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.logspace(0, -2, D, dtype=torch.float64)
    Jf = torch.randn(rows_fg or D // 4, D, generator=g, dtype=torch.float64) * scale
    Jb = torch.randn(rows_bg or 2 * D, D, generator=g, dtype=torch.float64) * scale
    return Jf.T @ Jf / Jf.shape[0], Jb.T @ Jb / Jb.shape[0]


def thin_factors(D, r, m, seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = torch.logspace(0, -2, D, dtype=torch.float64)
    Fa = torch.randn(r, D, generator=g, dtype=torch.float64) * scale / r ** 0.5
    Fb = torch.randn(m, D, generator=g, dtype=torch.float64) * scale / m ** 0.5
    return Fa, Fb


def regularize(B, tau=TAU):
    return B + tau * B.trace() * torch.eye(B.shape[0], dtype=B.dtype)


def numpy_inv_eig(A, B, tau=TAU):
    """The official route: eig(inv(B') A), real parts, sorted descending."""
    Bn = regularize(B, tau).numpy()
    w, V = np.linalg.eig(np.linalg.inv(Bn) @ A.numpy())
    order = np.argsort(-w.real)
    return w.real[order], V.real[:, order]


def torch_inv_eig(A, B, tau=TAU):
    w, V = torch.linalg.eig(torch.linalg.inv(regularize(B, tau)) @ A)
    order = torch.argsort(-w.real)
    return w.real[order], V.real[:, order]


def ours(A, B, tau=TAU):
    return generalized_eigh(A, B, tau)


def check_agreement(D=256, k=8):
    A, B = synthetic_grams(D, seed=1)
    w, X = ours(A, B)
    wn, Vn = numpy_inv_eig(A, B)
    cos = np.abs(np.sum(X[:, :k].numpy() * Vn[:, :k], 0)) / np.linalg.norm(Vn[:, :k], axis=0)
    assert np.allclose(w[:k].numpy(), wn[:k], rtol=1e-6), (w[:k], wn[:k])
    assert cos.min() > 0.999, cos
    Fa, Fb = thin_factors(2 * D, 16, 64, seed=2)
    ww, Xw = generalized_eigh_woodbury(Fb, Fa=Fa, tau=TAU, k=k)
    wd, Xd = generalized_eigh(Fa.T @ Fa, Fb.T @ Fb, TAU)
    assert torch.allclose(ww, wd[:k], rtol=1e-8) and torch.allclose(Xw, Xd[:, :k], atol=1e-7)
    return float(cos.min())


def _child(kind, D, r, m):
    """Runs in a fresh process: build inputs, warm up, reset the peak-RSS counter, solve; print JSON."""
    Fa, Fb = thin_factors(D, r, m)
    if kind == "woodbury":
        run = lambda Fa, Fb: generalized_eigh_woodbury(Fb, Fa=Fa, tau=TAU, k=min(Fa.shape[0], 16))  # noqa: E731
    else:  # the dense route on the same problem: form both D x D Grams, then generalized_eigh
        run = lambda Fa, Fb: generalized_eigh(Fa.T @ Fa, Fb.T @ Fb, TAU)  # noqa: E731
    run(*thin_factors(64, 8, 16, seed=1))  # warm-up: load LAPACK etc. outside the measurement
    input_bytes = (Fa.numel() + Fb.numel()) * 8
    t0 = time.perf_counter()
    result = {}
    peak, method = harness.peak_rss(lambda: result.setdefault("w", run(Fa, Fb)[0]))
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_mib": peak / 2 ** 20, "input_mib": input_bytes / 2 ** 20,
                      "top": float(result["w"][0]), "method": method}))


def in_subprocess(kind, D, r, m, repeat):
    out = []
    for _ in range(repeat):
        res = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", kind, str(D), str(r), str(m),
                              "--threads", str(_THREADS)],
                             capture_output=True, text=True, check=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return {"seconds": float(np.median([o["seconds"] for o in out])), "min": float(min(o["seconds"] for o in out)),
            "peak_mib": float(np.median([o["peak_mib"] for o in out])), "input_mib": out[0]["input_mib"],
            "top": out[0]["top"], "method": out[0]["method"]}


def main():
    args = harness.parser(__doc__, default_threads=1).parse_args()
    quick = args.quick
    cos = check_agreement()
    lines = [f"Agreement (D=256, top 8 vs numpy inv+eig): min |cos| = {cos:.9f}; Woodbury == dense checked.", ""]
    lines += ["| D | ours generalized_eigh (s) | numpy inv+eig (s) | torch inv+eig (s) | numpy / ours | torch / ours |",
              "|---|---|---|---|---|---|"]
    # (D, repeats of ours, repeats of the baselines, run torch inv+eig too). At D = 4608 one general eig takes
    # ~15 min single-threaded on this shared machine, so only the official NumPy route is timed there, once.
    sizes = [(256, 3, 2, True)] if quick else [(512, 7, 5, True), (4608, 1, 1, False)]
    for D, rep_ours, rep_base, with_torch in sizes:
        A, B = synthetic_grams(D)
        routes = {"ours": (lambda: ours(A, B), rep_ours), "numpy": (lambda: numpy_inv_eig(A, B), rep_base)}
        if with_torch:
            routes["torch"] = (lambda: torch_inv_eig(A, B), rep_base)
        # One warm-up call of ours only: at D = 4608 a warm-up of the NumPy route would cost another 15 min.
        ours(A, B)
        t = harness.time_routes(routes, warmup=0)
        t_ours, t_np, t_th = t["ours"], t["numpy"], t.get("torch")
        th = f"{t_th.median:.3f} (min {t_th.min:.3f})" if t_th else "not run"
        th_ratio = f"{t_th.median / t_ours.median:.1f}x" if t_th else "-"
        lines.append(f"| {D} | {t_ours.median:.3f} (min {t_ours.min:.3f}) | {t_np.median:.3f} (min {t_np.min:.3f}) | "
                     f"{th} | {t_np.median / t_ours.median:.1f}x | {th_ratio} |")
        print(lines[-1], flush=True)
    lines += ["", "Woodbury route (thin background factor Fb (m, D), thin foreground factor Fa (r, D), top 16), "
              "vs the dense route on the same problem (forms both D x D Grams, then generalized_eigh). Peak extra memory: "
              "VmHWM - VmRSS of a fresh subprocess around the solve, after a warm-up and a peak reset "
              "(see the module docstring).", "",
              "| D | r | m | route | time (s) | peak extra memory (MiB) | inputs (MiB) |", "|---|---|---|---|---|---|---|"]
    cases = [(4608, 256, 1024, "woodbury", 3), (4608, 256, 1024, "dense", 1), (9216, 256, 1024, "woodbury", 3)]
    if quick:
        cases = [(1024, 64, 256, "woodbury", 1), (1024, 64, 256, "dense", 1)]
    for D, r, m, kind, rep in cases:
        res = in_subprocess(kind, D, r, m, rep)
        lines.append(f"| {D} | {r} | {m} | {kind} | {res['seconds']:.3f} (min {res['min']:.3f}) | "
                     f"{res['peak_mib']:.0f} ({res['method']}) | {res['input_mib']:.0f} |")
        print(lines[-1], flush=True)
    runs = ("a quick run (--quick): D=256, 3 runs of ours, 2 of each baseline; Woodbury cases once" if quick else
            "D=512: 7 runs of ours, 5 of each baseline; D=4608: 1 each; Woodbury: median of 3 fresh subprocesses")
    lines += ["", f"{_THREADS} thread(s) for all, float64, CPU; medians over the runs ({runs}), min in parentheses, "
              "the routes alternating."]
    table = "\n".join(lines)
    harness.write_result("generalized_eigh", "# generalized_eigh: ours vs inv + eig, and the Woodbury route\n\n"
                         + table, args.out_dir)
    print("\n" + table)


# ---- pytest-benchmark (small sizes) ----------------------------------------------------------------------------

def test_bench_ours_512(benchmark):
    A, B = synthetic_grams(512)
    w, _ = benchmark(ours, A, B)
    assert torch.allclose(w[:4], torch.from_numpy(numpy_inv_eig(A, B)[0][:4].copy()), rtol=1e-6)


def test_bench_numpy_inv_eig_512(benchmark):
    A, B = synthetic_grams(512)
    benchmark(numpy_inv_eig, A, B)


def test_bench_torch_inv_eig_512(benchmark):
    A, B = synthetic_grams(512)
    benchmark(torch_inv_eig, A, B)


def test_bench_woodbury_4608(benchmark):
    Fa, Fb = thin_factors(4608, 256, 1024)
    w, _ = benchmark(generalized_eigh_woodbury, Fb, Fa=Fa, tau=TAU, k=16)
    assert w.shape == (16,)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
