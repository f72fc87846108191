"""One rank of the multi-process checks in test_distributed.py: ``python distributed_worker.py SCENARIO OUT_DIR``.

Started twice by the test (RANK 0 and 1, gloo on 127.0.0.1), or under torchrun by ``distributed.launch``. The inputs
are built here, by the same functions the test uses for its single-process references.
"""
import os
import sys
import time
import traceback

import torch

TIMEOUT_S = 10.0  # the fault timeout of these runs (short: the fault test waits for it)
MF_CHUNK = 34  # matrix-free Gram of D = 100: chunks of 34, 34, 32, shared 2 + 1


def gram_inputs():
    import lowrankedit as le

    G = le.models.dcgan_digiface()
    return G, G.sample_latents(2, seed=1), le.models.dcgan_mouth_region()


def rpca_inputs():
    g = torch.Generator().manual_seed(0)
    U = torch.randn(3, 30, 3, dtype=torch.float64, generator=g)
    S = torch.zeros(3, 30, 30, dtype=torch.float64)
    S[:, 4, 9] = S[:, 9, 4] = 5.0
    M = U @ U.mT + S
    return M, torch.tensor([0.2, 0.25, 0.3], dtype=torch.float64)


def eigh_inputs():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(3, 20, 20, dtype=torch.float64, generator=g)
    Y = torch.randn(3, 20, 40, dtype=torch.float64, generator=g)
    return X + X.mT, Y @ Y.mT


def panda_inputs():
    import lowrankedit as le

    G = le.models.dcgan_digiface()
    with torch.no_grad():
        Z = G.features(G.sample_latents(12, seed=2), "block2")
    return G, Z.double()


def panda_run(G, Z):
    import lowrankedit as le

    return le.panda(G, "block2", ranks=(16, 4), features=Z, batch_size=5, iters=12, dtype=torch.float64,
                    progress=False)


class DyingGenerator:
    """The DCGAN, except that rank ``victim`` exits (as if killed) on synthesis number ``after + 1``, writing the
    time to ``out/died_at``; the other ranks note when they last synthesized (their share's end)."""

    def __init__(self, G, victim, after, out):
        self.G, self.victim, self.after, self.out, self.calls = G, victim, after, out, 0
        self.latent_shape = G.latent_shape
        self.last_call = time.time()

    def synthesize(self, z):
        import lowrankedit.distributed as dist

        self.calls += 1
        if dist.rank() == self.victim and self.calls > self.after:
            with open(os.path.join(self.out, "died_at"), "w") as fh:
                fh.write(repr(time.time()))
            os._exit(3)
        self.last_call = time.time()
        return self.G.synthesize(z)


def main(scenario, out):
    import lowrankedit as le
    import lowrankedit.distributed as dist

    torch.set_num_threads(1)
    r, world = dist.init(timeout_s=TIMEOUT_S)
    result = {"rank": r, "world": world, "ok": True}
    if scenario == "equal":
        G, z, region = gram_inputs()
        result["gram"] = le.jacobian_gram(G, z, region, progress=False)
        result["gram_mf"] = le.jacobian_gram(G, z[:1], region, mode="matrix_free", chunk=MF_CHUNK, progress=False)
        M, lamb = rpca_inputs()
        result["rpca"] = le.ops.rpca(M, lamb)
        bad = M.clone()
        bad[2, 0, 0] = float("nan")  # matrix 2 is rank 1's share (split(3): [0, 1] and [2])
        try:
            le.ops.rpca(bad)
        except Exception as exc:
            result["bad"] = (type(exc).__name__, str(exc))
        result["eigh"] = tuple(le.ops.generalized_eigh(*eigh_inputs()))
        pa = panda_run(*panda_inputs())
        result["panda"] = (pa.appearances, pa.parts, pa.meta["history"])
        dist.atomic_write_if_all_finished(os.path.join(out, "result.pt"), lambda p: torch.save(result["gram"].fg, p))
    elif scenario == "kill":
        G, z, region = gram_inputs()
        # the probe and the forward-mode check take 2 calls; then one base pass per face and one call per chunk
        dying = DyingGenerator(G, victim=1, after=4, out=out)
        try:
            gram = le.jacobian_gram(dying, z[:1], region, mode="matrix_free", chunk=25, progress=False)
            dist.atomic_write_if_all_finished(os.path.join(out, "result.pt"), lambda p: torch.save(gram.fg, p))
        except dist.DistributedError as exc:
            result.update(ok=False, error=str(exc), failed_at=time.time(), share_done_at=dying.last_call)
    elif scenario == "launch":
        result["sum"] = float(dist.all_reduce_sum(torch.tensor([float(r + 1)]))[0])
        result["master_addr"] = os.environ.get("MASTER_ADDR")
    else:
        raise SystemExit(f"distributed_worker: unknown scenario {scenario!r}")
    torch.save(result, os.path.join(out, f"rank{r}.pt"))


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2])
    except BaseException:
        traceback.print_exc()
        raise
    sys.stdout.flush()
    os._exit(0)  # without tearing the process group down in step with the dead peer
