"""Plain-PyTorch float64 references of every op. Slow and obvious on purpose: the tests and benchmarks compare
the kernels against these. Each takes the same arguments as its op and computes in float64."""
import torch


def soft_threshold(X, tau):
    """``sign(X) * max(|X| - tau, 0)`` in float64."""
    X = X.double()
    return torch.sign(X) * torch.clamp(X.abs() - float(tau), min=0)


def jacobian_gram(G, latent, region, size=None, fuse_channels=True):
    """Reference Grams of a region and its background, the obvious way: the full Jacobian in float64 by
    ``torch.func.jacfwd`` (one image at a time), then ``J^T diag(w) J / sum(w)`` and the complement.

    Parameters
    ----------
    G : generator (an ``nn.Module`` is copied to float64; other generators run in their own dtype)
    latent : ``(*latent_shape)`` or ``(n, *latent_shape)``; Grams of a batch are averaged over its images
    region : Region
    size : optional ``(h, w)``: the image is resized (nearest) to it before differentiation
    fuse_channels : average RGB (one row per pixel) or keep channels (three rows per pixel, same weight)

    Returns
    -------
    lowrankedit.Gram with ``fg``, ``bg`` float64 ``(D, D)``, ``n_fg``, ``n_bg`` (row counts of one image).
    """
    import copy

    import torch.nn.functional as F

    from .gram import Gram

    latent_shape = tuple(G.latent_shape)
    Gd = copy.deepcopy(G).double() if isinstance(G, torch.nn.Module) else G
    lat = latent.detach().double()
    if lat.dim() == len(latent_shape):
        lat = lat[None]
    D = 1
    for s in latent_shape:
        D *= s

    def image_rows(flat):
        x = Gd.synthesize(flat.view(1, *latent_shape))
        if size is not None:
            x = F.interpolate(x, size=tuple(size), mode="nearest")
        x = x[0]
        return x.mean(0).reshape(-1) if fuse_channels else x.reshape(-1)

    fg = torch.zeros(D, D, dtype=torch.float64)
    bg = torch.zeros(D, D, dtype=torch.float64)
    for z in lat:
        J = torch.func.jacfwd(image_rows)(z.reshape(-1))  # (rows, D)
        h, w = (size if size is not None else Gd.synthesize(z[None]).shape[-2:])
        m = region.mask(h, w, dtype=torch.float64).reshape(-1)
        if not fuse_channels:
            m = m.repeat(J.shape[0] // m.numel())
        n_fg, n_bg = float(m.sum()), float((1 - m).sum())
        fg += (J * m[:, None]).T @ J / n_fg
        bg += (J * (1 - m)[:, None]).T @ J / n_bg
    k = lat.shape[0]
    return Gram(fg / k, bg / k, n_fg, n_bg, latent_shape, {"method": "reference.jacobian_gram"})


def masked_gram(J, w):
    """``(J^T diag(w) J, J^T diag(1 - w) J)`` in float64; ``J (B, P, D)``, ``w (B, P)`` or ``(P,)``."""
    J = J.double()
    w = w.double()
    if w.dim() == 1:
        w = w.expand(J.shape[0], -1)
    G_in = (J * w[..., None]).mT @ J
    G_out = (J * (1 - w)[..., None]).mT @ J
    return G_in, G_out
