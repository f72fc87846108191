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


def panda_loss(Z, A, P):
    """PandA's loss ``sum_i ||Z_i - A A^T Z_i P P^T||_F^2`` (paper Eq. 3), formed directly, in float64."""
    Z, A, P = Z.double(), A.double(), P.double()
    R = Z - A @ (A.T @ Z @ P) @ P.T
    return (R * R).sum()


def panda_grad(Z, A, P, dtype=torch.float64, loss=True):
    """``(grad_A, grad_P, loss)`` by the official code's chains (``model.py``, ``decompose``), evaluated left to
    right exactly as written there (so they form ``(N, S, S)`` and ``(N, C, C)`` products) and summed over the batch.

    ``dtype`` is float64 for the tests; the benchmark passes the features' own dtype to time the official chain as
    it runs (``loss=False``: the two gradient chains only, the loss returned as ``None``).
    ``Z (N, C, S)``, ``A (C, Rc)`` (``Uc``), ``P (S, Rs)`` (``Us``).
    """
    z, Uc, Us = Z.to(dtype), A.to(dtype), P.to(dtype)
    zt = torch.transpose(z, 1, 2)
    Us_g = -4 * (zt @ Uc @ Uc.T @ z @ Us) + \
        2 * (Us @ Us.T @ zt @ Uc @ Uc.T @ Uc @ Uc.T @ z @ Us + zt @ Uc @ Uc.T @ Uc @ Uc.T @ z @ Us @ Us.T @ Us)
    Us_g = torch.sum(Us_g, 0)
    Uc_g = -4 * (z @ Us @ Us.T @ zt @ Uc) + \
        2 * (Uc @ Uc.T @ z @ Us @ Us.T @ Us @ Us.T @ zt @ Uc + z @ Us @ Us.T @ Us @ Us.T @ zt @ Uc @ Uc.T @ Uc)
    Uc_g = torch.sum(Uc_g, 0)
    if not loss:
        return Uc_g, Us_g, None
    R = z - Uc @ Uc.T @ z @ Us @ Us.T
    return Uc_g, Us_g, (R * R).sum()


def panda_step(Z, A, P, lr_parts, lr_appearances=None, line_search=False, max_backtracks=40):
    """One iteration of Algorithm 1 in float64 with the official chains: ``P' = max(0, P - lr grad_P(A, P))``, then
    ``A' = A - lr grad_A(A, P')``; with ``line_search``, each block's step is halved from the given size until
    ``L(new) <= L(old) + 1e-4 <grad, new - old>`` (a block with no such step within ``max_backtracks`` halvings is
    left unchanged, step 0). Returns ``(A', P', loss, new_loss, lr_parts_used, lr_appearances_used)``."""
    Z, A, P = Z.double(), A.double(), P.double()
    lr_appearances = lr_parts if lr_appearances is None else lr_appearances
    loss0 = panda_loss(Z, A, P)
    _, gP, _ = panda_grad(Z, A, P)
    P1, used_P, lr = P, 0.0, float(lr_parts)
    for _ in range(max_backtracks + 1):
        Pt = torch.clamp(P - lr * gP, min=0)
        if not line_search or panda_loss(Z, A, Pt) <= loss0 + 1e-4 * (gP * (Pt - P)).sum():
            P1, used_P = Pt, lr
            break
        lr *= 0.5
    loss1 = panda_loss(Z, A, P1)
    gA, _, _ = panda_grad(Z, A, P1)
    A1, used_A, lr = A, 0.0, float(lr_appearances)
    for _ in range(max_backtracks + 1):
        At = A - lr * gA
        if not line_search or panda_loss(Z, At, P1) <= loss1 + 1e-4 * (gA * (At - A)).sum():
            A1, used_A = At, lr
            break
        lr *= 0.5
    return A1, P1, loss0, panda_loss(Z, A1, P1), used_P, used_A
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
def singular_value_threshold(X, tau):
    """``U diag(max(s - tau, 0)) V^T`` from a full float64 SVD of every matrix in the batch.

    ``X`` is ``(..., m, n)``; ``tau`` a float or a tensor with one value per matrix (the batch shape)."""
    X = X.detach().double()
    tau = torch.as_tensor(tau, dtype=torch.float64, device=X.device)
    U, s, Vh = torch.linalg.svd(X, full_matrices=False)
    s = torch.clamp(s - tau.reshape(*tau.shape, 1), min=0) if tau.dim() else torch.clamp(s - tau, min=0)
    return (U * s.unsqueeze(-2)) @ Vh


def rpca_step(M, L, S, Y, mu, lamb, mu_next, alpha=None):
    """One elementwise robust-PCA half-step in float64, the obvious way (no batching tricks).

    ``M, L, S, Y``: ``(B, N)``; ``mu, lamb, mu_next, alpha``: ``(B,)`` (``alpha`` default 1: plain ADMM). With
    ``Lh = alpha L + (1 - alpha)(M - S)``, returns ``(S_new, Y_new, A, norms)``:
    ``S_new = shrink(M - Lh - Y/mu, lamb/mu)``, ``Y_new = Y + mu (Lh + S_new - M)``, ``A = M - S_new - Y_new/mu_next``
    and ``norms (B, 2) = (||L + S_new - M||^2, ||(alpha - 1)(L + S - M) + S_new - S||^2)``."""
    M, L, S, Y = (t.double() for t in (M, L, S, Y))
    if alpha is None:
        alpha = torch.ones(M.shape[0], dtype=torch.float64)
    mu, lamb, mu_next, alpha = (torch.as_tensor(t, dtype=torch.float64)[:, None] for t in (mu, lamb, mu_next, alpha))
    Lh = alpha * L + (1 - alpha) * (M - S)
    X = M - Lh - Y / mu
    S_new = torch.sign(X) * torch.clamp(X.abs() - lamb / mu, min=0)
    R = L + S_new - M
    Y_new = Y + mu * (Lh + S_new - M)
    A = M - S_new - Y_new / mu_next
    D = (alpha - 1) * (L + S - M) + S_new - S
    norms = torch.stack([(R * R).sum(1), (D * D).sum(1)], dim=1)
    return S_new, Y_new, A, norms


def rpca_official(M, lamb=1 / 60, mu=None, tol=1e-7, max_iter=10000, certify=False):
    """The official LowRankGAN robust PCA (``RobustPCA.py``), re-written plainly in NumPy float64 for one matrix.

    Principal component pursuit by ADMM with a fixed penalty: ``L = S = Y = 0``,
    ``mu = n1 n2 / (4 ||M||_1)`` with the induced 1-norm (largest absolute column sum); each iteration
    ``L = SVT(M - S - Y/mu, 1/mu)`` (a full SVD), ``S = shrink(M - L - Y/mu, lamb/mu)``, ``Y = Y + mu (L + S - M)``;
    stop when ``||L + S - M||_F <= tol ||M||_F`` or after ``max_iter`` iterations. (The official code writes the
    multiplier with the opposite sign, ``Y' = -Y``; the ``L`` and ``S`` iterates are the same.)

    ``certify=True`` (not the official rule) also waits for the dual residual ``mu ||S_k - S_{k-1}||_F`` to fall to
    ``tol ||M||_F``: then the iterate satisfies the optimality conditions of the convex problem, as the certified
    default of :func:`lowrankedit.ops.rpca` does (the benchmark's time-to-solution baseline).

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
    err = dual = np.inf
    it = 0
    while (err > tol_abs or (certify and dual > tol_abs)) and it < max_iter:
        U, s, Vh = np.linalg.svd(D - S - mu_inv * Y, full_matrices=False)
        L = (U * np.maximum(s - mu_inv, 0.0)) @ Vh
        X = D - L - mu_inv * Y
        S_old = S
        S = np.sign(X) * np.maximum(np.abs(X) - lamb * mu_inv, 0.0)
        Y = Y + mu * (L + S - D)
        err = np.linalg.norm(L + S - D, ord="fro")
        dual = mu * np.linalg.norm(S - S_old, ord="fro")
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
def masked_gram(J, w):
    """``(J^T diag(w) J, J^T diag(1 - w) J)`` in float64; ``J (B, P, D)``, ``w (B, P)`` or ``(P,)``."""
    J = J.double()
    w = w.double()
    if w.dim() == 1:
        w = w.expand(J.shape[0], -1)
    G_in = (J * w[..., None]).mT @ J
    G_out = (J * (1 - w)[..., None]).mT @ J
    return G_in, G_out
