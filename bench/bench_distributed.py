"""Benchmark: a 16-face DCGAN Gram on 1 process and on 2 gloo ranks (127.0.0.1), one thread each.

Checks agreement first (the 2-rank Gram against the 1-process one), then prints both wall times with the ratio and
writes ``bench/results/distributed.md``. Each configuration is timed ``--repeats`` times, alternating, and reported
as median (min); the per-face cost measured here is what the written 8-GPU estimate in the table file rests on.

    python bench/bench_distributed.py [--faces 16] [--repeats 2]
    python -m pytest bench/bench_distributed.py --benchmark-only
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
RESULTS = os.path.join(ROOT, "bench", "results", "distributed.md")


def _worker(out, faces):
    """One rank (or the single process): time jacobian_gram over ``faces`` DCGAN faces, after a barrier."""
    import lowrankedit as le
    import lowrankedit.distributed as dist

    torch.set_num_threads(1)
    if "RANK" in os.environ:
        dist.init(timeout_s=600)
    G = le.models.dcgan_digiface()
    z, mouth = G.sample_latents(faces, seed=0), le.models.dcgan_mouth_region()
    le.jacobian_gram(G, z[:1], mouth, progress=False)  # warm-up (first-call costs), one face
    dist.wait_all("bench start")
    t0 = time.perf_counter()
    gram = le.jacobian_gram(G, z, mouth, progress=False)
    dist.wait_all("bench end")
    seconds = time.perf_counter() - t0
    if dist.rank() == 0:
        torch.save({"fg": gram.fg, "bg": gram.bg, "seconds": seconds, "world": dist.world_size(),
                    "mode": gram.meta["mode"]}, out)
    os._exit(0)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(nproc, faces, out):
    """Wall time of the timed section (rank 0's) and the Gram, for ``nproc`` processes (1: no process group)."""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"), OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    port = str(_free_port())
    procs = []
    for r in range(nproc):
        e = dict(env)
        if nproc > 1:
            e.update(RANK=str(r), WORLD_SIZE=str(nproc), LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen([sys.executable, __file__, "--worker", out, "--faces", str(faces)], env=e))
    codes = [p.wait() for p in procs]
    if codes != [0] * nproc:
        raise RuntimeError(f"bench_distributed: ranks exited with {codes}")
    return torch.load(out, weights_only=False)


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.faces)
        return
    tmp = os.path.join(tempfile.mkdtemp(prefix="bench_distributed_"), "gram.pt")
    load_before = os.getloadavg()
    times = {1: [], 2: []}
    grams = {}
    try:
        for _ in range(args.repeats):
            for n in (1, 2):
                res = run(n, args.faces, tmp)
                times[n].append(res["seconds"])
                grams[n] = res
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    load_after = os.getloadavg()
    err = max(_rel(grams[2]["fg"], grams[1]["fg"]), _rel(grams[2]["bg"], grams[1]["bg"]))
    if err > 1e-6:
        raise AssertionError(f"bench_distributed: the 2-rank Gram differs from the 1-process one by {err:.1e}")
    med = {n: statistics.median(t) for n, t in times.items()}
    lo = {n: min(t) for n, t in times.items()}
    rows = [
        "| processes (1 thread each) | seconds, median (min) | per face | speed-up vs 1 process "
        "| rel. diff vs 1 process |",
        "|---|---|---|---|---|",
        f"| 1 (no process group) | {med[1]:.2f} ({lo[1]:.2f}) | {med[1] / args.faces:.3f} | 1.00x | - |",
        f"| 2 (gloo, 127.0.0.1) | {med[2]:.2f} ({lo[2]:.2f}) | {med[2] / args.faces:.3f} | "
        f"{med[1] / med[2]:.2f}x | {err:.1e} |",
    ]
    header = (f"# jacobian_gram over {args.faces} DCGAN faces (64x64, z in R^100, mouth box, route "
              f"{grams[1]['mode']}), 1 vs 2 processes, CPU float32\n\n"
              f"torch {torch.__version__}, {os.cpu_count()} CPU cores, 1 thread per process; {args.repeats} runs of "
              f"each, alternating. Load average (1, 5, 15 min) before: {', '.join(f'{v:.1f}' for v in load_before)}; "
              f"after: {', '.join(f'{v:.1f}' for v in load_after)}: the machine was shared with other jobs.\n\n"
              f"Command: `python bench/bench_distributed.py --faces {args.faces} --repeats {args.repeats}`\n")
    table = "\n".join(rows)
    print(header)
    print(table)
    old = open(RESULTS).read() if os.path.exists(RESULTS) else ""
    marker = "<!-- measured -->"
    estimate = old.split(marker, 2)[2] if old.count(marker) >= 2 else "\n"
    with open(RESULTS, "w") as fh:
        fh.write(f"{marker}\n{header}\n{table}\n{marker}{estimate}")
    return json.dumps({"times": times, "err": err})


def test_bench_distributed_two_ranks(benchmark):
    """Two ranks, 2 faces (the full table: ``python bench/bench_distributed.py``)."""
    tmp = os.path.join(tempfile.mkdtemp(prefix="bench_distributed_"), "gram.pt")
    try:
        res = benchmark.pedantic(run, args=(2, 2, tmp), rounds=1, iterations=1)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    assert res["world"] == 2


if __name__ == "__main__":
    main()
