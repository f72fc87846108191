"""Benchmark of ops.generalized_eigh (and the Woodbury route) against the official ReSeFa route, inv + general eig.

Runs two ways:
  python -m pytest bench/bench_generalized_eigh.py --benchmark-only     (pytest-benchmark, small sizes)
  python bench/bench_generalized_eigh.py [--quick]                      (agreement first, then the markdown table,
                                                                          also written to bench/results/generalized_eigh.md)
Timings are wall-clock medians (and minima) over repeats, float64 on the CPU; the machine is shared with other
jobs, so look at the ratios more than the absolute numbers. Peak memory of the Woodbury route is the growth of the
resident set (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) of a fresh subprocess across the solve, measured after
its inputs exist.
"""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

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


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times))


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
    """Runs in a fresh process: build inputs, note maxrss, solve, note maxrss and time; print JSON."""
    import resource

    torch.manual_seed(0)
    if kind == "woodbury":
        Fa, Fb = thin_factors(D, r, m)
        run = lambda: generalized_eigh_woodbury(Fb, Fa=Fa, tau=TAU, k=min(r, 16))  # noqa: E731
        input_bytes = (Fa.numel() + Fb.numel()) * 8
    else:  # the dense route on the same problem: form both Grams, then generalized_eigh
        Fa, Fb = thin_factors(D, r, m)
        run = lambda: generalized_eigh(Fa.T @ Fa, Fb.T @ Fb, TAU)  # noqa: E731
        input_bytes = (Fa.numel() + Fb.numel()) * 8
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    t0 = time.perf_counter()
    w, X = run()
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mib": (after - before) / 1024, "input_mib": input_bytes / 2 ** 20,
                      "top": float(w[0])}))


def in_subprocess(kind, D, r, m, repeat):
    out = []
    for _ in range(repeat):
        res = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", kind, str(D), str(r), str(m)],
                             capture_output=True, text=True, check=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return {"seconds": float(np.median([o["seconds"] for o in out])), "min": float(min(o["seconds"] for o in out)),
            "peak_mib": float(np.median([o["peak_mib"] for o in out])), "input_mib": out[0]["input_mib"],
            "top": out[0]["top"]}


def main(quick=False):
    cos = check_agreement()
    lines = [f"Agreement (D=256, top 8 vs numpy inv+eig): min |cos| = {cos:.9f}; Woodbury == dense checked.", ""]
    lines += ["| D | ours generalized_eigh (s) | numpy inv+eig (s) | torch inv+eig (s) | numpy / ours | torch / ours |",
              "|---|---|---|---|---|---|"]
    sizes = [(512, 7, 5)] + ([] if quick else [(4608, 1, 1)])
    for D, rep_ours, rep_base in sizes:
        A, B = synthetic_grams(D)
        t_ours = timed(lambda: ours(A, B), rep_ours)
        t_np = timed(lambda: numpy_inv_eig(A, B), rep_base)
        t_th = timed(lambda: torch_inv_eig(A, B), rep_base)
        lines.append(f"| {D} | {t_ours[0]:.3f} (min {t_ours[1]:.3f}) | {t_np[0]:.3f} (min {t_np[1]:.3f}) | "
                     f"{t_th[0]:.3f} (min {t_th[1]:.3f}) | {t_np[0] / t_ours[0]:.1f}x | {t_th[0] / t_ours[0]:.1f}x |")
        print(lines[-1], flush=True)
    lines += ["", "Woodbury route (thin background factor Fb (m, D), thin foreground factor Fa (r, D), top 16), "
              "vs the dense route on the same problem (forms both D x D Grams). Peak = growth of ru_maxrss in a "
              "fresh subprocess across the solve (inputs already allocated).", "",
              "| D | r | m | route | time (s) | peak extra memory (MiB) | inputs (MiB) |", "|---|---|---|---|---|---|---|"]
    cases = [(4608, 256, 1024, "woodbury", 3), (4608, 256, 1024, "dense", 1), (9216, 256, 1024, "woodbury", 3)]
    if quick:
        cases = [(2048, 64, 256, "woodbury", 1), (2048, 64, 256, "dense", 1)]
    for D, r, m, kind, rep in cases:
        res = in_subprocess(kind, D, r, m, rep)
        lines.append(f"| {D} | {r} | {m} | {kind} | {res['seconds']:.3f} (min {res['min']:.3f}) | "
                     f"{res['peak_mib']:.0f} | {res['input_mib']:.0f} |")
        print(lines[-1], flush=True)
    lines += ["", f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64, CPU "
              f"(shared with other jobs); medians over 7 (ours, D=512) / 5 (baselines, D=512) / 1 (D=4608) "
              f"repeats, min in parentheses; Woodbury: median of 3 fresh subprocesses."]
    table = "\n".join(lines)
    if not quick:
        path = os.path.join(ROOT, "bench", "results", "generalized_eigh.md")
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write("# generalized_eigh: ours vs inv + eig, and the Woodbury route\n\n"
                     "Command: `/work/main/.venv/bin/python bench/bench_generalized_eigh.py`\n\n" + table + "\n")
        os.replace(tmp, path)
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
        main(quick="--quick" in sys.argv)
