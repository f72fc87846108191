"""What the value checks cost: each op's time beside the time of the value checks it runs on its inputs.

Every op validates its inputs inside its C++ entry (NaN / Inf in every floating input, ranges such as
``masked_gram``'s weights in [0, 1]). Small inputs get one pass each (one ``torch.aminmax``, plus the range test where
the op has one). The largest input of three ops gets no pass of its own: ``masked_gram``'s ``J`` is checked through
the Grams' diagonals, ``panda_grad``'s ``Z`` through the loss, and ``soft_threshold``'s ``X`` inside the kernel's own
pass (nothing left to time separately). This benchmark times the checks that remain beside the whole op call, which
includes them, and reports their share. A share near 0 means the checks are free.

    python bench/bench_checks.py [--quick] [--threads N]
"""
import harness

THREADS = harness.pin_threads(1)

import torch  # noqa: E402

import lowrankedit.ops as ops  # noqa: E402


def _finite(*xs):  # what the C++ entry runs per input: one fused min/max reduction and a host sync
    for x in xs:
        lo, hi = torch.aminmax(x)
        if not (torch.isfinite(lo) and torch.isfinite(hi)):
            return False
    return True


def cases(quick):
    """(name, op call, the checks it runs on the same inputs)."""
    g = torch.Generator().manual_seed(0)
    B, P, D = (1, 1024, 64) if quick else (4, 4096, 512)
    J = torch.randn(B, P, D, generator=g)
    w = torch.rand(P, generator=g)
    diagonals = torch.randn(2, B, D, generator=g)  # what the entry tests of the Grams it returns
    yield (f"masked_gram J ({B}, {P}, {D})", lambda: ops.masked_gram(J, w),
           lambda: _finite(w) and bool((w.min() >= 0) & (w.max() <= 1)) and bool(torch.isfinite(diagonals).all()))
    n = 128 if quick else 1024
    X = torch.randn(n, n, generator=g, dtype=torch.float64)
    S = X @ X.mT / n
    yield (f"singular_value_threshold ({n}, {n}) symmetric", lambda: ops.singular_value_threshold(S, 0.5),
           lambda: _finite(S))
    Bm = S + torch.eye(n, dtype=torch.float64)
    yield f"generalized_eigh ({n}, {n})", lambda: ops.generalized_eigh(S, Bm), lambda: _finite(S, Bm)
    N, C, Sp, Rc, Rs = (4, 64, 256, 16, 4) if quick else (16, 128, 256, 64, 8)
    Z = torch.randn(N, C, Sp, generator=g)
    A = torch.randn(C, Rc, generator=g)
    Pp = torch.rand(Sp, Rs, generator=g)
    loss = torch.zeros((), dtype=torch.float64)
    yield (f"panda_grad Z ({N}, {C}, {Sp})", lambda: ops.panda_grad(Z, A, Pp),
           lambda: _finite(A, Pp) and bool(torch.isfinite(loss)))


def main():
    args = harness.parser(__doc__.splitlines()[0], default_threads=1).parse_args()
    rows = []
    for name, op, checks in cases(args.quick):
        assert checks(), name  # the inputs pass the checks, so the op runs its whole computation
        t_op, t_chk = harness.time_pair(op, checks, min_runs=3 if args.quick else 9,
                                        min_seconds=0.2 if args.quick else 1.0)
        rows.append([name, t_op.ms(3), t_chk.ms(3), f"{100 * t_chk.median / t_op.median:.1f}%"])
        print(rows[-1])
    table = harness.markdown_table(["op, input", "op call ms, median (min)", "its value checks ms, median (min)",
                                    "checks' share of the call"], rows)
    text = ("# What the value checks cost\n\nEach op checks its inputs for NaN / Inf (and ranges) in its C++ entry: "
            "one pass per small input; `masked_gram`'s J through the Grams' diagonals, `panda_grad`'s Z through the "
            "loss and `soft_threshold`'s X inside its kernel's pass (so it has no row here). The op call includes "
            f"the checks; the third column times the checks alone on the same inputs ({THREADS} thread).\n\n"
            + table)
    harness.write_result("checks", text, args.out_dir)


if __name__ == "__main__":
    main()
