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


def generalized_eigh(A, B, tau=1e-3, normalize="unit"):
    """Eigenpairs of ``A x = lambda (B + tau tr(B) I) x`` in float64, the obvious way: ``B' = sym(B) + tau tr(B) I``,
    ``L = cholesky(B')``, ``Li = inv(L)``, ``eigh(Li sym(A) Li^T)``, ``x = Li^T y``; largest first; columns of unit
    norm (``normalize="unit"``) or ``X^T B' X = I`` (``"B"``), each column's largest-magnitude entry positive.
    ``A``, ``B``: ``(..., D, D)`` -> ``(eigenvalues (..., D), eigenvectors (..., D, D))``."""
    A, B = A.double(), B.double()
    A, B = (A + A.mT) / 2, (B + B.mT) / 2
    eye = torch.eye(A.shape[-1], dtype=torch.float64, device=A.device)
    Bp = B + float(tau) * B.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None] * eye
    Li = torch.linalg.inv(torch.linalg.cholesky(Bp))
    w, Y = torch.linalg.eigh(Li @ A @ Li.mT)
    X = (Li.mT @ Y).flip(-1)
    w = w.flip(-1)
    idx = X.abs().argmax(dim=-2, keepdim=True)
    X = X * torch.where(X.gather(-2, idx) < 0, -1.0, 1.0).double()
    if normalize == "unit":
        X = X / X.norm(dim=-2, keepdim=True)
    return w, X


def resefa_official(fg, bg, tau=0.0):
    """ReSeFa's official route (``compute_direction.py``): ``M_back += tau tr(M_back) I`` (only with ``--full_rank``,
    so ``tau = 0`` by default), then the general ``np.linalg.eig(inv(M_back) @ M_fore)``, real parts, sorted by
    descending real eigenvalue; returns ``(eigenvalues (D,), eigenvectors (D, D) unit-norm columns)`` as NumPy
    float64 arrays."""
    import numpy as np

    fg = np.asarray(fg.detach().cpu().double().numpy())
    bg = np.asarray(bg.detach().cpu().double().numpy())
    if tau:
        bg = bg + tau * np.trace(bg) * np.eye(bg.shape[0])
    w, V = np.linalg.eig(np.linalg.inv(bg) @ fg)
    w, V = w.real, V.real
    order = np.argsort(-w)
    return w[order], V[:, order]
