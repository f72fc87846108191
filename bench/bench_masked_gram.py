"""masked_gram vs the composed PyTorch baseline ``(J*w).mT @ J`` and ``(J*(1-w)).mT @ J``: time and peak memory.

Script:  python bench/bench_masked_gram.py   (checks agreement, prints the table, writes bench/results/masked_gram.md)
pytest:  python -m pytest bench/bench_masked_gram.py --benchmark-only

Options: ``--quick`` (two small sizes: checks the script works), ``--threads N``, ``--out-dir DIR``.

Timing (``harness.time_pair``): the machine is shared, so ours and the baseline run alternately after a warm-up, at
least `REPEATS` times each and `MIN_SECONDS` in all, and the table shows the median (and the minimum). Memory
(``harness.peak_memory``): the peak of the bytes the torch CPU allocator holds during one call, above what it held
before the call, read from torch.profiler's allocation records (every allocation and free by ATen, including those
inside our C++ op), plus tracemalloc's peak. This counts the outputs, temporaries and workspace that each route
allocates; BLAS-internal scratch buffers are invisible to it for both routes.
"""
import harness
import pytest
import torch

from lowrankedit import reference
from lowrankedit.ops import masked_gram

SIZES = [(1, 4096, 100), (4, 4096, 100), (1, 4096, 512), (4, 4096, 512), (1, 65536, 100), (4, 65536, 100),
         (1, 65536, 512)]
SOFT_SIZES = [(1, 4096, 100), (1, 65536, 100)]  # also timed with every weight strictly inside (0, 1)
QUICK_SIZES, QUICK_SOFT_SIZES = [(1, 4096, 100), (2, 4096, 128)], [(1, 4096, 100)]
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
    args = harness.parser(__doc__).parse_args()
    harness.pin_threads(args.threads)
    check_agreement()
    print(f"agreement checked; torch {torch.__version__}, {torch.get_num_threads()} threads, float32", flush=True)
    rows = []
    default_threads = torch.get_num_threads()
    threads = sorted({default_threads, 1}, reverse=True)
    sizes, soft_sizes = (QUICK_SIZES, QUICK_SOFT_SIZES) if args.quick else (SIZES, SOFT_SIZES)
    min_runs, min_seconds = (3, 0.05) if args.quick else (REPEATS, MIN_SECONDS)
    cases = [(nt, s, soft) for nt in threads for soft in (False, True) for s in (soft_sizes if soft else sizes)]
    for nt, (B, P, D), soft in cases:
        torch.set_num_threads(nt)
        J, w = make(B, P, D, soft=soft)
        t_ours, t_base = harness.time_pair(lambda: masked_gram(J, w), lambda: baseline(J, w), min_runs=min_runs,
                                           min_seconds=min_seconds)
        m_ours, m_base = harness.peak_memory(masked_gram, J, w), harness.peak_memory(baseline, J, w)
        rows.append([nt, "soft (0, 1)" if soft else "region", B, P, D, mib(J.numel() * 4), t_ours.runs, t_ours.ms(),
                     t_base.ms(), f"{t_base.median / t_ours.median:.2f}x ({t_base.min / t_ours.min:.2f}x)",
                     m_ours.mib(), m_base.mib(), mib(2 * B * D * D * 4)])
        print(rows[-1], flush=True)
        del J, w
    torch.set_num_threads(default_threads)
    table = harness.markdown_table(
        ["threads", "weights", "B", "P", "D", "J MiB", "runs", "ours ms, median (min)", "baseline ms, median (min)",
         "speed-up, median (min)", "ours peak MiB", "baseline peak MiB", "outputs MiB"], rows)
    note = (
        "# masked_gram vs `(J*w).mT @ J`, `(J*(1-w)).mT @ J` (CPU, float32)\n\n"
        f"{default_threads} and 1 intra-op threads; ours and the baseline timed alternately after a warm-up, at least "
        f"{min_runs} runs each and {min_seconds} s in all (the runs column); median (min); the minimum is the run least "
        "disturbed by other jobs. Weights: 'region' is a mask with ~10% of the pixels at 1, 50 at 0.5, the rest 0 (each "
        "row then counts in one Gram only, which our route exploits); 'soft (0, 1)' has every weight strictly between 0 "
        "and 1 (every row counts in both Grams: no arithmetic saved). Peak MiB: `harness.peak_memory`, the most bytes "
        "held during one call above the level before it (torch CPU allocator records plus tracemalloc), outputs "
        "included; the baseline's extra is its weighted copy of J.\n\n"
    )
    harness.write_result("masked_gram", note + table, args.out_dir)
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
