"""Two builds of lowrankedit against each other, op by op: is any op slower than in an earlier version?

Each build runs in its own persistent worker process (``PYTHONPATH=<tree>/python``, ``--threads`` threads, default
one), and the two are asked in turn for a burst of calls of the same case, alternating which goes first, so that a
busy spell of a shared machine hits both alike. A case's figure is the minimum burst mean over the rounds. The
public API used here (``lowrankedit.ops.masked_gram``, ``panda_grad``, ``generalized_eigh``, ``soft_threshold``,
``rpca``) is the same in every version since the first, so an old tree needs only its own build
(``python setup.py build_ext --inplace``).

    python bench/bench_builds.py OLD_TREE NEW_TREE [--rounds 6] [--threads 1] [--cases masked_gram panda_grad ...]

Writes ``bench/results/builds.md`` (or ``--out-dir``). ``rpca`` rows also give each build's iteration count and its
error to the planted low-rank part.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import harness


def _planted(n, rank=10, frac=0.05, seed=0, sparse_size=5.0, l_scale=None):
    """bench_rpca's planted problem (``sparse_size`` 5, ``L0 = U U^T / rank``), or another scale of it."""
    import torch

    g = torch.Generator().manual_seed(seed)
    U = torch.randn(n, rank, dtype=torch.float64, generator=g)
    L0 = U @ U.T / (rank if l_scale is None else l_scale)
    mask = torch.triu(torch.rand(n, n, generator=g) < frac)
    mask = mask | mask.T
    vals = (torch.rand(n, n, generator=g, dtype=torch.float64) * 2 - 1) * sparse_size
    vals = torch.triu(vals) + torch.triu(vals, 1).T
    return L0 + torch.where(mask, vals, torch.zeros((), dtype=torch.float64)), L0


def _cases():
    """name -> (make, calls per burst); make() returns the call, which may return a dict of extra figures."""
    import torch
    from lowrankedit import ops

    def masked_gram(B, P, D, soft=False):
        g = torch.Generator().manual_seed(0)
        J = torch.randn(B, P, D, generator=g)
        w = torch.rand(B, P, generator=g)
        w = w.clamp(1e-3, 1 - 1e-3) if soft else (w > 0.9).float()
        return lambda: ops.masked_gram(J, w)

    def panda_grad(N, C, S, Rc, Rs):
        g = torch.Generator().manual_seed(0)
        Z = torch.rand(N, C, S, generator=g)
        A = torch.linalg.qr(torch.randn(C, Rc, generator=g))[0]
        P = torch.rand(S, Rs, generator=g) * 0.01
        return lambda: ops.panda_grad(Z, A, P)

    def generalized_eigh(D):
        g = torch.Generator().manual_seed(0)
        scale = torch.logspace(0, -2, D, dtype=torch.float64)
        Jf = torch.randn(D // 4, D, generator=g, dtype=torch.float64) * scale
        Jb = torch.randn(2 * D, D, generator=g, dtype=torch.float64) * scale
        A, B = Jf.T @ Jf, Jb.T @ Jb
        return lambda: ops.generalized_eigh(A, B, 1e-3)

    def soft_threshold(n):
        X = torch.randn(n, dtype=torch.float64)
        return lambda: ops.soft_threshold(X, 0.1)

    def rpca(n, **planted):
        M, L0 = _planted(n, **planted)

        def call():
            L, _, info = ops.rpca(M)
            return {"iterations": int(info["iterations"].reshape(-1)[0]),
                    "err": float((L - L0).norm() / L0.norm())}
        return call

    return {
        "masked_gram (1, 4096, 100) region": (lambda: masked_gram(1, 4096, 100), 200),
        "masked_gram (1, 4096, 100) soft": (lambda: masked_gram(1, 4096, 100, soft=True), 200),
        "masked_gram (4, 4096, 512) region": (lambda: masked_gram(4, 4096, 512), 5),
        "panda_grad block3 shape (16, 128, 256), ranks (128, 8)": (lambda: panda_grad(16, 128, 256, 128, 8), 50),
        "panda_grad block4 shape (16, 64, 1024), ranks (64, 8)": (lambda: panda_grad(16, 64, 1024, 64, 8), 30),
        "generalized_eigh D = 512": (lambda: generalized_eigh(512), 3),
        "soft_threshold 1e6 entries": (lambda: soft_threshold(10 ** 6), 50),
        "soft_threshold 100 entries": (lambda: soft_threshold(100), 2000),
        "rpca planted n = 512 (bench_rpca's)": (lambda: rpca(512), 1),
        "rpca planted n = 512, L0 / 51.2, sparse <= 0.05": (lambda: rpca(512, sparse_size=0.05, l_scale=512), 1),
    }


def worker():
    """Reads case names on stdin; answers each with one burst's mean time (ms) and the call's extra figures."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))  # the parent's --threads
    cases, made = _cases(), {}
    for line in sys.stdin:
        name = line.strip()
        if name == "?names":  # the parent imports no build, so it asks a worker for the case list
            print(json.dumps(list(cases)), flush=True)
            continue
        if name not in made:
            made[name] = (cases[name][0](), cases[name][1])
        call, n = made[name]
        extra = call()  # warm-up (and the extra figures)
        t0 = time.perf_counter()
        for _ in range(n):
            call()
        print(json.dumps({"ms": (time.perf_counter() - t0) / n * 1e3,
                          "extra": extra if isinstance(extra, dict) else None}), flush=True)


def _spawn(tree):
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(tree), "python"))
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd=os.path.dirname(os.path.abspath(tree)))


def _commit(tree):
    out = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "?"


def main():
    if "--worker" in sys.argv:
        return worker()
    threads = harness.pin_threads(1)  # --threads N: this process and, through the environment, both workers
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of both workers")
    ap.add_argument("--cases", nargs="*", default=None, help="substrings of case names (default: all)")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args()
    workers = {"old": _spawn(args.old), "new": _spawn(args.new)}

    def ask(which, name):
        workers[which].stdin.write(name + "\n")
        workers[which].stdin.flush()
        line = workers[which].stdout.readline()
        if not line:
            raise RuntimeError(f"the {which} build's worker ({getattr(args, which)}) died on case {name!r}")
        return json.loads(line)

    names = [n for n in ask("new", "?names") if not args.cases or any(c in n for c in args.cases)]

    rows = []
    for name in names:
        best, extra = {"old": float("inf"), "new": float("inf")}, {}
        for r in range(args.rounds):
            for which in (("old", "new") if r % 2 == 0 else ("new", "old")):
                out = ask(which, name)
                best[which] = min(best[which], out["ms"])
                extra[which] = out["extra"]
        note = ""
        if extra["old"]:
            note = (f"iterations {extra['old']['iterations']} -> {extra['new']['iterations']}; error to L0 "
                    f"{extra['old']['err']:.1e} -> {extra['new']['err']:.1e}")
        rows.append([name, f"{best['old']:.3f}", f"{best['new']:.3f}", f"{best['new'] / best['old']:.2f}", note])
        print(" | ".join(rows[-1]), flush=True)
    for w in workers.values():
        w.stdin.close()
        w.wait()
    text = "\n".join([
        "# Two builds, op by op",
        "",
        f"Old = `{args.old}` at "
        f"{_commit(args.old)}, new = `{args.new}` at {_commit(args.new)}. {threads} thread(s) each; the two workers "
        "alternate bursts of the same case; each figure is the minimum burst mean over the rounds (ms per call).",
        "",
        harness.markdown_table(["case", "old (ms)", "new (ms)", "new / old", "notes"], rows),
    ])
    print(harness.write_result("builds", text, args.out_dir or harness.RESULTS_DIR))


if __name__ == "__main__":
    main()
