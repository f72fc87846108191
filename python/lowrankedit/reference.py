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


def singular_value_threshold(X, tau):
    """``U diag(max(s - tau, 0)) V^T`` from a full float64 SVD of every matrix in the batch.

    ``X`` is ``(..., m, n)``; ``tau`` a float or a tensor with one value per matrix (the batch shape)."""
    X = X.detach().double()
    tau = torch.as_tensor(tau, dtype=torch.float64, device=X.device)
    U, s, Vh = torch.linalg.svd(X, full_matrices=False)
    s = torch.clamp(s - tau.reshape(*tau.shape, 1), min=0) if tau.dim() else torch.clamp(s - tau, min=0)
    return (U * s.unsqueeze(-2)) @ Vh


def rpca_step(M, L, S, Y, mu, lamb, mu_next):
    """One elementwise robust-PCA half-step in float64, the obvious way (no batching tricks).

    ``M, L, S, Y``: ``(B, N)``; ``mu, lamb, mu_next``: ``(B,)``. Returns ``(S_new, Y_new, A, norms)`` with
    ``S_new = shrink(M - L - Y/mu, lamb/mu)``, ``Y_new = Y + mu (L + S_new - M)``, ``A = M - S_new - Y_new/mu_next``
    and ``norms (B, 2) = (||L + S_new - M||^2, ||S_new - S||^2)``."""
    M, L, S, Y = (t.double() for t in (M, L, S, Y))
    mu, lamb, mu_next = (torch.as_tensor(t, dtype=torch.float64)[:, None] for t in (mu, lamb, mu_next))
    X = M - L - Y / mu
    S_new = torch.sign(X) * torch.clamp(X.abs() - lamb / mu, min=0)
    R = L + S_new - M
    Y_new = Y + mu * R
    A = M - S_new - Y_new / mu_next
    norms = torch.stack([(R * R).sum(1), ((S_new - S) ** 2).sum(1)], dim=1)
    return S_new, Y_new, A, norms


def rpca_official(M, lamb=1 / 60, mu=None, tol=1e-7, max_iter=10000):
    """The official LowRankGAN robust PCA (``RobustPCA.py``), re-written plainly in NumPy float64 for one matrix.

    Principal component pursuit by ADMM with a fixed penalty: ``L = S = Y = 0``,
    ``mu = n1 n2 / (4 ||M||_1)`` with the induced 1-norm (largest absolute column sum); each iteration
    ``L = SVT(M - S - Y/mu, 1/mu)`` (a full SVD), ``S = shrink(M - L - Y/mu, lamb/mu)``, ``Y = Y + mu (L + S - M)``;
    stop when ``||L + S - M||_F <= tol ||M||_F`` or after ``max_iter`` iterations. (The official code writes the
    multiplier with the opposite sign, ``Y' = -Y``; the ``L`` and ``S`` iterates are the same.)

    Returns ``(L, S, iterations)``: float64 tensors ``(n1, n2)`` and an int.
    """
    import numpy as np

    D = M.detach().double().cpu().numpy()
    if mu is None:
        mu = D.shape[0] * D.shape[1] / (4 * np.linalg.norm(D, ord=1))
    mu_inv = 1.0 / mu
    tol_abs = tol * np.linalg.norm(D, ord="fro")
    S = np.zeros_like(D)
    Y = np.zeros_like(D)
    L = np.zeros_like(D)
    err = np.inf
    it = 0
    while err > tol_abs and it < max_iter:
        U, s, Vh = np.linalg.svd(D - S - mu_inv * Y, full_matrices=False)
        L = (U * np.maximum(s - mu_inv, 0.0)) @ Vh
        X = D - L - mu_inv * Y
        S = np.sign(X) * np.maximum(np.abs(X) - lamb * mu_inv, 0.0)
        Y = Y + mu * (L + S - D)
        err = np.linalg.norm(L + S - D, ord="fro")
        it += 1
    return torch.from_numpy(L), torch.from_numpy(S), it


def lowrankgan_official(gram, lamb=1 / 60, relax=0, tol=1e-7, max_iter=10000):
    """The official LowRankGAN direction finding on a ``Gram``, in NumPy float64: :func:`rpca_official` on the
    region and background Grams, ``rank_f = matrix_rank(L_f)``, the first ``rank_f`` right singular vectors of
    ``L_f``, the null space of ``L_b`` spanned by its right singular vectors ``k..D-1`` with
    ``k = min(max(1, rank_b - relax), D - 1)``, each direction projected onto it (Eq. 7) and normalized.

    Returns a dict: ``directions (rank_f, D)``, ``principal (rank_f, D)``, ``singular_values (rank_f,)``,
    ``rank_f``, ``rank_b``, ``L_f``, ``L_b``, ``iterations (fg, bg)``."""
    import numpy as np

    L_f, _, it_f = rpca_official(gram.fg, lamb, tol=tol, max_iter=max_iter)
    L_b, _, it_b = rpca_official(gram.bg, lamb, tol=tol, max_iter=max_iter)
    Lf, Lb = L_f.numpy(), L_b.numpy()
    D = Lf.shape[0]
    _, s_f, Vh_f = np.linalg.svd(Lf)
    rank_f = int(np.linalg.matrix_rank(Lf))
    rank_b = int(np.linalg.matrix_rank(Lb))
    _, _, Vh_b = np.linalg.svd(Lb)
    k = min(max(1, rank_b - relax), D - 1)
    B = Vh_b[k:].T
    principal = Vh_f[:rank_f]
    proj = (B @ (B.T @ principal.T)).T
    proj = proj / np.linalg.norm(proj, axis=1, keepdims=True)
    return {"directions": torch.from_numpy(proj), "principal": torch.from_numpy(principal.copy()),
            "singular_values": torch.from_numpy(s_f[:rank_f].copy()), "rank_f": rank_f, "rank_b": rank_b,
            "L_f": L_f, "L_b": L_b, "iterations": (it_f, it_b)}
