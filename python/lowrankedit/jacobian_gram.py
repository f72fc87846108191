"""Jacobian Grams of an image region and its background, from batched forward-mode products.

``J`` is the Jacobian of the (optionally resized, channel-averaged) image with respect to the flattened latent code,
``(rows, D)``. Its columns ``J e_k`` come from Jacobian-vector products, a chunk of one-hot tangents at a time
(``torch.func.jvp`` under ``torch.func.vmap``): ``D`` forward passes for a ``D``-dimensional latent instead of one
backward pass per output pixel. The two Grams then come from one pass of :func:`lowrankedit.ops.masked_gram`.
"""
import math
import time

import torch
import torch.nn.functional as F

from . import distributed
from . import validation as V
from .gram import Gram
from .models.protocol import check_generator, fingerprint, latent_space
from .ops.masked_gram import masked_gram
from .region import Region

MODES = ("auto", "forward", "double_vjp", "matrix_free")
#: ``max_memory`` used when none is given: larger Jacobians make ``mode="auto"`` go matrix-free.
DEFAULT_MAX_MEMORY = 2 << 30
#: Bytes of Jacobian columns (one chunk of tangents' outputs) the default ``chunk`` aims for.
CHUNK_BYTES = 64 << 20
#: Most tangents per chunk by default (each tangent also carries its own activations through the generator).
MAX_CHUNK = 128


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
    mode : {"auto", "forward", "double_vjp", "matrix_free"}
        ``"forward"``: Jacobian columns by forward-mode products, then :func:`~lowrankedit.ops.masked_gram`.
        ``"double_vjp"``: the same columns from two reverse passes (the JVP of the linear map ``u -> J^T u``), for
        modules without forward-mode support (custom autograd functions). ``"matrix_free"``: Gram columns
        ``G e_k = J^T (w * (J e_k))`` per chunk, never holding ``J``. ``"auto"``: forward, unless forward mode fails
        (then double_vjp) or the Jacobian would exceed ``max_memory`` (then matrix_free); the choice and its reason
        are recorded in ``Gram.meta``.
    max_memory : int, optional
        Bytes the ``(rows, D)`` Jacobian may take in ``"auto"`` mode (default 2 GiB).
    progress : bool
        Show a tqdm bar over chunks.

    Returns
    -------
    lowrankedit.Gram
        ``fg``, ``bg`` ``(D, D)`` symmetric, in the generator's dtype (float32 for a float32 generator); ``n_fg``,
        ``n_bg`` the (soft) row counts of one image; ``meta`` with ``mode``, ``mode_reason``, ``jvp``, ``chunk``,
        ``rows``, ``image_size``, ``size``, ``fuse_channels``, ``n_images``, ``region``, ``generator``, ``seconds``.

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
    chunk = _check_chunk(chunk, D, R, elem)
    jac_bytes = R * D * elem
    limit = DEFAULT_MAX_MEMORY if max_memory is None else _check_max_memory(max_memory)

    # Pick the route.
    if mode == "auto":
        if jac_bytes > limit:
            route, reason = "matrix_free", (f"the ({R}, {D}) Jacobian needs {jac_bytes} bytes > max_memory={limit}")
        else:
            route, reason = "forward", "forward-mode products supported"
        jvp = "forward"
    else:
        route, reason = mode, "requested"
        jvp = "double_vjp" if mode == "double_vjp" else "forward"
    if jvp == "forward" and mode in ("auto", "matrix_free"):
        err = _forward_mode_error(rows_of, lat[0].reshape(-1), min(chunk, 2))
        if err is not None:
            jvp = "double_vjp"
            note = f"forward mode failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}); JVPs from two VJPs"
            if route == "forward":
                route, reason = "double_vjp", note
            else:
                reason = f"{reason}; {note}"

    w_rows = m.to(dtype)
    nchunks = -(-D // chunk)
    fg = torch.zeros(D, D, dtype=torch.float64, device=device)
    bg = torch.zeros(D, D, dtype=torch.float64, device=device)
    work = distributed.work_items(lat.shape[0], nchunks, by_chunk=route == "matrix_free")  # {face: [chunk, ...]}
    bar = _bar(sum(map(len, work.values())), f"jacobian_gram[{route}]", distributed.show_progress(progress))
    try:
        for i, chunks in work.items():
            flat = lat[i].reshape(-1).detach()
            if route == "matrix_free":
                G_in, G_out = _matrix_free(rows_of, flat, w_rows, chunk, jvp, bar, chunks)
            else:
                J = torch.empty(R, D, dtype=dtype, device=device)
                for k0, cols in _columns(rows_of, flat, chunk, jvp):
                    J[:, k0:k0 + cols.shape[0]] = cols.mT
                    bar.update(1)
                try:  # the op refuses NaN / Inf in J: say what that means for the caller's generator
                    G_in, G_out = masked_gram(J[None], w_rows)
                except ValueError as exc:
                    raise ValueError(f"jacobian_gram: expected G's derivatives at latent {i} to be finite (its images "
                                     f"or their derivatives are NaN or Inf there): {exc}") from None
                G_in, G_out = G_in[0], G_out[0]
                del J
            fg += G_in.double() / n_fg
            bg += G_out.double() / n_bg
    finally:
        bar.close()
    fg, bg = distributed.all_reduce_sum(torch.stack([fg, bg]), "jacobian_gram").unbind(0)  # other ranks' shares
    n = lat.shape[0]
    fg, bg = (fg / n).to(dtype), (bg / n).to(dtype)
    for name, t in (("fg", fg), ("bg", bg)):
        V.finite_values(t, f"the {name} Gram (G's images or their derivatives are NaN or Inf for some latent)",
                        "jacobian_gram")
    meta = {
        "method": "jacobian_gram", "mode": route, "mode_reason": reason, "jvp": jvp, "chunk": chunk, "rows": R,
        "image_size": [h, w], "size": list(size) if size is not None else None, "fuse_channels": fuse_channels,
        "n_images": int(n), "region": region.to_dict(), "generator": fingerprint(G),
        "latent_space": latent_space(G), "latent_shape": list(latent_shape),
        "seconds": time.perf_counter() - t_start, "world_size": distributed.world_size(),
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
        batched = torch.func.vmap(jvp_one)
        for k0 in starts:
            yield k0, batched(_one_hot(k0, min(D, k0 + chunk), D, flat))
        return
    # double_vjp: g(u) = J^T u is linear in u, so the VJP of g with cotangent t is J t.
    with torch.enable_grad():
        z = flat.clone().requires_grad_(True)
        y = rows_of(z)
        u = torch.zeros_like(y, requires_grad=True)
        (g,) = torch.autograd.grad(y, z, u, create_graph=True)
        for k0 in starts:
            E = _one_hot(k0, min(D, k0 + chunk), D, flat)
            yield k0, _batched_grad(g, u, E)


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


def _forward_mode_error(rows_of, flat, c):
    """``None`` when forward-mode products run on this generator, else the exception they raise."""
    try:
        next(_columns(rows_of, flat, c, "forward"))
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        return exc
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
    return V.positive(max_memory, "max_memory", "jacobian_gram")


def _bar(total, desc, progress):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, leave=False)
