"""LowRankGAN (Zhu et al. 2021): low-rank subspaces of the region Jacobian, projected onto the background's null
space, give edits that change the region and leave the rest of the image alone."""
import numbers
import warnings

import torch

from .. import validation as V
from ..directions import Directions
from ..gram import Gram
from ..ops.rpca import METHODS, rpca


def _matrix_rank(X):
    """NumPy's default ``matrix_rank``: singular values above ``s_max * max(m, n) * eps``."""
    s = torch.linalg.svdvals(X)
    tol = s.max() * max(X.shape) * torch.finfo(X.dtype).eps
    return int((s > tol).sum())


def _right_singular_basis(L, M, rank):
    """Right singular vectors of ``L`` (``(D, D)`` columns, by decreasing singular value), with the part that spans
    ``L``'s null space (zero singular values, where the SVD's choice of basis is arbitrary) ordered by ``M``: the
    eigenvectors of ``M`` restricted to that null space, largest eigenvalue first."""
    _, _, Vh = torch.linalg.svd(L)
    low, null = Vh[:rank].T, Vh[rank:].T
    _, Q = torch.linalg.eigh(null.T @ M @ null)
    return torch.cat([low, null @ Q.flip(-1)], dim=1)


def _thin_eigenbasis(L, width, generator):
    """``(U, s)``: the eigenvectors (columns) and singular values ``|eigenvalue|`` of the symmetric ``L``, by
    decreasing ``s``, from one product ``L Omega`` with ``width`` random columns (the range of a rank-``r`` matrix
    is that of ``L Omega`` when ``width >= r``); ``None`` when ``U diag(eigenvalues) U^T`` misses part of ``L``
    (its rank exceeded ``width``). Ranks then follow NumPy's ``matrix_rank`` tolerance on ``s``, as
    :func:`_matrix_rank` on the full SVD."""
    omega = torch.randn(L.shape[0], width, dtype=L.dtype, generator=generator)
    Q = torch.linalg.qr(L @ omega).Q
    B = Q.T @ L @ Q
    theta, Z = torch.linalg.eigh((B + B.T) / 2)
    order = theta.abs().argsort(descending=True)
    U, theta = Q @ Z[:, order], theta[order]
    scale = float(L.norm())
    if scale > 0 and float((L - (U * theta) @ U.T).norm()) > 1e-9 * scale:
        return None
    return U, theta.abs()


def _rank_of(s, D, dtype):
    """NumPy's ``matrix_rank`` count on singular values ``s`` of a ``D x D`` matrix (see :func:`_matrix_rank`)."""
    return int((s > s.max() * D * torch.finfo(dtype).eps).sum()) if s.numel() and s.max() > 0 else 0


def _top_eigenvectors(M, P, k):
    """The ``k`` leading eigenvectors of ``M`` restricted to the orthogonal complement of ``P``'s columns (the
    null-space ordering of :func:`_right_singular_basis` without the full basis)."""
    if P.shape[1]:
        proj = lambda X: X - P @ (P.T @ X)  # noqa: E731
        A = proj(proj(M).T)
    else:
        A = M
    A = (A + A.T) / 2
    if 3 * k >= A.shape[0]:  # lobpcg needs n > 3k; such a matrix is small
        return torch.linalg.eigh(A)[1].flip(-1)[:, :k]
    return torch.lobpcg(A, k=k, largest=True, tol=1e-12, niter=1000)[1]


def _thin_directions(L_f, L_b, M_b, width_f, width_b, relax):
    """LowRankGAN's principal and projected directions from thin factors (see :func:`lowrankgan`): the leading
    eigenvectors of ``L_f`` and the range of ``L_b`` from :func:`_thin_eigenbasis`, and the projection
    ``p = v - B (B^T v)`` onto the complement of the first ``k`` background vectors ``B``; never a ``D x D`` SVD.
    ``(principal (rank_f, D), s_f, projected (rank_f, D), rank_f, rank_b, k)``, or ``None`` where a Gram's
    ``L`` has a higher rank than its block holds."""
    D = L_f.shape[0]
    g = torch.Generator().manual_seed(0)
    fg, bg = _thin_eigenbasis(L_f, width_f, g), _thin_eigenbasis(L_b, width_b, g)
    if fg is None or bg is None:
        return None
    (U_f, s_f), (U_b, s_b) = fg, bg
    rank_f, rank_b = _rank_of(s_f, D, L_f.dtype), _rank_of(s_b, D, L_b.dtype)
    k = min(max(1, rank_b - int(relax)), D - 1)
    U_b = U_b[:, :rank_b]
    B = U_b[:, :k] if k <= rank_b else torch.cat([U_b, _top_eigenvectors(M_b, U_b, k - rank_b)], dim=1)
    principal = U_f[:, :rank_f].T
    projected = principal - (principal @ B) @ B.T
    return principal, s_f[:rank_f], projected, rank_f, rank_b, k


#: The robust-PCA solver and sparsity weight per preset. ``"official"``: the official iteration and stopping rule at
#: the paper's ``lamb = 1/60``. ``"default"``: the fast certified solver at ``lamb = 1/40``. At 1/60 the certified
#: optimum has no low-rank region part (no direction at all) on 4 of 6 DCGAN eyes / mouth / nose Grams of 8 faces
#: (the official rule stops early, before it gets there); 1/40 gives a direction on all 6 and ties the official
#: preset's held-out MSE outside on all 6 (1/30 lost one, bench/results/presets_sweep*.md, docs/evaluation.md).
PRESETS = {"default": {"method": "ialm", "lamb": 1 / 40}, "official": {"method": "official", "lamb": 1 / 60}}


def lowrankgan(gram, *, lamb=None, relax=0, method=None, tol=1e-7, max_iter=10000, progress=False,
               preset="default"):
    """Directions that edit the region and (to first order) nothing else, by LowRankGAN's low-rank factorization.

    Parameters
    ----------
    gram : lowrankedit.Gram
        Region and background Jacobian Grams ``fg``, ``bg`` ``(D, D)``.
    lamb : float, optional
        Sparse-part weight of the robust PCA, ``> 0``. Default from ``preset``: ``1/40`` (``"default"``), the
        paper's ``1/60`` (``"official"``); a larger ``lamb`` leaves more of each Gram to the low-rank part.
    relax : int
        The null space of the background is taken past ``rank_b - relax`` singular vectors (``0 <= relax < D``):
        a larger ``relax`` keeps a bigger, less strict null space.
    method : {"ialm", "official", "partial"}, optional
        Robust-PCA solver (see :func:`lowrankedit.ops.rpca`); ``"official"`` repeats the official iteration;
        ``"partial"`` is the partial-SVT solver for large Grams (:func:`lowrankedit.ops.rpca_ialm`).
        Default from ``preset``.
    tol, max_iter : float, int
        Passed to :func:`lowrankedit.ops.rpca`.
    progress : bool
        Show the robust-PCA progress bar.
    preset : {"default", "official"}
        Fills ``method`` and ``lamb`` where they are ``None`` (see :data:`PRESETS`).

    Returns
    -------
    Directions
        ``rank_f`` unit vectors ``(rank_f, *latent_shape)``, best first; ``scores`` are the singular values of
        the region's low-rank part ``L_f``. ``meta`` holds ``principal`` (the unprojected directions),
        ``rank_f``, ``rank_b``, ``null_dim``, ``projected_norms``, ``route`` (``"thin"`` or ``"dense"``, below) and
        the robust-PCA ``rpca`` info.

    Notes
    -----
    ``M_f = L_f + S_f`` and ``M_b = L_b + S_b`` by robust PCA (both Grams in one batched call). The principal
    directions are the first ``rank_f`` right singular vectors ``v_i`` of ``L_f``; with ``N`` the right singular
    vectors ``k..D-1`` of ``L_b``, ``k = min(max(1, rank_b - relax), D - 1)`` as in the official code, each is
    projected (Eq. 7) ``p_i = N N^T v_i`` and normalized. Ranks use NumPy's ``matrix_rank`` tolerance, as the
    official code. The singular vectors of ``L_b``'s zero singular values are ordered by ``M_b`` (its eigenvectors
    in that null space, largest first): where ``L_b = 0``, the official ``k = 1`` then drops the background
    Gram's dominant direction rather than the arbitrary first basis vector of the SVD of a zero matrix.

    Route: where both ranks reported by the robust PCA are below ``D / 2 - 10`` the same quantities come from thin
    factors (``"thin"``: each ``L``'s eigenvectors from one product ``L Omega`` with ``rank + 10`` random columns,
    checked to rebuild ``L`` to ``1e-9``; the projection ``v - B B^T v`` with ``B`` the first ``k`` background
    vectors; never a ``D x D`` SVD); otherwise, or when the check fails, the two full SVDs (``"dense"``).

    The two solvers solve the same convex problem but stop differently. On the real DCGAN mouth Grams (face of
    seed 0, ``lamb = 1/60``) the certified optimum of the background problem is ``L_b = 0`` (rank 0: all of it goes
    to the sparse part), whereas the official primal-only rule stops at a rank-1 ``L_b`` whose top singular vector
    is the background Gram's dominant eigenvector to ``|cos| = 0.99``; with the ordering above both drop that
    direction, and the top projected directions agree to ``|cos| = 0.997``.

    Examples
    --------
    >>> import torch, lowrankedit as le
    >>> g = torch.Generator().manual_seed(0)
    >>> Jf, Jb = torch.randn(2, 40, 8, dtype=torch.float64, generator=g)
    >>> Jb[:, :3] = 0  # the background does not depend on latent entries 0..2
    >>> dirs = le.lowrankgan(le.Gram(Jf.T @ Jf / 40, Jb.T @ Jb / 40, 40, 40), lamb=1.0)
    >>> bool(dirs.vectors[:, 3:].abs().max() < 1e-6)
    True
    """
    op = "lowrankgan"
    if preset not in PRESETS:
        raise ValueError(f"{op}: expected preset in {tuple(PRESETS)}, got {preset!r}")
    method = PRESETS[preset]["method"] if method is None else method
    lamb = PRESETS[preset]["lamb"] if lamb is None else lamb
    if not isinstance(gram, Gram):
        raise TypeError(f"{op}: expected a lowrankedit.Gram, got {type(gram).__name__}")
    D = gram.dim
    if D < 2:
        raise ValueError(f"{op}: expected Grams of size D >= 2, got D = {D}")
    relax = V.integer(relax, "relax", op, min=0, max=D - 1)
    lamb = V.positive(lamb, "lamb", op)
    tol = V.real(tol, "tol", op, min=0.0)
    max_iter = V.integer(max_iter, "max_iter", op, min=1)
    V.choice(method, "method", op, METHODS)
    V.boolean(progress, "progress", op)
    M = torch.stack([gram.fg, gram.bg]).double()
    L, _, info = rpca(M, float(lamb), tol=tol, max_iter=max_iter, method=method, progress=progress)
    L_f, L_b = L[0].cpu(), L[1].cpu()
    not_converged = _convergence_warning(info, method, tol, max_iter, op)
    # The thin route needs a Krylov-like block of rank + 10 columns per Gram (the rank reported by the robust PCA is
    # the exact rank of its L = U diag(w) U^T); it replaces the two D x D SVDs wherever that block is narrow.
    widths = [int(r) + 10 for r in info["rank"].reshape(-1).tolist()]
    thin = _thin_directions(L_f, L_b, M[1].cpu(), widths[0], widths[1], relax) if max(widths) <= D // 2 else None
    route = "dense" if thin is None else "thin"
    if thin is not None:
        principal, s_f, projected, rank_f, rank_b, k = thin
    else:
        rank_f, rank_b = _matrix_rank(L_f), _matrix_rank(L_b)
        _, s_f, Vh_f = torch.linalg.svd(L_f)
        # The official k = max(1, rank_b - relax) always drops at least one background direction. k exceeds
        # rank_b only where L_b = 0 (all of the background Gram went to the sparse part); the official code then
        # drops the first singular vector of a zero matrix, an arbitrary one. Ordering L_b's null-space basis by
        # the background Gram makes that the background's dominant direction instead; for rank_b >= 1 the null
        # space is the official one.
        V_b = _right_singular_basis(L_b, M[1].cpu(), rank_b)
        k = min(max(1, rank_b - int(relax)), D - 1)
        N = V_b[:, k:]  # (D, D - k): orthonormal basis of the background's (relaxed) null space
        principal = Vh_f[:rank_f]  # (rank_f, D)
        s_f = s_f[:rank_f]
        projected = (principal @ N) @ N.T  # Eq. (7): N N^T v for every row v
    if rank_f == 0:
        # Seen on real DCGAN mouth Grams (1 face in 8 at lamb = 1/60): the certified optimum is L_f = 0 there.
        warnings.warn(f"{op}: the region's low-rank part L_f is 0 at lamb = {lamb:g} (the optimum puts the whole "
                      "region Gram into the sparse part), so there are no directions; a larger lamb keeps a "
                      "low-rank part (1/50 did on that face), and method='official' stops early, as the paper's "
                      "code, at a non-zero L_f", RuntimeWarning, stacklevel=2)
    norms = projected.norm(dim=1)
    keep = norms > 1e-12
    vectors = projected[keep] / norms[keep, None]
    latent_shape = tuple(gram.latent_shape)
    meta = {
        "method": "lowrankgan",
        "latent_space": gram.meta.get("latent_space"),
        "generator": gram.meta.get("generator"),
        "region": gram.meta.get("region"),
        "params": {"lamb": float(lamb), "relax": int(relax), "rpca_method": method, "preset": preset, "tol": tol,
                   "max_iter": max_iter},
        "rank_f": rank_f,
        "rank_b": rank_b,
        "null_dim": D - k,
        "route": route,
        "principal": principal.reshape(rank_f, *latent_shape),
        "projected_norms": norms,
        "dropped": int((~keep).sum()),
        "rpca": {key: (val.tolist() if isinstance(val, torch.Tensor) else val) for key, val in info.items()},
        "converged": not not_converged,
        "warnings": [not_converged] if not_converged else [],
        "gram": dict(gram.meta),
    }
    return Directions(vectors.reshape(-1, *latent_shape).to(gram.fg.dtype), s_f[keep], meta)


def _convergence_warning(info, method, tol, max_iter, op):
    """Warn (``RuntimeWarning``) when the robust PCA of either Gram stopped at ``max_iter`` without converging;
    return the message (``""`` when both converged), which goes into ``meta``."""
    converged = info["converged"].reshape(-1).tolist()
    if all(converged):
        return ""
    names = [name for name, ok in zip(("fg", "bg"), converged) if not ok]
    iters = info["iterations"].reshape(-1).tolist()
    primal = info["primal_residual"].reshape(-1).tolist()
    dual = info.get("dual_residual")
    dual = dual.reshape(-1).tolist() if isinstance(dual, torch.Tensor) else [float("nan")] * 2
    detail = "; ".join(f"{n}: {iters[i]} iterations, primal residual {primal[i]:.2g}, dual {dual[i]:.2g}"
                       for i, n in enumerate(("fg", "bg")) if not converged[i])
    hint = "raise max_iter" + (", loosen tol" if tol < 1e-5 else "") + \
        (", or use method='ialm' (the certified solver, far fewer iterations)" if method == "official" else "")
    msg = (f"{op}: robust PCA of the {' and '.join(names)} Gram did not converge to tol={tol:g} within "
           f"max_iter={max_iter} ({detail}); the directions come from an unconverged low-rank part: {hint}")
    warnings.warn(msg, RuntimeWarning, stacklevel=3)
    return msg
