"""Sharing the work of one run across the ranks of a ``torch.distributed`` process group.

Nothing here starts processes of its own or schedules anything: ``torchrun`` (``torch.distributed.run``) starts the
ranks, :func:`init` joins the process group, and the library's functions then split their work by rank:

* :func:`lowrankedit.jacobian_gram` splits its ``(face, tangent chunk)`` work items over the ranks and all-reduces
  the partial Grams in float64 (:func:`work_items`, :func:`all_reduce_sum`);
* batched :func:`lowrankedit.ops.rpca` and :func:`lowrankedit.ops.generalized_eigh` solve a share of the matrices
  on each rank and gather the results (:func:`shard_batched`);
* :func:`lowrankedit.panda` is data-parallel over the samples of each batch (:func:`panda_step`: the op's own step,
  its sums over the batch all-reduced).

Every rank returns the same result, equal to the single-process one up to float64 summation order. Without an
initialized process group (or with one rank) every function here is the identity of the single-process code.

Faults. Every rank runs a heartbeat thread that writes a counter into the process group's key-value store. Before
each collective, a rank marks its arrival in the store and waits for the others; a rank that has neither arrived nor
heartbeated for :func:`timeout` seconds is reported by number (:class:`DistributedError`), instead of the others
hanging. :func:`atomic_write_if_all_finished` writes an output file only once every rank has finished.

The collectives run on the device of the tensors: gloo for CPU tensors, NCCL for CUDA tensors (``init`` asks for
``"cpu:gloo,cuda:nccl"`` when a GPU is visible), on one code path.
"""
import atexit
import datetime
import math
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import torch

#: Seconds without a sign of life after which a rank counts as dead (``LOWRANKEDIT_DIST_TIMEOUT`` overrides it).
DEFAULT_TIMEOUT_S = 600.0
_PREFIX = "lowrankedit"

_state = {"timeout": None, "group": None, "seq": 0, "heartbeat": None, "heartbeat_thread": None, "generation": 0}
_local = threading.local()


class DistributedError(RuntimeError):
    """A rank died, hung or failed; the message names it and the collective the others were waiting at."""


# ----------------------------------------------------------------------------------------------------------------
# Process group


def init(backend=None, *, timeout_s=None):
    """Join the process group described by the environment (``torchrun`` sets it), unless one is initialized.

    Parameters
    ----------
    backend : str, optional
        Default: ``"cpu:gloo,cuda:nccl"`` when a GPU is visible (each collective runs where its tensors are), else
        ``"gloo"``.
    timeout_s : float, optional
        Seconds a rank may go without a sign of life before the others fail (:func:`set_timeout`); also the process
        group's own collective timeout. Default ``LOWRANKEDIT_DIST_TIMEOUT`` or 600.

    Returns
    -------
    (int, int)
        ``(rank, world_size)``.
    """
    import torch.distributed as dist

    if timeout_s is not None:
        set_timeout(timeout_s)
    if not dist.is_available():
        raise RuntimeError("lowrankedit.distributed.init: this torch build has no torch.distributed")
    if not dist.is_initialized():
        for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise RuntimeError(f"lowrankedit.distributed.init: environment variable {var} is not set; start the "
                                   f"ranks with torchrun (python -m torch.distributed.run --standalone "
                                   f"--nproc-per-node N ...) or lowrankedit.distributed.launch")
        if backend is None:
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        if "nccl" in backend and torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout()))
    active()  # starts the heartbeat now, before any work, so a slow first share is not taken for a dead rank
    return rank(), world_size()


def set_timeout(seconds):
    """Set the seconds a rank may go without a sign of life (arrival or heartbeat) before the others fail."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (0 < seconds < math.inf):
        raise ValueError(f"lowrankedit.distributed.set_timeout: expected a positive finite number of seconds, "
                         f"got {seconds!r}")
    _state["timeout"] = float(seconds)


def timeout():
    """The current fault timeout in seconds."""
    if _state["timeout"] is None:
        env = os.environ.get("LOWRANKEDIT_DIST_TIMEOUT")
        set_timeout(float(env) if env else DEFAULT_TIMEOUT_S)
    return _state["timeout"]


def _initialized():
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def world_size():
    """Ranks of the default process group (1 without one)."""
    import torch.distributed as dist

    return dist.get_world_size() if _initialized() else 1


def rank():
    """This process's rank (0 without a process group)."""
    import torch.distributed as dist

    return dist.get_rank() if _initialized() else 0


def active():
    """Whether work is shared now: an initialized process group of two or more ranks, outside :func:`local_only`.

    The first call that finds a process group starts this rank's heartbeat (:func:`init` calls it)."""
    on = not getattr(_local, "off", False) and _initialized() and world_size() > 1
    if on:
        _group_key()
    return on


def show_progress(progress):
    """``progress`` on rank 0, ``False`` on the other ranks (one progress bar per run, not one per rank)."""
    return bool(progress) and (not active() or rank() == 0)


@contextmanager
def local_only():
    """Run the enclosed calls on this rank alone (what each rank does with its own share)."""
    prev = getattr(_local, "off", False)
    _local.off = True
    try:
        yield
    finally:
        _local.off = prev


# ----------------------------------------------------------------------------------------------------------------
# Splitting work


def split(n, r=None, world=None):
    """Rank ``r``'s contiguous share ``range(lo, hi)`` of ``n`` items; the first ``n % world`` ranks get one more.

    Deterministic: every rank computes every other rank's share without asking."""
    r = rank() if r is None else r
    world = world_size() if world is None else world
    base, extra = divmod(int(n), world)
    lo = r * base + min(r, extra)
    return range(lo, lo + base + (1 if r < extra else 0))


def work_items(n_faces, n_chunks, by_chunk):
    """This rank's share of a Gram's work: ``{face: [chunk, ...]}``.

    ``by_chunk``: split the ``n_faces * n_chunks`` items (face-major, so a rank's items sit in few faces); otherwise
    whole faces (a face's Jacobian must be held whole to form its Gram). Without sharing: everything."""
    if not active():
        return {f: list(range(n_chunks)) for f in range(n_faces)}
    mine = {}
    if by_chunk:
        for item in split(n_faces * n_chunks):
            mine.setdefault(item // n_chunks, []).append(item % n_chunks)
    else:
        for f in split(n_faces):
            mine[f] = list(range(n_chunks))
    return mine


# ----------------------------------------------------------------------------------------------------------------
# Liveness: heartbeats and arrival barriers in the store


def _store():
    from torch.distributed import distributed_c10d as c10d

    return c10d._get_default_store()


def _group_key():
    import torch.distributed as dist

    pg = dist.group.WORLD
    if _state["group"] is not pg:  # a new process group: new keys, a new heartbeat
        _state.update(group=pg, seq=0, generation=_state["generation"] + 1)
        _start_heartbeat()
    return f"{_PREFIX}/g{_state['generation']}"


def _start_heartbeat():
    store, key, me = _store(), f"{_PREFIX}/g{_state['generation']}/hb/{rank()}", rank()
    stop = threading.Event()
    old = _state["heartbeat"]
    if old is not None:
        old.set()

    def beat():
        n = 0
        while not stop.is_set():
            n += 1
            try:
                store.set(key, str(n))
            except Exception:  # the store is gone: the waiters report it
                return
            stop.wait(min(5.0, timeout() / 4))

    thread = threading.Thread(target=beat, name=f"lowrankedit-heartbeat-{me}", daemon=True)
    thread.start()
    if _state["heartbeat_thread"] is None:
        atexit.register(_stop_heartbeat)
    _state["heartbeat"], _state["heartbeat_thread"] = stop, thread


def _stop_heartbeat():
    """At exit, stop the heartbeat and wait for it: a daemon thread still inside the store's C++ ``set`` while the
    interpreter finalizes aborts the process (seen as an intermittent SIGABRT of a rank that had finished)."""
    stop, thread = _state["heartbeat"], _state["heartbeat_thread"]
    if stop is not None:
        stop.set()
    if thread is not None:
        thread.join(timeout=10.0)


def _lost_store(tag, exc):
    return DistributedError(
        f"{tag}: rank {rank()} lost the process group's key-value store ({type(exc).__name__}: {exc}); it lives in "
        f"rank 0 (env:// start) or in the torchrun agent, so rank 0 or the launcher died")


def wait_all(tag):
    """Barrier with a fault timeout: returns once every rank has arrived here; raises :class:`DistributedError`
    naming the first rank that has neither arrived nor heartbeated for :func:`timeout` seconds. The arrivals are
    marked in the store (which names the missing rank); a ``torch.distributed`` barrier follows.

    Every rank must call the same sequence of barriers (as with any collective)."""
    if not active():
        return
    base, me, world = _group_key(), rank(), world_size()
    k = _state["seq"] = _state["seq"] + 1
    store = _store()
    keys = [f"{base}/arrive/{k}/{r}" for r in range(world)]
    try:
        store.set(keys[me], "1")
        t0 = last_check = time.monotonic()
        seen = {r: (None, t0) for r in range(world)}  # last heartbeat value and when it changed
        pause = 1e-3
        while not store.check(keys):
            now = time.monotonic()
            if now - last_check >= 0.25:
                last_check = now
                for r in range(world):
                    if r == me or store.check([keys[r]]):
                        continue
                    hk = f"{base}/hb/{r}"
                    hb = store.get(hk) if store.check([hk]) else None
                    if hb != seen[r][0]:
                        seen[r] = (hb, now)
                    elif now - seen[r][1] > timeout():
                        raise DistributedError(
                            f"{tag}: rank {r} of {world} did not arrive and gave no sign of life for "
                            f"{timeout():.0f} s (it died or hangs); rank {me} stops waiting")
            time.sleep(pause)
            pause = min(0.05, pause * 2)
    except DistributedError:
        raise
    except Exception as exc:
        raise _lost_store(tag, exc) from exc
    # Everyone has arrived. End with a real barrier too, so that no rank leaves (and, on rank 0, takes the store with
    # it) while another is still polling the store.
    _collective(tag, _barrier)
    if k > 1:  # everyone passed barrier k - 1: its key is no longer read
        try:
            store.delete_key(f"{base}/arrive/{k - 1}/{me}")
        except Exception:  # only tidiness
            pass


def _barrier():
    import torch.distributed as dist

    if "nccl" in str(dist.get_backend()).lower():
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def _comm_device(t):
    """Where a collective on ``t`` runs: the tensor's device, unless the backend only serves one kind."""
    import torch.distributed as dist

    backend = str(dist.get_backend()).lower()
    if "nccl" in backend and "gloo" not in backend:
        return torch.device("cuda", torch.cuda.current_device())
    if "gloo" in backend and "nccl" not in backend:
        return torch.device("cpu")
    return t.device


def _collective(tag, fn):
    try:
        return fn()
    except Exception as exc:
        raise DistributedError(f"{tag}: the collective failed on rank {rank()} ({type(exc).__name__}: {exc}); a "
                               f"peer probably died") from exc


def all_reduce_sum(t, tag="all_reduce_sum"):
    """Sum of ``t`` over the ranks, accumulated in float64, returned in ``t``'s dtype and device on every rank."""
    if not active():
        return t
    import torch.distributed as dist

    wait_all(tag)
    buf = t.detach().to(device=_comm_device(t), dtype=torch.float64).contiguous()
    _collective(tag, lambda: dist.all_reduce(buf))
    return buf.to(device=t.device, dtype=t.dtype)


def agree(tag, error=None):
    """Every rank learns whether any rank failed: re-raises ``error`` where it happened, and a
    :class:`DistributedError` naming the failed rank on the others."""
    if not active():
        if error is not None:
            raise error
        return
    import torch.distributed as dist

    wait_all(tag)
    msgs = [None] * world_size()
    mine = None if error is None else f"{type(error).__name__}: {error}"
    _collective(tag, lambda: dist.all_gather_object(msgs, mine))
    if error is not None:
        raise error
    for r, m in enumerate(msgs):
        if m is not None:
            raise DistributedError(f"{tag}: rank {r} failed: {m}")


# ----------------------------------------------------------------------------------------------------------------
# Data-parallel sums and sharded batches


def _leaves(tree, out):
    if isinstance(tree, torch.Tensor):
        out.append(tree)
    elif isinstance(tree, dict):
        for v in tree.values():
            _leaves(v, out)
    elif isinstance(tree, (tuple, list)):
        for v in tree:
            _leaves(v, out)
    return out


def _rebuild(tree, it):
    if isinstance(tree, torch.Tensor):
        return next(it)
    if isinstance(tree, dict):
        return type(tree)((k, _rebuild(v, it)) for k, v in tree.items())
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # namedtuple
        return type(tree)(*(_rebuild(v, it) for v in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(_rebuild(v, it) for v in tree)
    return tree


def batch_sum(fn, Z, *args, tag=None, **kwargs):
    """``fn(Z, ...)`` for a ``fn`` that sums over the samples ``Z[i]`` (every tensor it returns is such a sum),
    computed on this rank's share of ``Z`` (dim 0) and all-reduced in float64: the same value on every rank.

    Use it around a batch's loss and gradient, e.g. ``batch_sum(panda_grad, Zb, A, P)``. Without sharing it is
    ``fn(Z, *args, **kwargs)``."""
    if not active():
        return fn(Z, *args, **kwargs)
    tag = tag or f"batch_sum({getattr(fn, '__name__', 'fn')})"
    share = split(Z.shape[0])
    with local_only():
        if len(share):
            out = fn(Z[share.start:share.stop], *args, **kwargs)
            scale = 1.0
        else:  # fewer samples than ranks: a zero contribution of the right shapes
            out, scale = fn(Z[:1], *args, **kwargs), 0.0
    leaves = _leaves(out, [])
    flat = torch.cat([x.detach().reshape(-1).double() for x in leaves]) * scale
    total = all_reduce_sum(flat, tag)
    parts, i = [], 0
    for x in leaves:
        parts.append(total[i:i + x.numel()].reshape(x.shape).to(x.dtype))
        i += x.numel()
    return _rebuild(out, iter(parts))


def should_shard(*batched, core_dims=2):
    """Whether a call on these batched tensors (batch dims before the last ``core_dims``) is shared now."""
    if not (all(isinstance(t, torch.Tensor) and t.dim() > core_dims for t in batched) and active()):
        return False
    shape = batched[0].shape[:-core_dims]
    # mismatched batches are left to the op, whose own checks say what is wrong
    return math.prod(shape) > 1 and all(t.shape[:-core_dims] == shape for t in batched)


def shard_batched(fn, batched, *args, core_dims=2, per_matrix=(), tag=None, **kwargs):
    """``fn(*batched, *args, **kwargs)`` for a ``fn`` independent per matrix, each rank solving a contiguous share
    of the matrices; the results are gathered so that every rank returns the full result.

    Parameters
    ----------
    fn : callable
        Batched over the leading dims of ``batched``; returns tensors (in tuples, namedtuples, dicts) whose leading
        dims are the batch dims (those are gathered) or anything else (taken from this rank).
    batched : tuple of torch.Tensor
        Inputs sharing the batch shape ``t.shape[:-core_dims]``.
    per_matrix : tuple of str
        Names of ``kwargs`` that may hold one value per matrix (a tensor of the batch shape); they are split too.

    Notes
    -----
    A rank whose share is empty (fewer matrices than ranks) solves matrix 0 and contributes nothing. A rank whose
    share raises makes every rank raise (:func:`agree`). The ``progress`` keyword, if given, is kept on rank 0 only.
    """
    if not active():
        return fn(*batched, *args, **kwargs)
    import torch.distributed as dist

    tag = tag or f"shard_batched({getattr(fn, '__name__', 'fn')})"
    batch_shape = tuple(batched[0].shape[:-core_dims])
    B = math.prod(batch_shape)
    flat = [t.reshape(B, *t.shape[t.dim() - core_dims:]) for t in batched]
    share = split(B)
    lo, hi = (share.start, share.stop) if len(share) else (0, 1)
    kw = dict(kwargs)
    for name in per_matrix:
        v = kw.get(name)
        if isinstance(v, torch.Tensor) and v.numel() > 1:
            kw[name] = v.reshape(B)[lo:hi] if v.numel() == B else v
    if "progress" in kw:
        kw["progress"] = show_progress(kw["progress"])
    out, error = None, None
    try:
        with local_only():
            out = fn(*(t[lo:hi] for t in flat), *args, **kw)
    except Exception as exc:  # every rank must learn of it, or the others wait at the gather
        error = exc
    agree(tag, error)
    ran, world = hi - lo, world_size()
    counts = [len(split(B, r, world)) for r in range(world)]
    width = max(counts)
    wait_all(tag)
    gathered = []
    for x in _leaves(out, []):
        if x.dim() == 0 or x.shape[0] != ran:
            gathered.append(x)
            continue
        dev = _comm_device(x)
        y = x.detach().to(dev)
        y = y.to(torch.uint8) if y.dtype == torch.bool else y
        pad = torch.zeros(width, *y.shape[1:], dtype=y.dtype, device=dev)
        pad[:len(share)] = y[:len(share)]
        bufs = [torch.empty_like(pad) for _ in range(world)]
        _collective(tag, lambda: dist.all_gather(bufs, pad))
        full = torch.cat([b[:c] for b, c in zip(bufs, counts)]).to(device=x.device, dtype=x.dtype)
        gathered.append(full.reshape(*batch_shape, *x.shape[1:]))
    return _rebuild(out, iter(gathered))


def panda_step(Z, A, P, lr_parts, lr_appearances=None, *, line_search=False, max_backtracks=40):
    """:func:`lowrankedit.ops.panda_step` with the batch's samples shared over the ranks.

    Each rank runs the op's own step (the C++ rule: trials, Armijo test, halving) on its share of ``Z``, with every
    sum over the batch (the loss of each trial, the two gradients) completed by an all-reduce in float64, so each rank
    takes the same step as one process holding the whole batch. Without sharing it is the op."""
    from ._ext import _C
    from .ops.panda_grad import PandaStep, _lr_value, panda_step as step_op

    if not active():
        return step_op(Z, A, P, lr_parts, lr_appearances, line_search=line_search, max_backtracks=max_backtracks)
    lr_parts = _lr_value("panda_step", "lr_parts", lr_parts)
    lr_appearances = lr_parts if lr_appearances is None else _lr_value("panda_step", "lr_appearances",
                                                                       lr_appearances)
    share = split(Z.shape[0])
    # fewer samples than ranks: this rank adds a zero contribution of the right shapes
    Zs, scale = (Z[share.start:share.stop], 1.0) if len(share) else (Z[:1], 0.0)

    def reduce(x):
        return all_reduce_sum(x.double() * scale if scale != 1.0 else x, "panda_step").to(x.dtype)

    A1, P1, loss, new_loss, lr_P, lr_A = _C.panda_step_reduced(Zs.detach(), A.detach(), P.detach(), lr_parts,
                                                               lr_appearances, bool(line_search),
                                                               int(max_backtracks), reduce)
    return PandaStep(A1, P1, loss, new_loss, float(lr_P), float(lr_A))


# ----------------------------------------------------------------------------------------------------------------
# Output files and the launcher


def atomic_write_if_all_finished(path, write, tag="write"):
    """Write an output file once every rank has finished: ``write(tmp_path)`` on rank 0, then an atomic rename.

    All ranks call it at the end of their work. If a rank died or failed before, this raises
    :class:`DistributedError` (or that rank's error) and nothing is written; a failed write leaves no partial file.
    When it returns, the file exists (on every rank's view of a shared file system). Without a process group it
    writes at once.

    Parameters
    ----------
    path : str or os.PathLike
    write : callable
        ``write(p)`` writes the file at path ``p`` (e.g. ``directions.save``).
    """
    path = os.fspath(path)
    wait_all(f"{tag}: all ranks finished")
    error = None
    if rank() == 0:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        root, ext = os.path.splitext(path)
        tmp = f"{root}.partial-{os.getpid()}{ext}"
        try:
            write(tmp)
            os.replace(tmp, path)
        except Exception as exc:
            error = exc
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    agree(f"{tag}: {path}", error)


def launched():
    """Whether this process is one of the ranks a launcher started (torchrun sets ``RANK`` and ``WORLD_SIZE``):
    the command line then calls :func:`init` instead of launching again."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def launch(argv, nproc, *, module="lowrankedit", env=None, timeout_s=None):
    """Run ``python -m <module> <argv...>`` on ``nproc`` local ranks under torchrun and return its exit code.

    ``python -m torch.distributed.run --standalone --nproc-per-node N -m module argv...``; the ranks then call
    :func:`init`. Single node only: gloo and NCCL are pointed at the loopback interface unless the environment says
    otherwise (``GLOO_SOCKET_IFNAME``, ``NCCL_SOCKET_IFNAME``).

    Parameters
    ----------
    argv : list of str
        Arguments after the module (e.g. ``["discover", "--method", "resefa", ...]``).
    nproc : int
        Ranks to start (>= 1), e.g. one per GPU.
    module : str
        The module torchrun runs in every rank.
    env : dict, optional
        Extra environment variables.
    timeout_s : float, optional
        Fault timeout of the ranks (``LOWRANKEDIT_DIST_TIMEOUT``).
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"lowrankedit.distributed.launch: expected nproc to be an int >= 1, got {nproc!r}")
    if isinstance(argv, str) or not all(isinstance(a, str) for a in argv):
        raise TypeError(f"lowrankedit.distributed.launch: expected argv as a list of str, got {argv!r}")
    e = dict(os.environ)
    e.setdefault("GLOO_SOCKET_IFNAME", "lo")
    e.setdefault("NCCL_SOCKET_IFNAME", "lo")
    if timeout_s is not None:
        set_timeout(timeout_s)
        e["LOWRANKEDIT_DIST_TIMEOUT"] = str(float(timeout_s))
    e.update(env or {})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", module, *argv]
    return subprocess.run(cmd, env=e).returncode
