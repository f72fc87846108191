"""Work shared over two gloo ranks on 127.0.0.1 equals the single-process result; a dead rank is named, not waited for.

The ranks are separate processes (tests/distributed_worker.py) started once per scenario; the single-process
references are computed here, from the same inputs.
"""
import glob
import os
import socket
import subprocess
import sys

import pytest
import torch

import lowrankedit as le
import lowrankedit.distributed as dist
import distributed_worker as worker

pytestmark = pytest.mark.usefixtures("one_thread")  # the references; the ranks run with OMP_NUM_THREADS=1

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.join(os.path.dirname(HERE), "python")


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([PYTHON_DIR, HERE]), OMP_NUM_THREADS="1",
               GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1")
    env.update(extra)
    return env


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_ranks(scenario, out, world=2, limit_s=300):  # a guard against hangs (a run takes 20-40 s)
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "distributed_worker.py"), scenario, str(out)],
                              env=_env(RANK=str(r), WORLD_SIZE=str(world), LOCAL_RANK=str(r), MASTER_PORT=port),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(world)]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=limit_s)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"{scenario}: the ranks did not end within {limit_s} s")
    return [p.returncode for p in procs], logs


@pytest.fixture(scope="module")
def equal_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist_equal")
    codes, logs = _run_ranks("equal", out)
    assert codes == [0, 0], "\n".join(logs)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("key", ["gram", "gram_mf"])
def test_gram_equals_single_process(equal_run, key):
    G, z, region = worker.gram_inputs()
    if key == "gram":
        ref = le.jacobian_gram(G, z, region, progress=False)
    else:
        ref = le.jacobian_gram(G, z[:1], region, mode="matrix_free", chunk=worker.MF_CHUNK, progress=False)
    for res in equal_run[1]:
        g = res[key]
        assert g.meta["world_size"] == 2 and g.meta["mode"] == ref.meta["mode"]
        assert _rel(g.fg, ref.fg) < 1e-6, (key, res["rank"], _rel(g.fg, ref.fg))
        assert _rel(g.bg, ref.bg) < 1e-6, (key, res["rank"], _rel(g.bg, ref.bg))
    r0, r1 = (res[key] for res in equal_run[1])
    assert torch.equal(r0.fg, r1.fg) and torch.equal(r0.bg, r1.bg)  # every rank returns the same Gram


def test_batched_rpca_equals_single_process(equal_run):
    M, lamb = worker.rpca_inputs()
    L_ref, S_ref, info_ref = le.ops.rpca(M, lamb)
    for res in equal_run[1]:
        L, S, info = res["rpca"]
        assert L.shape == M.shape
        for b in range(M.shape[0]):  # per matrix, the ranks having solved different ones
            assert _rel(L[b], L_ref[b]) < 1e-10, (res["rank"], b)
            assert _rel(S[b], S_ref[b]) < 1e-10, (res["rank"], b)
        for k in ("iterations", "converged", "rank", "lamb"):
            assert torch.equal(info[k], info_ref[k]), (res["rank"], k, info[k], info_ref[k])


def test_a_failing_share_fails_every_rank(equal_run):
    r0, r1 = (res["bad"] for res in equal_run[1])
    assert r1[0] == "ValueError" and "rpca: expected M to be finite" in r1[1], r1  # the rank's own error
    assert r0[0] == "DistributedError", r0  # the other rank names it instead of waiting at the gather
    assert "shard_batched(rpca): rank 1 failed: ValueError: rpca: expected M to be finite" in r0[1], r0


def test_batched_generalized_eigh_equals_single_process(equal_run):
    w_ref, X_ref = le.ops.generalized_eigh(*worker.eigh_inputs())
    for res in equal_run[1]:
        w, X = res["eigh"]
        for b in range(w_ref.shape[0]):
            assert _rel(w[b], w_ref[b]) < 1e-12 and _rel(X[b], X_ref[b]) < 1e-10, (res["rank"], b)


def test_panda_equals_single_process(equal_run):
    pa = worker.panda_run(*worker.panda_inputs())
    for res in equal_run[1]:
        A, P, history = res["panda"]
        assert _rel(A, pa.appearances) < 1e-9, (res["rank"], _rel(A, pa.appearances))
        assert _rel(P, pa.parts) < 1e-9, (res["rank"], _rel(P, pa.parts))
        assert history == pytest.approx(pa.meta["history"], rel=1e-9)


def test_output_written_once_all_finished(equal_run):
    out, results = equal_run
    assert torch.equal(torch.load(out / "result.pt"), results[0]["gram"].fg)
    assert sorted(os.listdir(out)) == ["rank0.pt", "rank1.pt", "result.pt"]  # no partial file left


def test_dead_rank_is_named_within_the_timeout(tmp_path):
    codes, logs = _run_ranks("kill", tmp_path)
    assert codes == [0, 3], "\n".join(logs)
    res = torch.load(tmp_path / "rank0.pt", weights_only=False)
    assert not res["ok"]
    assert "jacobian_gram: rank 1 of 2 did not arrive and gave no sign of life" in res["error"], res["error"]
    # rank 0 waited from the end of its share (or rank 1's death, if later): the timeout plus at most a heartbeat
    # interval (timeout / 4) and polling, with slack for a loaded machine
    with open(tmp_path / "died_at") as fh:
        died_at = float(fh.read())
    waited = res["failed_at"] - max(died_at, res["share_done_at"])
    assert 0 < waited < 1.75 * worker.TIMEOUT_S, (waited, res)
    assert not glob.glob(str(tmp_path / "result*")), os.listdir(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["died_at", "rank0.pt"]  # nothing written, not even partly


def test_launch_runs_torchrun(tmp_path):
    code = dist.launch(["launch", str(tmp_path)], 2, module="distributed_worker", env=_env(), timeout_s=30)
    assert code == 0
    for r in range(2):
        res = torch.load(tmp_path / f"rank{r}.pt", weights_only=False)
        assert (res["rank"], res["world"], res["sum"]) == (r, 2, 3.0)
        assert res["master_addr"] in ("localhost", "127.0.0.1")  # --standalone: the rendezvous stays on loopback


def test_split_is_a_partition():
    for n in (0, 1, 5, 16):
        for world in (1, 2, 3, 8):
            shares = [dist.split(n, r, world) for r in range(world)]
            assert [i for s in shares for i in s] == list(range(n)), (n, world)
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_without_a_process_group_it_is_the_single_process_code(tmp_path):
    assert not dist.active() and dist.world_size() == 1 and dist.rank() == 0 and not dist.launched()
    assert dist.work_items(2, 3, by_chunk=True) == {0: [0, 1, 2], 1: [0, 1, 2]}
    t = torch.ones(3)
    assert dist.all_reduce_sum(t) is t
    dist.atomic_write_if_all_finished(tmp_path / "x.pt", lambda p: torch.save(t, p))
    assert torch.equal(torch.load(tmp_path / "x.pt"), t) and os.listdir(tmp_path) == ["x.pt"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="nproc"):
        dist.launch([], 0)
    with pytest.raises(TypeError, match="argv"):
        dist.launch("discover", 2)
    with pytest.raises(ValueError, match="seconds"):
        dist.set_timeout(-1)


def test_failed_write_leaves_no_file(tmp_path):
    def broken(p):
        with open(p, "w") as fh:
            fh.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        dist.atomic_write_if_all_finished(tmp_path / "x.pt", broken)
    assert os.listdir(tmp_path) == []
