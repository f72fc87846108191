"""Scaling of the D x D steps with the latent dimension D (issue: D = 9216 on one machine).

For D in {512, 1024, 2048, 4608, 9216} (choose with --sizes), each step's time and measured peak memory:

* ``gram``: ``jacobian_gram`` of a 1024-px ``stylegan2`` with narrow channels (18 ws of 512; --gram-channel-base,
  --gram-channel-max) whose first ``D / 512`` ws move (the others fixed), image resized to 256 as the official code
  does, against the generator's own cost for D forward-mode products (chunks of the same width timed by
  ``torch.func`` between the op's own chunks, their mean scaled to D; their time is taken off the op's), as a
  ratio; the peak the op measured is in the notes.
* ``rpca``: ``ops.rpca_ialm`` (Lin et al.'s inexact ALM, partial SVT) on two planted Gram-like problems (rank 10 +
  5% sparse entries up to 0.05, ``lamb = 1/sqrt(n)``) against the same iteration with a dense full SVD every
  iteration (plain torch). The dense run stops once its pace says it would pass --dense-cap seconds; then its time
  is the measured per-iteration time x ours' iteration count, labelled extrapolated. Above --dense-max it is not
  run: the largest timed D's per-iteration time x (D / that D)^3 (--no-dense skips it). The notes give the
  time per iteration and the load average around the run (the machine may be shared).
* ``resefa``: ``resefa(gram, k=10)`` (top-k route) on a synthetic Gram pair with a Jacobian-like spectrum, against
  scipy's ``eigh(A, B)`` in full and with ``subset_by_index`` (|cos| of each of the 10 directions to scipy's).
  scipy's full solve is extrapolated (D^3) above --scipy-full-max.
* ``lowrankgan``: ``lowrankgan(gram, method="partial")`` end to end from two planted Grams (the rpca problems,
  ``lamb = 1/sqrt(D)``; directions from thin factors), at the sizes in --lowrankgan-sizes; its robust PCA's share
  is timed inside the same call.

Peak memory is measured (the process's peak resident set above the level at the step's start, or the CUDA
allocator's peak), not estimated. Growth exponents are least-squares slopes of log(time) against log(D).

    python bench/bench_scaling.py --sizes 512 1024 2048 --out bench/results/scaling.md
"""
import argparse
import importlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

# Idle OpenMP threads sleep instead of spinning (set before torch loads its OpenMP runtime): on a shared machine a
# spinning worker takes the core from the jobs beside it, and the robust PCA ran 2.4x slower with 2 spinning
# threads than with passive ones at load 6 (4608: 49 s against 20 s). An explicit setting is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import scipy.linalg
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

import lowrankedit as le  # noqa: E402
from lowrankedit.jacobian_gram import _PeakMemory  # noqa: E402  (the one peak-memory measurement)
from lowrankedit.ops.rpca_ialm import rpca_ialm  # noqa: E402
from lowrankedit.testing import planted_rpca, synthetic_gram_pair  # noqa: E402

MiB = 1 << 20


def measured(fn, device="cpu"):
    """``(result, seconds, peak bytes)`` of ``fn()``."""
    with _PeakMemory(device) as peak:
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
    return out, dt, peak.bytes


def dense_ialm(M, lamb, tol, max_iter, cap_s, expected_iters):
    """The same inexact ALM with a full SVD every iteration (the dense baseline): ``(iterations, seconds,
    finished)``; stops as soon as ``expected_iters`` iterations at the pace so far would pass ``cap_s`` seconds (the
    caller then extrapolates), so a baseline that cannot finish within the cap is not run up to it."""
    n = M.shape[0]
    fro = float(M.norm())
    v = torch.randn(n, 1, dtype=M.dtype, generator=torch.Generator().manual_seed(0))
    for _ in range(100):  # ||M||_2 by power iteration (the setup is not what is being timed)
        v = M @ v
        v /= v.norm()
    norm2 = float((M @ v).norm())
    Y = M / max(norm2, float(M.abs().max()) / lamb)
    mu, rho = 1.25 / norm2, 1.5
    mu_max = mu * 1e7
    L = torch.zeros_like(M)
    t0 = time.perf_counter()
    for it in range(1, max_iter + 1):
        T = M + Y / mu
        S = torch.nn.functional.softshrink(T - L, lamb / mu)
        U, s, Vh = torch.linalg.svd(T - S)
        s = (s - 1 / mu).clamp_min(0)
        r = int((s > 0).sum())
        L_new = (U[:, :r] * s[:r]) @ Vh[:r]
        dual = mu * float((L_new - L).norm()) / fro
        L = L_new
        Z = M - L - S
        Y = Y + mu * Z
        mu = min(mu * rho, mu_max)
        if float(Z.norm()) / fro <= tol and dual <= tol:
            return it, time.perf_counter() - t0, True
        elapsed = time.perf_counter() - t0
        if elapsed > cap_s or elapsed / it * max(expected_iters, it + 1) > cap_s:
            return it, elapsed, False
    return max_iter, time.perf_counter() - t0, True


def cubic_from_largest_timed(rows, step, key, D):
    """``(seconds, D_ref)``: the ``key`` seconds of the last row of ``step`` that measured them, scaled by
    ``(D / D_ref)^3`` (a dense D x D factorization's growth), or ``(None, None)`` when no row did."""
    ref = [r for r in rows if r["step"] == step and r.get(key)]
    if not ref:
        return None, None
    return ref[-1][key] * (D / ref[-1]["D"]) ** 3, ref[-1]["D"]


def bench_rpca(D, args, rows):
    probs = [planted_rpca(D, rank=10, density=0.05, magnitude=0.05, seed=s) for s in (0, 1)]
    t_ours, peak_ours, its, errs, gaps = 0.0, 0, [], [], []
    load0 = os.getloadavg()[0]
    for M, L0, _ in probs:
        (L, S, info), dt, pk = measured(lambda: rpca_ialm(M))
        t_ours += dt
        peak_ours = max(peak_ours, pk or 0)
        its.append(info["iterations"])
        errs.append(float((L - L0).norm() / L0.norm()))
        gaps.append(info["gap"])
        assert info["certified"], info
    load = f"load {load0:.1f}-{os.getloadavg()[0]:.1f}"
    note = (f"iterations {its}, {t_ours / sum(its):.3f} s per iteration, |L - L0|/|L0| {max(errs):.1e}, gap >= "
            f"{min(gaps):.2e}, certified, {load}")
    if args.no_dense:
        rows.append(dict(step="rpca (2 Grams)", D=D, ours=t_ours, base=None, base_label="not run (--no-dense)",
                         peak=peak_ours, base_peak=None, note=note))
        return
    if D > args.dense_max:  # one full SVD alone takes many minutes: n^3 from the largest D timed in this run
        per_iter, D_ref = cubic_from_largest_timed(rows, "rpca (2 Grams)", "dense_per_iter", D)
        dense = per_iter * sum(its) if per_iter else None
        label = f"extrapolated (D^3 from D={D_ref})" if per_iter else "not run (D > --dense-max)"
        rows.append(dict(step="rpca (2 Grams)", D=D, ours=t_ours, base=dense, base_label=label, peak=peak_ours,
                         base_peak=None, note=note))
        return
    M = probs[0][0]
    lamb = 1 / math.sqrt(D)
    (it_d, t_d, done), _, peak_d = measured(
        lambda: dense_ialm(M, lamb, 1e-7, 1000, args.dense_cap, expected_iters=its[0]))
    if done:
        dense, label = 2 * t_d, "measured (x2: one run timed)"
    else:
        dense, label = t_d / it_d * sum(its), f"extrapolated ({it_d} iterations timed)"
    rows.append(dict(step="rpca (2 Grams)", D=D, ours=t_ours, base=dense, base_label=label, peak=peak_ours,
                     base_peak=peak_d, dense_per_iter=t_d / it_d, note=note))


def bench_resefa(D, args, rows):
    fg, bg = synthetic_gram_pair(D, seed=D)
    gram = le.Gram(fg, bg, 1.0, 1.0)
    d, dt, pk = measured(lambda: le.resefa(gram, k=10))
    assert d.meta["route"] == "topk", d.meta["route"]
    A, B = fg.numpy(), bg.numpy()
    Bp = B + 1e-3 * np.trace(B) * np.eye(D)
    (w_s, X_s), t_sub, pk_sub = measured(lambda: scipy.linalg.eigh(A, Bp, subset_by_index=[D - 10, D - 1]))
    X_s = X_s[:, ::-1]
    cos = np.abs(np.sum(d.vectors.numpy().T * X_s, 0) / np.linalg.norm(X_s, axis=0))
    t_measured = None
    if D <= args.scipy_full_max:
        _, t_measured, _ = measured(lambda: scipy.linalg.eigh(A, Bp))
        t_full, full_label = t_measured, "measured"
    else:
        t_full, D_ref = cubic_from_largest_timed(rows, "resefa(k=10)", "full_measured", D)
        t_full, full_label = (t_full, f"extrapolated (D^3 from D={D_ref})") if t_full else (float("nan"), "not run")
    rows.append(dict(step="resefa(k=10)", D=D, ours=dt, base=t_sub, base_label="scipy subset_by_index", peak=pk,
                     base_peak=pk_sub, full_measured=t_measured,
                     note=f"min |cos| to scipy {cos.min():.6f}; scipy full eigh(A, B): {t_full:.1f} s "
                          f"({full_label}); top-k restarts {d.meta['topk']['restarts']}"))


def bench_lowrankgan(D, args, rows):
    """``lowrankgan(gram, method="partial")`` end to end from two planted Grams (the rpca problems above as the
    region and background Grams, ``lamb = 1/sqrt(D)``); its robust PCA is timed inside the same call."""
    import lowrankedit.methods.lowrankgan as module

    fg, bg = (planted_rpca(D, rank=10, density=0.05, magnitude=0.05, seed=s)[0] for s in (0, 1))
    gram = le.Gram(fg, bg, 1.0, 1.0)
    inner = {}
    solver = module.rpca

    def timed_rpca(*a, **k):
        t0 = time.perf_counter()
        out = solver(*a, **k)
        inner["rpca"] = time.perf_counter() - t0
        return out

    module.rpca = timed_rpca
    try:
        d, dt, pk = measured(lambda: le.lowrankgan(gram, lamb=1 / math.sqrt(D), method="partial"))
    finally:
        module.rpca = solver
    info = d.meta["rpca"]
    assert all(info["certified"]), info
    rows.append(dict(step="lowrankgan (planted Grams)", D=D, ours=dt, base=None, base_label="", peak=pk,
                     base_peak=None,
                     note=f"{len(d)} directions, route {d.meta['route']}; its rpca {inner['rpca']:.1f} s "
                          f"(iterations {info['iterations']}, gap >= {min(info['gap']):.2f}, certified), the "
                          f"directions {dt - inner['rpca']:.1f} s"))


class LeadingWs:
    """A W+ generator whose code is its first ``k`` ws; the other ws stay at ``base``'s: ``D = k * w_dim``.

    One 1024-px ``stylegan2`` (18 ws) gives every D of the table (512 k for k = 1, 2, 4, 9, 18) at the same cost
    per product, so the Gram's time against D isolates how ``jacobian_gram`` scales."""

    def __init__(self, G, k, base):
        self.G, self.k, self.base = G, k, base
        self.latent_shape = (k, G.w_dim)
        self.name = f"{G.name}-first{k}ws"

    def synthesize(self, latents):
        rest = self.base[self.k:].expand(latents.shape[0], -1, -1)
        return self.G.synthesize(torch.cat([latents, rest], 1))


def gram_generator(args):
    """The 1024-px narrow ``stylegan2`` (18 ws of 512) of the Gram rows, and a W+ code."""
    G = le.models.stylegan2(1024, channel_base=args.gram_channel_base, channel_max=args.gram_channel_max, seed=0)
    return G, G.sample_latents(1, seed=0)[0]


def forward_mode_chunk(G, latent, size, chunk):
    """One chunk of ``chunk`` forward-mode products to the differentiated rows (synthesize, nearest resize, channel
    mean: what ``jacobian_gram`` differentiates), by ``torch.func``: a function that runs it and returns its
    seconds."""
    D = latent.numel()
    flat = latent.reshape(-1)

    def rows_of(z):
        x = torch.nn.functional.interpolate(G.synthesize(z.reshape(1, *G.latent_shape)), size=size, mode="nearest")
        return x[0].mean(0).reshape(-1)

    batched = torch.func.vmap(lambda t: torch.func.jvp(rows_of, (flat,), (t,))[1])
    tangents = torch.eye(chunk, D, dtype=flat.dtype)

    def timed():
        t0 = time.perf_counter()
        batched(tangents)
        return time.perf_counter() - t0
    return timed


#: Baseline chunks timed during one Gram run.
BASELINE_SAMPLES = 20


class interleaved_baseline:
    """While active, every ``n / BASELINE_SAMPLES``-th Jacobian chunk of ``jacobian_gram`` is followed by one timed
    ``torch.func`` chunk of the same width (after one warm chunk): ``times`` holds those seconds and
    ``seconds_inside`` all the time spent on them, to take off the op's wall time. This machine's speed drifts by
    more than the 1.5x margin over a run of 30-60 minutes (another session's job, page-cache state), so a baseline
    timed at one moment measures the drift; interleaved, both see the same machine. It wraps the op's private
    column generator: only the benchmark does this."""

    def __init__(self, G, latent, size):
        self.G, self.latent, self.size = G, latent, size
        self.times, self.seconds_inside, self.warm = [], 0.0, False

    def __enter__(self):
        module = importlib.import_module("lowrankedit.jacobian_gram")
        original, outer = module._columns, self

        def columns(rows_of, flat, chunk, jvp, chunks=None):
            timed = forward_mode_chunk(outer.G, outer.latent, outer.size, chunk)
            every = max(1, math.ceil(flat.numel() / chunk) // BASELINE_SAMPLES)
            for i, item in enumerate(original(rows_of, flat, chunk, jvp, chunks)):
                yield item
                if i % every == every - 1:
                    t0 = time.perf_counter()
                    if not outer.warm:  # the first torch.func chunk of this width is not timed
                        timed()
                        outer.warm = True
                    outer.times.append(timed())
                    outer.seconds_inside += time.perf_counter() - t0

        self.module, self.original = module, original
        module._columns = columns
        return self

    def __exit__(self, *exc):
        self.module._columns = self.original
        return False


def bench_gram(D, args, rows):
    """``jacobian_gram`` (``size=256``, channels averaged, the default 4 GiB bound) against the generator's own
    forward-mode cost for D products: chunks of the same width timed by ``torch.func`` between the op's chunks
    (:class:`interleaved_baseline`), their mean times the number of chunks."""
    if D % 512 or not 1 <= D // 512 <= 18:
        rows.append(dict(step="gram", D=D, ours=None, base=None, base_label="", peak=None, base_peak=None,
                         note="skipped: D is not 512 k with k <= 18"))
        return
    if not args.gram_in_process:
        # Each D in a fresh process, so that every row starts from the same state (no heap, caches or thread pools
        # left by the row before it).
        with tempfile.TemporaryDirectory() as tmp:
            row = os.path.join(tmp, "row.json")
            subprocess.run([sys.executable, os.path.abspath(__file__), "--sizes", str(D), "--steps", "gram",
                            "--gram-in-process", "--gram-row", row, "--out", os.path.join(tmp, "table.md"),
                            "--gram-channel-base", str(args.gram_channel_base), "--gram-channel-max",
                            str(args.gram_channel_max)] + (["--progress"] if args.progress else []), check=True)
            with open(row) as fh:
                rows.append(json.load(fh))
        return
    if not hasattr(args, "_gram_generator"):
        args._gram_generator = gram_generator(args)
    G18, w = args._gram_generator
    k = D // 512
    G = LeadingWs(G18, k, w)
    region = le.Region.box(96, 96, 64, 64, size=(256, 256))  # a centre box of the differentiated image
    load0 = os.getloadavg()[0]
    with interleaved_baseline(G, w[:k], 256) as samples:
        g, dt_all, pk = measured(lambda: le.jacobian_gram(G, w[:k], region, size=256, progress=args.progress))
    dt = dt_all - samples.seconds_inside
    chunk, nchunks = g.meta["chunk"], math.ceil(D / g.meta["chunk"])
    per_chunk = statistics.fmean(samples.times)
    base = per_chunk * nchunks
    ratio = dt / base
    rows.append(dict(step="gram", D=D, ours=dt, base=base, base_label=f"D forward-mode products (torch.func, "
                     f"{chunk} per chunk: the mean of {len(samples.times)} chunks timed between the op's chunks, "
                     f"x {nchunks})", peak=pk, base_peak=None,
                     note=f"**{ratio:.2f}x** the products (target <= 1.5x; against the slowest and fastest timed "
                          f"chunk {dt / (max(samples.times) * nchunks):.2f}x-{dt / (min(samples.times) * nchunks):.2f}x"
                          f"); route {g.meta['mode']}, "
                          f"{g.meta['row_passes']} row pass(es), rows {g.meta['rows']}; peak reported by the op "
                          f"{(g.meta['peak_bytes'] or 0) / MiB:.0f} MiB (bound 4096 MiB); generator "
                          f"1024 px, channel_base {args.gram_channel_base}, channel_max {args.gram_channel_max}, "
                          f"first {k} of 18 ws moving; load {load0:.1f}-{os.getloadavg()[0]:.1f}"))
    if args.gram_row:
        with open(args.gram_row, "w") as fh:
            json.dump(rows[-1], fh)


def exponent(rows, step, key):
    pts = [(r["D"], r[key]) for r in rows if r["step"] == step and r.get(key) and r[key] == r[key] and r[key] > 0]
    if len(pts) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def table(rows, args):
    fmt = lambda v: "-" if v is None else (f"{v:.2f}" if v == v else "n/a")
    mib = lambda v: "-" if v is None else f"{v / MiB:.0f}"
    out = ["| step | D | ours (s) | peak (MiB) | baseline (s) | baseline | baseline peak (MiB) | notes |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['step']} | {r['D']} | {fmt(r['ours'])} | {mib(r['peak'])} | {fmt(r['base'])} | "
                   f"{r['base_label']} | {mib(r['base_peak'])} | {r['note']} |")
    out.append("")
    out.append("Fitted growth exponents (time ~ D^e, least squares over the sizes run):")
    out.append("")
    for step in sorted({r["step"] for r in rows}):
        e, eb = exponent(rows, step, "ours"), exponent(rows, step, "base")
        if e is not None:
            out.append(f"- {step}: ours e = {e:.2f}" + (f", baseline e = {eb:.2f}" if eb is not None else ""))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4608, 9216])
    ap.add_argument("--steps", nargs="+", default=["gram", "rpca", "resefa", "lowrankgan"])
    ap.add_argument("--dense-cap", type=float, default=600.0, help="seconds a dense baseline may run")
    ap.add_argument("--no-dense", action="store_true",
                    help="skip rpca's dense baseline (one full-SVD iteration takes minutes from D = 4608)")
    ap.add_argument("--dense-max", type=int, default=4608,
                    help="largest D for rpca's dense baseline (above it: n^3 from the largest D timed)")
    ap.add_argument("--scipy-full-max", type=int, default=4608, help="largest D for scipy's full eigh(A, B)")
    ap.add_argument("--lowrankgan-sizes", type=int, nargs="+", default=[512, 1024, 2048])
    ap.add_argument("--gram-channel-base", type=int, default=1024,
                    help="the Gram generator's channel_base (channels at r px: min(base // r, max))")
    ap.add_argument("--gram-channel-max", type=int, default=16, help="the Gram generator's channel_max")
    ap.add_argument("--progress", action="store_true", help="show jacobian_gram's progress bar")
    ap.add_argument("--gram-in-process", action="store_true", help=argparse.SUPPRESS)  # the per-D child process
    ap.add_argument("--gram-row", default=None, help=argparse.SUPPRESS)  # where the child writes its row
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "scaling.md"))
    args = ap.parse_args()
    rows = []
    for D in sorted(args.sizes):
        for step in args.steps:
            if step == "lowrankgan" and D not in args.lowrankgan_sizes:
                continue
            {"gram": bench_gram, "rpca": bench_rpca, "resefa": bench_resefa, "lowrankgan": bench_lowrankgan}[step](
                D, args, rows)
            r = rows[-1]
            print(f"{r['step']:>16} D={D:5d} ours={r['ours']} base={r['base']} peak={r['peak']} {r['note']}",
                  flush=True)
    text = table(rows, args)
    head = (f"# Scaling with D\n\nCommand: `python bench/bench_scaling.py {' '.join(sys.argv[1:])}`\n\n"
            f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads (OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}); "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
            "The machine was shared with other jobs (load average {:.0f} at the end), so times are upper "
            "bounds.\n\n".format(os.getloadavg()[0]))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write(head + text + "\n")
    print(text)


if __name__ == "__main__":
    main()
