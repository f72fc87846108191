"""Robust PCA (principal component pursuit), batched: ``M = L + S`` with ``L`` low-rank and ``S`` sparse."""
import math

import torch

from .._ext import _C
from .singular_value_threshold import _per_matrix, _symmetric_flag

METHODS = ("ialm", "official")


def rpca(M, lamb=None, *, mu=None, tol=1e-7, max_iter=10000, method="ialm", symmetric=None, rho=2.0,
         progress=False):
    """Principal component pursuit ``min ||L||_* + lamb ||S||_1  s.t.  L + S = M``, batched over leading dims.

    Parameters
    ----------
    M : torch.Tensor
        ``(..., n, n)`` float32 or float64, CPU or CUDA, finite (Jacobian Grams are symmetric PSD; any square
        matrix works).
    lamb : float or torch.Tensor, optional
        Weight of the sparse part, ``> 0``, one value or one per matrix; default ``1 / sqrt(n)`` (Candes et al.).
        LowRankGAN uses ``1/60``.
    mu : float or torch.Tensor, optional
        Penalty parameter, one value or one per matrix. ``"official"``: fixed, default ``n^2 / (4 ||M||_1)`` with the
        induced 1-norm (largest absolute column sum), as the official code. ``"ialm"``: the starting value,
        default ``1.25 / ||M||_2`` (Lin et al.); then adapted by residual balancing (see ``rho``).
    tol : float
        ``"official"``: stop when ``||L + S - M||_F <= tol ||M||_F`` (the official rule, primal only).
        ``"ialm"``: stop when the primal residual ``||L + S - M||_F`` and the dual residual
        ``mu ||S_k - S_{k-1}||_F`` are both ``<= tol ||M||_F`` (the KKT conditions of the convex problem).
    max_iter : int
        Iteration cap (per matrix).
    method : {"ialm", "official"}
        ``"ialm"`` (default): inexact augmented Lagrange multipliers (Lin, Chen & Ma 2010: their start ``Y0``,
        ``mu0``) with ``mu`` adapted by residual balancing, certified by both residuals: tens of iterations on
        well-posed problems (planted low rank + sparse), thousands on ill-conditioned ones. ``"official"``: the official LowRankGAN ADMM with fixed ``mu``: same start
        (``L = S = Y = 0``), update order and stopping rule, hence the same iterates (thousands of iterations).
    symmetric : bool or None
        Use eigendecompositions (``True``) or SVDs (``False``); ``None``: eigh when ``M`` is exactly symmetric.
    rho : float
        ``"ialm"``: ``mu`` is multiplied by ``rho`` (``> 1``) while the primal residual exceeds 10x the dual one,
        divided by it while the dual exceeds 10x the primal (decided on the previous iteration's residuals, so the
        fused pass needs no second sweep); kept in ``[1e-3, 1e10] * mu0``. Plain geometric growth (the original
        IALM) drives the primal residual to zero in tens of iterations but stalls the dual one on real Grams.
    progress : bool
        Show a tqdm bar over iterations.

    Returns
    -------
    L, S : torch.Tensor
        ``(..., n, n)``, dtype of ``M``.
    info : dict
        ``method``; per matrix (shape ``M.shape[:-2]``): ``iterations`` (int64, the iterations that matrix took;
        converged matrices are frozen while others go on), ``converged`` (bool), ``primal_residual``
        (``||L + S - M||_F / ||M||_F``), ``dual_residual`` (``mu ||S_k - S_{k-1}||_F / ||M||_F``), ``rank``
        (int64, rank of ``L``), ``mu`` (final), ``lamb`` (float64).

    Notes
    -----
    Each iteration, with ``Y`` the multiplier of ``L + S = M``:
    ``L = SVT(M - S - Y/mu, 1/mu)`` (eigh of the lower triangle for symmetric ``M``, rebuilding only the
    surviving eigenpairs); then one fused kernel pass computes ``S = shrink(M - L - Y/mu, lamb/mu)``,
    ``Y = Y + mu (L + S - M)``, the next SVT argument and both residual norms. The ``S``-step optimality holds
    exactly, and the ``L``-step's is off by ``mu (S_k - S_{k-1})``: hence the dual residual.

    Examples
    --------
    >>> import torch
    >>> from lowrankedit.ops import rpca
    >>> g = torch.Generator().manual_seed(0)
    >>> U = torch.randn(60, 3, dtype=torch.float64, generator=g)
    >>> S0 = torch.zeros(60, 60, dtype=torch.float64); S0[5, 7] = 10.0
    >>> L, S, info = rpca(U @ U.T + S0)
    >>> bool(info["converged"]), float((L - U @ U.T).norm() / (U @ U.T).norm()) < 1e-5
    (True, True)
    """
    op = "rpca"
    if not isinstance(M, torch.Tensor):
        raise TypeError(f"{op}: expected M to be a torch.Tensor, got {type(M).__name__}")
    if M.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{op}: expected M to have dtype float32 or float64, got {M.dtype}")
    if M.dim() < 2 or M.shape[-1] != M.shape[-2]:
        raise ValueError(f"{op}: expected square matrices M of shape (..., n, n), got {tuple(M.shape)}")
    if method not in METHODS:
        raise ValueError(f"{op}: expected method in {METHODS}, got {method!r}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"{op}: expected max_iter to be an int >= 1, got {max_iter!r}")
    if not (isinstance(tol, (int, float)) and tol >= 0 and math.isfinite(tol)):
        raise ValueError(f"{op}: expected tol to be a finite number >= 0, got {tol!r}")
    if method == "ialm" and not (isinstance(rho, (int, float)) and rho > 1):
        raise ValueError(f"{op}: expected rho > 1, got {rho!r}")
    sym_flag = _symmetric_flag(symmetric, op)
    batch_shape, n = tuple(M.shape[:-2]), M.shape[-1]
    B, dev, dt = math.prod(batch_shape), M.device, M.dtype
    M = M.detach()
    if M.numel() and not bool(torch.isfinite(M).all()):
        raise ValueError(f"{op}: expected M to be finite, got NaN or Inf entries")
    lamb_t = _per_matrix(1.0 / math.sqrt(max(n, 1)) if lamb is None else lamb, batch_shape, dev, op, "lamb",
                         positive=True)
    Mb = M.reshape(B, n, n).contiguous()
    if sym_flag == -1:
        sym_flag = int(bool(torch.equal(Mb, Mb.mT)))
    M64 = Mb.double()
    norm_fro = torch.linalg.matrix_norm(M64, "fro")  # (B,)
    zero = norm_fro == 0
    safe_fro = torch.where(zero, torch.ones_like(norm_fro), norm_fro)

    S = torch.zeros_like(Mb)
    if method == "official":
        if mu is None:
            norm1 = torch.linalg.matrix_norm(M64, 1)  # induced 1-norm: the largest absolute column sum
            mu_t = (n * n) / (4 * torch.where(zero, torch.ones_like(norm1), norm1))
        else:
            mu_t = _per_matrix(mu, batch_shape, dev, op, "mu", positive=True)
        mu_max = mu_t.clone()
        Y = torch.zeros_like(Mb)
        A = Mb.clone()
    else:
        norm2 = torch.linalg.matrix_norm(M64, 2)
        norm2 = torch.where(zero, torch.ones_like(norm2), norm2)
        if mu is None:
            mu_t = 1.25 / norm2
        else:
            mu_t = _per_matrix(mu, batch_shape, dev, op, "mu", positive=True)
        mu_max, mu_min = mu_t * 1e10, mu_t * 1e-3
        eta = 10.0
        # Y0 = -M / J(M), J(M) = max(||M||_2, ||M||_max / lamb): dual feasible, the start of Lin et al.
        J = torch.maximum(norm2, M64.abs().amax(dim=(-2, -1)) / lamb_t)
        Y = (-M64 / J[:, None, None]).to(dt)
        A = (M64 - Y.double() / mu_t[:, None, None]).to(dt)
    L = torch.zeros_like(Mb)
    rank = torch.zeros(B, dtype=torch.int64, device=dev)
    iterations = torch.zeros(B, dtype=torch.int64)
    primal = torch.full((B,), math.inf, dtype=torch.float64)  # before the first iteration: grow mu
    dual = torch.zeros(B, dtype=torch.float64)
    active = ~zero.cpu()  # an all-zero M is solved by L = S = 0 at once
    primal[zero.cpu()] = 0.0
    converged = zero.cpu().clone()
    safe_fro_cpu = safe_fro.cpu()

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iter, desc=f"rpca[{method}]", leave=False)
    Mf, Lf, Sf, Yf, Af = (t.view(B, n * n) for t in (Mb, L, S, Y, A))
    try:
        for _ in range(max_iter):
            if not bool(active.any()):
                break
            act_dev = active.to(dev)
            all_active = bool(active.all())
            tau = (1.0 / mu_t).contiguous()
            if all_active:
                L_new, r = _C.singular_value_threshold(A, tau, sym_flag, False)
                L.copy_(L_new)
                rank.copy_(r)
            else:
                idx = torch.nonzero(active).flatten().to(dev)
                L_new, r = _C.singular_value_threshold(A.index_select(0, idx), tau.index_select(0, idx).contiguous(),
                                                      sym_flag, False)
                L.index_copy_(0, idx, L_new)
                rank.index_copy_(0, idx, r)
            if method == "official":
                mu_next = mu_t
            else:
                # residual balancing on the previous iteration's residuals (known before this fused pass):
                # grow mu while the primal residual dominates, shrink it while the dual one does
                f = torch.where(primal > eta * dual, rho, torch.where(dual > eta * primal, 1.0 / rho, 1.0))
                mu_next = torch.clamp(mu_t * f.to(dev), min=mu_min, max=mu_max)
            norms = _C.rpca_step(Mf, Lf, Sf, Yf, Af, mu_t, lamb_t, mu_next.contiguous(), act_dev).cpu()
            mu_cpu = mu_t.cpu()
            p = norms[:, 0].sqrt() / safe_fro_cpu
            d = mu_cpu * norms[:, 1].sqrt() / safe_fro_cpu
            primal = torch.where(active, p, primal)
            dual = torch.where(active, d, dual)
            iterations += active.long()
            if method == "official":
                done = active & (p <= tol)
            else:
                done = active & (p <= tol) & (d <= tol)
            converged |= done
            active &= ~done
            mu_t = torch.where(act_dev, mu_next, mu_t).contiguous()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(primal=f"{float(primal.max()):.2e}", dual=f"{float(dual.max()):.2e}",
                                active=int(active.sum()))
    finally:
        if bar is not None:
            bar.close()
    info = {
        "method": method,
        "iterations": iterations.reshape(batch_shape),
        "converged": converged.reshape(batch_shape),
        "primal_residual": primal.reshape(batch_shape),
        "dual_residual": dual.reshape(batch_shape),
        "rank": rank.cpu().reshape(batch_shape),
        "mu": mu_t.cpu().reshape(batch_shape),
        "lamb": lamb_t.cpu().reshape(batch_shape),
        "symmetric": bool(sym_flag),
    }
    return L.reshape(M.shape), S.reshape(M.shape), info
