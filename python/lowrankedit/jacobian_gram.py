"""Jacobian Grams of an image region and its background, from batched forward-mode products.

``J`` is the Jacobian of the (optionally resized, channel-averaged) image with respect to the flattened latent code,
``(rows, D)``. Its columns ``J e_k`` come from Jacobian-vector products, a chunk of one-hot tangents at a time
(``torch.func.jvp`` under ``torch.func.vmap``): ``D`` forward passes for a ``D``-dimensional latent instead of one
backward pass per output pixel. The two Grams then come from one pass of :func:`lowrankedit.ops.masked_gram`.
"""
import ctypes
import math
import mmap
import time

import torch
import torch.nn.functional as F

from . import distributed
from . import validation as V
from .gram import Gram
from .models.protocol import check_generator, fingerprint, latent_space
from .ops.masked_gram import masked_gram
from .region import Region

MODES = ("auto", "forward", "row_blocks", "double_vjp", "matrix_free")
#: ``max_memory`` used when none is given: the bound on the bytes any step may hold (the D = 9216 target is 4 GiB).
DEFAULT_MAX_MEMORY = 4 << 30
#: ``mode="auto"``: row blocks (one forward pass over all tangents per block) up to this many passes; beyond it the
#: matrix-free route (one forward and two reverse passes' work) is cheaper.
MAX_ROW_PASSES = 2
#: Bytes of Jacobian columns (one chunk of tangents' outputs) the default ``chunk`` aims for.
CHUNK_BYTES = 64 << 20
#: Most tangents per chunk by default (each tangent also carries its own activations through the generator).
MAX_CHUNK = 128
#: The plan counts the probe's measured activation bytes times this: the peaks of identical forward passes differ
#: by up to 15% (which thread allocates when); measured on a 256-px ``stylegan2``, 45 chunks of 5 tangents.
ACTIVATION_MARGIN = 1.25


def jacobian_gram(G, latent, region, *, size=None, fuse_channels=True, chunk=None, mode="auto", max_memory=None,
                  progress=True):
    """Grams ``Jf^T Jf / n_fg`` and ``Jb^T Jb / n_bg`` of a region and its background.

    Parameters
    ----------
    G : generator
        Anything with ``latent_shape`` and a differentiable ``synthesize(latents) -> (n, C, H, W)``.
    latent : torch.Tensor
        One code ``(*latent_shape)`` or a batch ``(n, *latent_shape)``; the Grams of a batch are averaged over its
        images. Floating point and finite. Moved to the generator's device and dtype when ``G`` is an ``nn.Module``.
    region : lowrankedit.Region
        The region (a box or a soft mask), resampled to the differentiated image's resolution. Row ``p`` gets weight
        ``m_p`` in the foreground Gram and ``1 - m_p`` in the background Gram.
    size : int or (int, int), optional
        Resize the image (nearest neighbour) to this size before differentiating, as the official code does (256).
    fuse_channels : bool
        Average the channels (one row per pixel, as LowRankGAN) or keep them (one row per pixel and channel).
    chunk : int, optional
        Tangents per batched product; default: as many as keep a chunk's output near 64 MiB, at most 128.
    mode : {"auto", "forward", "row_blocks", "double_vjp", "matrix_free"}
        ``"forward"``: Jacobian columns by forward-mode products, then :func:`~lowrankedit.ops.masked_gram`.
        ``"row_blocks"``: the same, holding only a block of the Jacobian's rows at a time (one pass over all
        tangents per block), the Grams accumulated block by block.
        ``"double_vjp"``: the same columns from two reverse passes (the JVP of the linear map ``u -> J^T u``), for
        modules without forward-mode support (custom autograd functions). ``"matrix_free"``: Gram columns
        ``G e_k = J^T (w * (J e_k))`` per chunk, never holding ``J``. ``"auto"``: the first of forward, row_blocks
        (up to ``MAX_ROW_PASSES`` passes) and matrix_free whose step fits ``max_memory``; double_vjp where forward
        mode fails. The choice and its reason are recorded in ``Gram.meta``.
    max_memory : int, optional
        Bytes any step may hold (default 4 GiB): the Jacobian (or its row block), one chunk's tangents, outputs
        and activations (measured: the peak's slope between a 1- and an 8-tangent probe, and what one pass holds
        whatever its width, both times ``ACTIVATION_MARGIN``), and the Gram accumulators. The chunk is shrunk to
        fit; a plan that cannot fit even with one tangent per chunk raises ``MemoryError`` before anything large
        is allocated.
    progress : bool
        Show a tqdm bar over chunks.

    Returns
    -------
    lowrankedit.Gram
        ``fg``, ``bg`` ``(D, D)`` symmetric, in the generator's dtype (float32 for a float32 generator); ``n_fg``,
        ``n_bg`` the (soft) row counts of one image; ``meta`` with ``mode``, ``mode_reason``, ``jvp``, ``chunk``,
        ``rows``, ``image_size``, ``size``, ``fuse_channels``, ``n_images``, ``region``, ``generator``, ``seconds``,
        ``max_memory``, ``planned_bytes`` (the step bound the plan met), ``peak_bytes`` (measured: the CUDA
        allocator's peak, or the process's peak resident memory on the CPU, above the level at the start; ``None``
        where it cannot be measured), ``peak_measured_by``, ``row_passes``, ``activation_bytes_per_tangent`` and
        ``activation_bytes_per_pass`` (as planned: measured, times ``ACTIVATION_MARGIN``).

    Notes
    -----
    With mask ``m`` (repeated over channels when ``fuse_channels=False``), ``n_fg = sum(m)``, ``n_bg = sum(1 - m)``:
    ``fg = J^T diag(m) J / n_fg`` and ``bg = J^T diag(1 - m) J / n_bg``, each Gram divided by its own row count as in
    the official LowRankGAN/ReSeFa code, averaged over the images of a batch.

    Under an initialized ``torch.distributed`` process group the ranks share the work (whole faces; face and tangent
    chunk pairs in ``"matrix_free"`` mode) and all-reduce the float64 partial Grams: every rank returns the same
    Gram (:mod:`lowrankedit.distributed`).

    Examples
    --------
    >>> import lowrankedit
    >>> G = lowrankedit.models.dcgan_digiface()
    >>> g = lowrankedit.jacobian_gram(G, G.sample_latents(1)[0], lowrankedit.models.dcgan_mouth_region(),
    ...                               progress=False)
    >>> g.fg.shape, g.n_fg, g.meta["mode"]
    (torch.Size([100, 100]), 336.0, 'forward')
    """
    t_start = time.perf_counter()
    check_generator(G, who="jacobian_gram")
    if not isinstance(region, Region):
        raise TypeError(f"jacobian_gram: expected region to be a lowrankedit.Region, got {type(region).__name__}")
    V.choice(mode, "mode", "jacobian_gram", MODES)
    V.boolean(fuse_channels, "fuse_channels", "jacobian_gram")
    V.boolean(progress, "progress", "jacobian_gram")
    latent_shape = V.shape(G.latent_shape, "G.latent_shape", "jacobian_gram")
    lat = _check_latent(G, latent, latent_shape)
    size = _check_size(size)
    D = math.prod(latent_shape)

    def rows_of(flat):
        """Flat latent ``(D,)`` -> image rows ``(R,)``."""
        x = G.synthesize(flat.reshape(1, *latent_shape))
        if size is not None:
            x = F.interpolate(x, size=size, mode="nearest")
        x = x[0]
        return x.mean(0).reshape(-1) if fuse_channels else x.reshape(-1)

    with torch.no_grad():
        probe = G.synthesize(lat[:1])
        if size is not None:
            probe = F.interpolate(probe, size=size, mode="nearest")
    if not isinstance(probe, torch.Tensor) or probe.dim() != 4:
        raise ValueError(f"jacobian_gram: expected G.synthesize to return (n, C, H, W), got {V._got(probe)}")
    V.tensor(probe, "the images G.synthesize(latent) returned", "jacobian_gram")
    C, h, w = (int(s) for s in probe.shape[1:])
    dtype, device = probe.dtype, probe.device
    m = region.mask(h, w, dtype=torch.float64, device=device).reshape(-1)
    if not fuse_channels:
        m = m.repeat(C)
    n_fg, n_bg = float(m.sum()), float((1 - m).sum())
    if n_fg <= 0:
        raise ValueError(f"jacobian_gram: region {region!r} has no pixels inside at the differentiated size {h}x{w}")
    if n_bg <= 0:
        raise ValueError(f"jacobian_gram: region {region!r} has no pixels outside (empty background) at the "
                         f"differentiated size {h}x{w}")
    R = m.numel()
    elem = torch.empty((), dtype=dtype).element_size()
    limit = DEFAULT_MAX_MEMORY if max_memory is None else _check_max_memory(max_memory)
    user_chunk = chunk is not None
    chunk = _check_chunk(chunk, D, R, elem)

    # Forward mode available? (and the activation bytes one tangent carries)
    jvp = "double_vjp" if mode == "double_vjp" else "forward"
    note = None
    err = _forward_mode_error(rows_of, lat[0].reshape(-1), min(D, 2), jvp)
    if err is not None:
        if mode in ("forward", "row_blocks"):
            raise err
        jvp = "double_vjp"
        note = f"forward mode failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}); JVPs from two VJPs"
        _forward_mode_error(rows_of, lat[0].reshape(-1), min(D, 2), jvp)  # warm, as the forward check above is
    act, per_pass = (int(b * ACTIVATION_MARGIN) for b in _activation_bytes(rows_of, lat[0].reshape(-1), D, jvp, device))
    act = max(R * elem, act)

    def step(route, passes, c):
        return _step_bytes(route, passes, R, D, elem, act, c, accumulators=_accumulates(route, passes, lat.shape[0]),
                           per_pass=per_pass)

    # Pick the route and the chunk: the first route whose step fits the bound.
    if mode == "auto":
        candidates = ["forward"] + [("row_blocks", p) for p in range(2, MAX_ROW_PASSES + 1)] + ["matrix_free"]
    elif mode == "row_blocks":
        candidates = [("row_blocks", p) for p in range(2, -(-R * D * elem // max(1, limit)) + 2)] or [("row_blocks", 2)]
    else:
        candidates = [mode]
    choice = None
    for cand in candidates:
        route_c, passes = cand if isinstance(cand, tuple) else (cand, 1)
        c = _fit_chunk(lambda c: step(route_c, passes, c), chunk, user_chunk, limit)
        if c is not None:
            choice = (route_c, passes, c)
            break
    if choice is None:
        route_c, passes = candidates[-1] if isinstance(candidates[-1], tuple) else (candidates[-1], 1)
        need = step(route_c, passes, chunk if user_chunk else 1)
        raise MemoryError(
            f"jacobian_gram: no step of mode={mode!r} fits max_memory={limit} bytes: the smallest plan "
            f"({route_c}, {passes} pass(es), chunk {chunk if user_chunk else 1}) needs {need} bytes for a ({R}, {D}) "
            f"Jacobian ({elem}-byte entries, {act} activation bytes per tangent and {per_pass} per pass); raise "
            "max_memory, or reduce the image size (size=) or the latent dimension")
    route, passes, chunk = choice
    accumulate = _accumulates(route, passes, lat.shape[0])
    planned = step(route, passes, chunk)
    if mode == "auto":
        jac_bytes = R * D * elem
        reason = ("forward-mode products supported" if route == "forward" else
                  f"the ({R}, {D}) Jacobian needs {jac_bytes} bytes; with the Grams and a chunk the step exceeds "
                  f"max_memory={limit}")
    else:
        reason = "requested"
    if note is not None:
        if route == "forward":
            route, reason = "double_vjp", note
        else:
            reason = f"{reason}; {note}"

    w_rows = m.to(dtype)
    nchunks = -(-D // chunk)
    if accumulate:
        fg = torch.zeros(D, D, dtype=torch.float64, device=device)
        bg = torch.zeros(D, D, dtype=torch.float64, device=device)
    work = distributed.work_items(lat.shape[0], nchunks, by_chunk=route == "matrix_free")  # {face: [chunk, ...]}
    steps = sum(len(c) * (1 if route == "matrix_free" else passes) for c in work.values())
    bar = _bar(steps, f"jacobian_gram[{route}]", distributed.show_progress(progress))
    with _PeakMemory(device) as peak:
        try:
            for i, chunks in work.items():
                flat = lat[i].reshape(-1).detach()
                if route == "matrix_free":
                    G_in, G_out = _matrix_free(rows_of, flat, w_rows, chunk, jvp, bar, chunks)
                    fg += G_in.double() / n_fg
                    bg += G_out.double() / n_bg
                    del G_in, G_out
                    continue
                for r0, r1 in _row_blocks(R, passes):  # row blocks bound J's memory (one pass each)
                    J = torch.empty(r1 - r0, D, dtype=dtype, device=device)
                    for k0, cols in _columns(rows_of, flat, chunk, jvp):
                        J[:, k0:k0 + cols.shape[0]] = cols[:, r0:r1].mT
                        del cols
                        bar.update(1)
                    try:  # the op refuses NaN / Inf in J: say what that means for the caller's generator
                        G_in, G_out = masked_gram(J[None], w_rows[r0:r1])
                    except ValueError as exc:
                        raise ValueError(f"jacobian_gram: expected G's derivatives at latent {i} to be finite (its "
                                         f"images or their derivatives are NaN or Inf there): {exc}") from None
                    del J
                    if accumulate:
                        fg += G_in[0].double() / n_fg
                        bg += G_out[0].double() / n_bg
                    else:  # the one partial pair is the result
                        fg, bg = G_in[0].div_(n_fg), G_out[0].div_(n_bg)
                    del G_in, G_out
        finally:
            bar.close()
    n = lat.shape[0]
    if accumulate:
        if distributed.active():  # other ranks' shares
            fg, bg = distributed.all_reduce_sum(torch.stack([fg, bg]), "jacobian_gram").unbind(0)
        fg, bg = fg.div_(n).to(dtype), bg.div_(n).to(dtype)
    for name, t in (("fg", fg), ("bg", bg)):
        V.finite_values(t, f"the {name} Gram (G's images or their derivatives are NaN or Inf for some latent)",
                        "jacobian_gram")
    meta = {
        "method": "jacobian_gram", "mode": route, "mode_reason": reason, "jvp": jvp, "chunk": chunk, "rows": R,
        "image_size": [h, w], "size": list(size) if size is not None else None, "fuse_channels": fuse_channels,
        "n_images": int(n), "region": region.to_dict(), "generator": fingerprint(G),
        "latent_space": latent_space(G), "latent_shape": list(latent_shape),
        "seconds": time.perf_counter() - t_start, "world_size": distributed.world_size(),
        "max_memory": int(limit), "planned_bytes": int(planned),
        "peak_bytes": peak.bytes, "peak_measured_by": peak.source, "row_passes": int(passes),
        "activation_bytes_per_tangent": int(act), "activation_bytes_per_pass": int(per_pass),
    }
    return Gram(fg, bg, n_fg, n_bg, latent_shape, meta)


# ----------------------------------------------------------------------------------------------------------------
# Jacobian columns


def _one_hot(k0, k1, D, like):
    E = torch.zeros(k1 - k0, D, dtype=like.dtype, device=like.device)
    E[torch.arange(k1 - k0), torch.arange(k0, k1)] = 1
    return E


def _columns(rows_of, flat, chunk, jvp, chunks=None):
    """Yield ``(k0, J[:, k0:k0+c]^T)`` as ``(c, R)`` blocks, by forward mode or by two reverse passes; only the
    chunks numbered in ``chunks`` (all by default)."""
    D = flat.numel()
    starts = range(0, D, chunk) if chunks is None else [k * chunk for k in chunks]
    if jvp == "forward":
        def jvp_one(t):
            return torch.func.jvp(rows_of, (flat,), (t,))[1]
        products = torch.func.vmap(jvp_one)
    else:  # double_vjp: g(u) = J^T u is linear in u, so the VJP of g with cotangent t is J t.
        with torch.enable_grad():
            z = flat.clone().requires_grad_(True)
            y = rows_of(z)
            u = torch.zeros_like(y, requires_grad=True)
            (g,) = torch.autograd.grad(y, z, u, create_graph=True)

        def products(E):
            with torch.enable_grad():
                return _batched_grad(g, u, E)
    for k0 in starts:
        yield k0, products(_one_hot(k0, min(D, k0 + chunk), D, flat))
        if flat.device.type == "cpu":  # the last pass's freed activations: not held while the next one runs
            _release_free_heap()


def _batched_grad(out, inp, cotangents):
    """``(c, *out.shape)`` cotangents -> ``(c, *inp.shape)`` VJPs; batched by vmap, one at a time where it fails."""
    try:
        (res,) = torch.autograd.grad(out, inp, cotangents, retain_graph=True, is_grads_batched=True)
        return res
    except (RuntimeError, NotImplementedError):
        return torch.stack([torch.autograd.grad(out, inp, c, retain_graph=True)[0] for c in cotangents])


def _matrix_free(rows_of, flat, w_rows, chunk, jvp, bar, chunks=None):
    """Gram columns ``J^T (w * (J e_k))`` and ``J^T ((1 - w) * (J e_k))`` per chunk; ``J`` is never held. With
    ``chunks``, only those chunks' columns (the rest zero): the symmetrized parts add up to the whole Gram."""
    D = flat.numel()
    G_in = torch.zeros(D, D, dtype=w_rows.dtype, device=w_rows.device)
    G_out = torch.zeros_like(G_in)
    with torch.enable_grad():
        z = flat.clone().requires_grad_(True)
        y = rows_of(z)
        for k0, cols in _columns(rows_of, flat, chunk, jvp, chunks):
            c = cols.shape[0]
            cot = torch.cat([cols * w_rows, cols * (1 - w_rows)])  # (2c, R)
            g = _batched_grad(y, z, cot)  # (2c, D)
            G_in[:, k0:k0 + c] = g[:c].mT
            G_out[:, k0:k0 + c] = g[c:].mT
            bar.update(1)
    return (G_in + G_in.mT) / 2, (G_out + G_out.mT) / 2


def _forward_mode_error(rows_of, flat, c, jvp="forward"):
    """``None`` when ``c`` products of kind ``jvp`` run on this generator, else the exception they raise."""
    try:
        next(_columns(rows_of, flat, c, jvp))
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        return exc
    return None


# ----------------------------------------------------------------------------------------------------------------
# Memory: the plan (bytes one step holds) and the measurement

def _activation_bytes(rows_of, flat, D, jvp, device):
    """``(per_tangent, per_pass)``: the bytes a forward pass's peak grows by per tangent, and what it holds
    whatever its width (the primal activations, the image); ``(0, 0)`` where the peak cannot be measured.

    The slope between a 1- and an 8-tangent probe (``D`` where ``D < 8``), so that what a pass holds once is not
    counted once per tangent, and wide enough that the peaks' noise (tens of MiB at 1024 px) is a small share of
    it. Each probe starts from a trimmed heap (:func:`_release_free_heap`). Call it after a warm call: a first
    call's lazy imports and thread pools are no pass's memory."""
    sizes = (1, min(D, 8)) if D > 1 else (1,)
    peaks = []
    for c in sizes:
        with _PeakMemory(device) as peak:
            _forward_mode_error(rows_of, flat, c, jvp)
        if peak.bytes is None:
            return 0, 0
        peaks.append(peak.bytes)
    if len(peaks) == 1:
        return peaks[0], 0
    per_tangent = max(0, peaks[1] - peaks[0]) // (sizes[1] - sizes[0])
    return per_tangent, max(0, peaks[0] - per_tangent)


def _accumulates(route, passes, n_images):
    """Whether partial Gram pairs are summed, in float64 accumulators: more than one image, row block, process or
    tangent chunk (matrix-free). Otherwise the one pair the op returns is the result (at D = 9216 the accumulators
    would be 1.4 GB of the 4 GiB default bound)."""
    return route == "matrix_free" or passes > 1 or n_images > 1 or distributed.active()


def _step_bytes(route, passes, R, D, elem, act, chunk, *, accumulators=True, per_pass=0):
    """Bytes one step holds: the float64 accumulators (where partial Grams are summed) and one image's Gram pair,
    plus the route's Jacobian (or row block) and one chunk of tangents (one-hot inputs, outputs, activations ``act``
    each, and ``per_pass`` per forward pass)."""
    held = (2 * D * D * 8 if accumulators else 0) + 2 * D * D * elem + per_pass  # Grams, and what a pass holds once
    if route == "matrix_free":
        # the retained graph of one forward pass, the chunk's columns, their 2c cotangents and 2c VJPs
        return held + act + chunk * (3 * R * elem + 2 * D * elem + 2 * act)
    rows = -(-R // passes)
    return held + rows * D * elem + chunk * (D * elem + R * elem + act)


def _fit_chunk(step, chunk, given, limit):
    """The largest chunk ``<= chunk`` whose ``step(chunk)`` bytes fit ``limit`` (only ``chunk`` itself when the
    user ``given`` it), or ``None``."""
    if step(chunk) <= limit:
        return chunk
    if given:
        return None
    lo, hi = 1, chunk  # the step grows with the chunk: bisect
    if step(lo) > limit:
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if step(mid) <= limit else (lo, mid - 1)
    return lo


def _row_blocks(R, passes):
    size = -(-R // passes)
    return [(r0, min(R, r0 + size)) for r0 in range(0, R, size)]


class _PeakMemory:
    """Peak bytes allocated inside the block above the level at its start: the CUDA caching allocator's peak, or
    on the CPU the process's peak resident set (Linux: ``VmHWM``, reset through ``/proc/self/clear_refs``).
    ``bytes`` is ``None`` where neither is available, or where the resident peak is not tracked (a sandbox that
    accepts the reset but never moves ``VmHWM``): no number beats a wrong one in the Gram's record."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        self.bytes, self.source = None, None

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize(self.device_index())
            torch.cuda.reset_peak_memory_stats(self.device_index())
            self.start = torch.cuda.memory_allocated(self.device_index())
        elif _resident_peak_is_tracked():
            _release_free_heap()
            _reset_resident_peak()
            self.start = _proc_status("VmRSS")
        else:
            self.start = None
        return self

    def device_index(self):
        return torch.cuda.current_device()

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize(self.device_index())
            self.bytes = int(torch.cuda.max_memory_allocated(self.device_index()) - self.start)
            self.source = "cuda allocator peak"
        elif self.start is not None:
            hwm = _proc_status("VmHWM")
            if hwm is not None:
                self.bytes, self.source = max(0, hwm - self.start), "process peak resident memory (VmHWM)"
        return False


def _release_free_heap():
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim``; nothing elsewhere). Without it a
    process that has run a large step before keeps those pages resident, and the next step reuses them without
    moving the resident peak: a warm process measured half the activation bytes of a fresh one."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None


def _reset_resident_peak():
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current resident set


_PEAK_TRACKED = None


def _resident_peak_is_tracked():
    """Whether resetting and reading ``VmHWM`` works here: some kernels and sandboxes accept the reset but keep
    ``VmHWM`` frozen or equal to ``VmRSS``. Checked once per process with 16 MiB of freshly mapped, touched pages."""
    global _PEAK_TRACKED
    if _PEAK_TRACKED is None:
        size = 16 << 20
        try:
            _reset_resident_peak()
            start = _proc_status("VmRSS")
            probe = mmap.mmap(-1, size)
            try:
                for offset in range(0, size, mmap.PAGESIZE):
                    probe[offset] = 1
            finally:
                probe.close()
            hwm = _proc_status("VmHWM")
            _PEAK_TRACKED = start is not None and hwm is not None and hwm - start >= size * 3 // 4
        except (OSError, ValueError):
            _PEAK_TRACKED = False
    return _PEAK_TRACKED


def _proc_status(key):
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# ----------------------------------------------------------------------------------------------------------------
# Argument checks


def _check_latent(G, latent, latent_shape):
    V.tensor(latent, "latent", "jacobian_gram", finite=False)
    shape = tuple(latent.shape)
    if shape == latent_shape:
        lat = latent[None]
    elif len(shape) == len(latent_shape) + 1 and shape[1:] == latent_shape:
        lat = latent
    else:
        s = ", ".join(map(str, latent_shape))
        raise ValueError(f"jacobian_gram: expected latent of shape ({s}) or (n, {s}), got {shape}")
    if lat.shape[0] == 0:
        raise ValueError("jacobian_gram: expected at least one latent code, got an empty batch")
    V.finite_values(lat, "latent", "jacobian_gram")
    if isinstance(G, torch.nn.Module):
        p = next(iter(G.parameters()), None)
        if p is not None and p.is_floating_point():
            lat = lat.to(device=p.device, dtype=p.dtype)
    return lat.detach()


def _check_size(size):
    if size is None:
        return None
    h, w = V.shape(size if not isinstance(size, int) or isinstance(size, bool) else (size, size), "size",
                   "jacobian_gram", ndim=2)
    return (h, w)


def _check_chunk(chunk, D, R, elem):
    if chunk is None:
        return max(1, min(D, MAX_CHUNK, CHUNK_BYTES // max(1, R * elem)))
    return min(V.integer(chunk, "chunk", "jacobian_gram", min=1), D)


def _check_max_memory(max_memory):
    limit = V.positive(max_memory, "max_memory", "jacobian_gram")
    if not limit.is_integer():
        raise V.ArgumentError(f"jacobian_gram: expected max_memory to be a whole number of bytes, got {max_memory!r}")
    return int(limit)


def _bar(total, desc, progress):
    from tqdm.auto import tqdm

    # the default bar format shows elapsed and remaining time (the ETA) from the known total
    return tqdm(total=total, desc=desc, disable=not progress, leave=False, unit="chunk")
