"""masked_gram vs the composed PyTorch baseline ``(J*w).mT @ J`` and ``(J*(1-w)).mT @ J``: time and peak memory.

Script:  python bench/bench_masked_gram.py   (checks agreement, prints the table, writes bench/results/masked_gram.md)
pytest:  python -m pytest bench/bench_masked_gram.py --benchmark-only

Timing: the machine is shared, so every route runs `REPEATS` times after a warm-up and the table shows the median
(and the minimum). Memory: the peak of the bytes the torch CPU allocator holds during one call, above what it held
before the call, read from torch.profiler's allocation records (profile_memory=True; every allocation and free by
ATen, including those inside our C++ op, is recorded with its size). This counts the outputs, temporaries and
workspace that each route allocates through torch; BLAS-internal scratch buffers are invisible to it for both routes.
"""
import os
import statistics
import sys
import time

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

from lowrankedit import reference  # noqa: E402
from lowrankedit.ops import masked_gram  # noqa: E402

SIZES = [(1, 4096, 100), (4, 4096, 100), (1, 4096, 512), (4, 4096, 512), (1, 65536, 100), (4, 65536, 100),
         (1, 65536, 512)]
SOFT_SIZES = [(1, 4096, 100), (1, 65536, 100)]  # also timed with every weight strictly inside (0, 1)
REPEATS = 9  # at least this many timed runs of each side ...
MIN_SECONDS = 0.5  # ... and at least this long in all, so the small cases get hundreds of runs


def baseline(J, w):
    """The composed PyTorch expression: one weighted copy of J per Gram, then a batched GEMM."""
    if w.dim() == 1:
        w = w.expand(J.shape[0], -1)
    return (J * w[..., None]).mT @ J, (J * (1 - w)[..., None]).mT @ J


def make(B, P, D, dtype=torch.float32, seed=0, soft=False):
    """A region mask (~10% of the pixels inside, a few soft ones), or with ``soft`` weights uniform in (0, 1): then
    every row counts in both Grams, the case where our route saves no arithmetic."""
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(B, P, D, generator=g, dtype=dtype)
    if soft:
        return J, torch.rand(B, P, generator=g).clamp(1e-3, 1 - 1e-3).to(dtype)
    w = (torch.rand(B, P, generator=g) > 0.9).to(dtype)  # a region mask: ~10% of the pixels
    w[:, :50] = 0.5  # and a few soft pixels
    return J, w


def peak_bytes(fn, *args):
    """Peak bytes held by the torch CPU allocator during fn(*args), above the level at the start."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn(*args)
        del out
    # Every allocation (+bytes) and free (-bytes) of the allocator, in time order.
    events = sorted(((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                     if e.name() == "[memory]"))
    level = peak = 0
    for _, nbytes in events:
        level += nbytes
        peak = max(peak, level)
    return peak


def timeit_pair(fa, fb, *args):
    """Median and min seconds of fa(*args) and of fb(*args), timed alternately (a busy spell of the shared machine
    hits both sides alike): at least REPEATS runs each and MIN_SECONDS in all."""
    fa(*args), fb(*args)  # warm-up
    ta, tb = [], []
    while len(ta) < REPEATS or sum(ta) + sum(tb) < MIN_SECONDS:
        for fn, times in ((fa, ta), (fb, tb)):
            t0 = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - t0)
    return (statistics.median(ta), min(ta), len(ta)), (statistics.median(tb), min(tb), len(tb))


def check_agreement():
    """Ours vs the float64 reference on a ragged case, and ours vs the baseline on the smallest benchmark size."""
    J, w = make(3, 3001, 70, torch.float64)
    for got, ref in zip(masked_gram(J, w), reference.masked_gram(J, w)):
        err = float((got - ref).norm() / ref.norm())
        assert err < 1e-12, err
    for soft in (False, True):
        J, w = make(*SIZES[0], soft=soft)
        for got, ref in zip(masked_gram(J, w), baseline(J, w)):
            err = float((got - ref).norm() / ref.norm())
            assert err < 1e-5, err


def mib(b):
    return f"{b / 2**20:.1f}"


def main():
    check_agreement()
    print(f"agreement checked; torch {torch.__version__}, {torch.get_num_threads()} threads, float32", flush=True)
    rows = []
    threads = sorted({torch.get_num_threads(), 1}, reverse=True)
    default_threads = torch.get_num_threads()
    cases = [(nt, s, soft) for nt in threads for soft in (False, True) for s in (SOFT_SIZES if soft else SIZES)]
    for nt, (B, P, D), soft in cases:
        torch.set_num_threads(nt)
        J, w = make(B, P, D, soft=soft)
        (t_ours, t_ours_min, runs), (t_base, t_base_min, _) = timeit_pair(masked_gram, baseline, J, w)
        m_ours, m_base = peak_bytes(masked_gram, J, w), peak_bytes(baseline, J, w)
        out_bytes = 2 * B * D * D * 4
        rows.append(
            f"| {nt} | {'soft (0, 1)' if soft else 'region'} | {B} | {P} | {D} | {mib(J.numel() * 4)} | {runs} "
            f"| {t_ours * 1e3:.2f} ({t_ours_min * 1e3:.2f}) "
            f"| {t_base * 1e3:.2f} ({t_base_min * 1e3:.2f}) | {t_base / t_ours:.2f}x ({t_base_min / t_ours_min:.2f}x) "
            f"| {mib(m_ours)} | {mib(m_base)} | {mib(out_bytes)} |"
        )
        print(rows[-1], flush=True)
        del J, w
    torch.set_num_threads(default_threads)
    header = (
        "| threads | weights | B | P | D | J MiB | runs | ours ms, median (min) | baseline ms, median (min) "
        "| speed-up, median (min) | ours peak MiB | baseline peak MiB | outputs MiB |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    table = header + "\n" + "\n".join(rows)
    note = (
        "# masked_gram vs `(J*w).mT @ J`, `(J*(1-w)).mT @ J` (CPU, float32)\n\n"
        f"torch {torch.__version__}, {default_threads} and 1 intra-op threads on a 2-core CPU shared with other jobs; "
        f"ours and the baseline timed alternately after a warm-up, at least {REPEATS} runs each and "
        f"{MIN_SECONDS} s in all (the runs column); median (min); the minimum is the run least disturbed by other "
        "jobs. Weights: 'region' is a mask with ~10% of the pixels at 1, 50 at 0.5, the rest 0 (each row then "
        "counts in one Gram only, which our route exploits); 'soft (0, 1)' has every weight strictly between 0 and 1 "
        "(every row counts in both Grams: no arithmetic saved). Peak MiB: most bytes the torch CPU allocator held "
        "during one call above the level before it (torch.profiler allocation records), outputs included; the "
        "baseline's extra is its weighted copy of J.\n\n"
        "Command: `python bench/bench_masked_gram.py`\n\n"
    )
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "masked_gram.md"), "w") as fh:
        fh.write(note + table + "\n")
    print()
    print(table)


@pytest.fixture(scope="module", params=[(1, 4096, 100), (1, 65536, 100)], ids=lambda s: "B%d_P%d_D%d" % s)
def case(request):
    return make(*request.param)


def test_masked_gram_ours(benchmark, case):
    benchmark(masked_gram, *case)


def test_masked_gram_baseline(benchmark, case):
    benchmark(baseline, *case)


if __name__ == "__main__":
    main()
