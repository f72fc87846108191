"""Robust PCA (principal component pursuit), batched: ``M = L + S`` with ``L`` low-rank and ``S`` sparse."""
import math

import torch

from .. import distributed
from .._ext import _C
from .singular_value_threshold import _per_matrix, _symmetric_flag, _symmetric_to_rounding

METHODS = ("ialm", "official")
MU_SCALE = 40.0  # "ialm": mu0 = MU_SCALE / ||M||_2 (measured on the DCGAN Grams: 20 and 80 take 1.3-3x the iterations)
ETA = 10.0  # "ialm": mu grows while the primal residual exceeds ETA x the dual one
KRYLOV_STEPS = 2  # block Krylov steps of the partial SVT (2 and 3 gave the same iterates to 1e-9 on DCGAN Grams)
CHUNK = 50  # iterations per call into the C++ loop (the progress bar updates between calls)
STALL = 10  # "ialm": chunks without the residual halving before over-relaxation is switched off


def rpca(M, lamb=None, *, mu=None, tol=1e-7, max_iter=10000, method="ialm", symmetric=None, rho=2.0, alpha=1.6,
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
        induced 1-norm (largest absolute column sum), as the official code. ``"ialm"``: the starting value, default
        ``40 / ||M||_2``, or Lin et al.'s ``1.25 / ||M||_2`` where the threshold ``||M||_2 / 40`` would keep over a
        quarter of the spectrum (a noise floor, as in planted low rank + sparse).
    tol : float
        ``"official"``: stop when ``||L + S - M||_F <= tol ||M||_F`` (the official rule, primal only).
        ``"ialm"``: stop when the primal residual ``||L + S - M||_F`` and the dual residual (the ``L``-step's
        optimality gap, ``mu ||(alpha - 1)(L + S_old - M) + S - S_old||_F``) are both ``<= tol ||M||_F``: the KKT
        conditions of the convex problem, checked on an iteration with the exact SVT.
    max_iter : int
        Iteration cap (per matrix).
    method : {"ialm", "official"}
        ``"ialm"`` (default): the inexact augmented Lagrange multiplier method (ADMM, one ``L`` and one ``S`` step
        per multiplier update) made fast for Jacobian Grams: over-relaxation ``alpha``, the penalty above (grown
        by ``rho`` while the primal residual exceeds 10x the dual one; on noise-floor matrices also divided by
        ``rho`` while the dual exceeds 10x the primal, with plain steps), and a warm-started block-Krylov partial
        SVT for symmetric ``M`` (a few ``(n, p)`` products instead of a full eigendecomposition; the iterate it
        stops on is re-checked with the exact SVT). Hundreds of iterations on the DCGAN Grams, where the official
        rule takes thousands and stops short of the optimum. ``"official"``: the official LowRankGAN ADMM with
        fixed ``mu``: same start (``L = S = Y = 0``), update order and stopping rule, hence the same iterates.
    symmetric : bool or None
        Use eigendecompositions (``True``) or SVDs (``False``); ``None``: eigh when ``M`` is symmetric to rounding
        (``max |M - M^T| <= 1000 eps max |M|``, as Grams computed by a GEMM are), solving for its symmetric part
        ``(M + M^T) / 2``.
    rho : float
        ``"ialm"``: the penalty's growth factor (``>= 1``; ``1`` keeps ``mu`` fixed).
    alpha : float
        ``"ialm"``: over-relaxation in ``(0, 2)`` (``1``: plain ADMM); ``1.6`` cut the iterations on the DCGAN
        Grams by about a third.
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
    Each iteration, with ``Y`` the multiplier of ``L + S = M``: ``L = SVT(M - S - Y/mu, 1/mu)``; then one fused
    kernel pass computes ``Lh = alpha L + (1 - alpha)(M - S)``, ``S = shrink(M - Lh - Y/mu, lamb/mu)``,
    ``Y = Y + mu (Lh + S - M)``, the next SVT argument and both residual norms. The loop runs in C++
    (``_C.rpca_iterate``), in chunks of ``CHUNK`` iterations between progress-bar updates. The ``S``-step optimality
    holds exactly; the ``L``-step's is off by the dual residual.

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
    if distributed.should_shard(M):  # under torch.distributed each rank solves a share of the batch
        return distributed.shard_batched(rpca, (M,), lamb=lamb, mu=mu, tol=tol, max_iter=max_iter, method=method,
                                         symmetric=symmetric, rho=rho, alpha=alpha, progress=progress,
                                         per_matrix=("lamb", "mu"))
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
    if method == "ialm" and not (isinstance(rho, (int, float)) and rho >= 1):
        raise ValueError(f"{op}: expected rho >= 1, got {rho!r}")
    if method == "ialm" and not (isinstance(alpha, (int, float)) and 0 < alpha < 2):
        raise ValueError(f"{op}: expected alpha in (0, 2), got {alpha!r}")
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
        # Symmetric to rounding counts (exact equality sent GEMM-made Grams down the full-SVD route: 61 vs 5 ms per
        # iteration at n = 512); such a matrix is replaced by its symmetric part, far below the solver's tolerance.
        Mb, sym_flag = _symmetric_to_rounding(Mb)
    M64 = Mb.double()
    norm_fro = torch.linalg.matrix_norm(M64, "fro")  # (B,)
    zero = norm_fro == 0
    safe_fro = torch.where(zero, torch.ones_like(norm_fro), norm_fro)

    S = torch.zeros_like(Mb)
    Y = torch.zeros_like(Mb)
    if method == "official":
        if mu is None:
            norm1 = torch.linalg.matrix_norm(M64, 1)  # induced 1-norm: the largest absolute column sum
            mu_t = (n * n) / (4 * torch.where(zero, torch.ones_like(norm1), norm1))
        else:
            mu_t = _per_matrix(mu, batch_shape, dev, op, "mu", positive=True)
        mu_min, mu_max, grow, alpha_v, krylov = mu_t.clone(), mu_t.clone(), 1.0, 1.0, 0
        balance = torch.zeros(B, dtype=torch.bool)
    else:
        if mu is None:
            spectrum = torch.linalg.eigvalsh(M64).abs() if sym_flag == 1 else torch.linalg.svdvals(M64)
            norm2 = spectrum.amax(-1)
            norm2 = torch.where(zero, torch.ones_like(norm2), norm2)
            # MU_SCALE / ||M||_2 (threshold ||M||_2 / MU_SCALE) suits Grams with a decaying spectrum; where that
            # threshold would keep over a quarter of the spectrum (a noise floor, as in planted low rank + sparse),
            # start from Lin et al.'s 1.25 / ||M||_2 and let mu grow instead.
            noisy = (spectrum > norm2[:, None] / MU_SCALE).sum(-1) > n // 4
            mu_t = torch.where(noisy, 1.25 / norm2, MU_SCALE / norm2)
        else:
            mu_t = _per_matrix(mu, batch_shape, dev, op, "mu", positive=True)
            noisy = torch.zeros(B, dtype=torch.bool, device=dev)
        # decaying spectrum: fixed mu (grown only while the primal residual dominates), over-relaxed by alpha;
        # noise floor: residual balancing both ways (mu/rho when the dual residual dominates), plain steps
        balance = noisy.cpu()
        mu_min, mu_max, grow = mu_t * 1e-3, mu_t * 1e10, float(rho)
        alpha_v = torch.where(balance, 1.0, float(alpha)).to(dev)
        # the Krylov route needs symmetric matrices (it falls back to the full eigh when n is small)
        krylov = KRYLOV_STEPS if sym_flag == 1 else 0
    mu_t = mu_t.contiguous()
    A = Mb.clone()  # the first SVT argument M - S - Y/mu with S = Y = 0
    L = torch.zeros_like(Mb)
    rank = torch.zeros(B, dtype=torch.int64)
    iterations = torch.zeros(B, dtype=torch.int64)
    primal = torch.zeros(B, dtype=torch.float64)
    dual = torch.zeros(B, dtype=torch.float64)
    active = ~zero.cpu()  # an all-zero M is solved by L = S = 0 at once
    fro = safe_fro.cpu().contiguous()
    alpha_t = torch.as_tensor(alpha_v, dtype=torch.float64, device=dev).expand(B).contiguous()
    stop_dual = method != "official"

    def run(budget, krylov_steps, W):
        return _C.rpca_iterate(Mb, L, S, Y, A, mu_t, lamb_t, alpha_t, mu_min.contiguous(), mu_max.contiguous(),
                               balance, fro, active, iterations,
                               primal, dual, rank, grow, ETA, stop_dual, float(tol), int(budget), sym_flag,
                               krylov_steps, W, 0)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iter, desc=f"rpca[{method}]", leave=False)
    try:
        W, done = None, 0
        best = torch.full((B,), math.inf, dtype=torch.float64)  # the smallest max(primal, dual) seen
        since = torch.zeros(B, dtype=torch.int64)  # chunks since it last halved
        while done < max_iter and bool(active.any()):
            budget = min(CHUNK, max_iter - done)
            W = run(budget, krylov, W)
            done += budget
            # Safeguard: over-relaxation can stall near a degenerate optimum (seen with L = 0 optimal: the primal
            # residual stuck at 1e-7 for 20,000 iterations); a matrix whose residual has not halved in STALL chunks
            # goes on with plain steps (alpha = 1), which converge there.
            worst = torch.maximum(primal, dual)
            improved = worst < 0.5 * best
            best = torch.where(improved, worst, best)
            since = torch.where(improved, torch.zeros_like(since), since + 1)
            stalled = active & (since >= STALL) & (alpha_t.cpu() != 1.0)
            if bool(stalled.any()):
                alpha_t[stalled.to(dev)] = 1.0
                since[stalled] = 0
            if krylov and not bool(active.any()):
                # Certify with the exact SVT: the matrices that stopped on Krylov iterates go on exactly until the
                # criterion holds again (usually one iteration), so the reported residuals are exact ones.
                finished = (iterations < max_iter) & ~zero.cpu()
                active.copy_(finished & (iterations > 0))
                krylov = 0
            if bar is not None:
                bar.n = int(iterations.max())
                bar.set_postfix(primal=f"{float(primal.max()):.2e}", dual=f"{float(dual.max()):.2e}",
                                active=int(active.sum()))
                bar.refresh()
    finally:
        if bar is not None:
            bar.close()
    converged = zero.cpu() | ((primal <= tol) & ((dual <= tol) if stop_dual else True) & (iterations > 0))
    info = {
        "method": method,
        "iterations": iterations.reshape(batch_shape),
        "converged": converged.reshape(batch_shape),
        "primal_residual": primal.reshape(batch_shape),
        "dual_residual": dual.reshape(batch_shape),
        "rank": rank.reshape(batch_shape),
        "mu": mu_t.cpu().reshape(batch_shape),
        "lamb": lamb_t.cpu().reshape(batch_shape),
        "symmetric": bool(sym_flag),
    }
    return L.reshape(M.shape), S.reshape(M.shape), info
