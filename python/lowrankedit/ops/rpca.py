"""Robust PCA (principal component pursuit), batched: ``M = L + S`` with ``L`` low-rank and ``S`` sparse."""
import numbers

import torch

from .. import distributed
from .._ext import _C
from ._interop import as_tensor
from .singular_value_threshold import _per_matrix, _symmetric_flag

METHODS = ("ialm", "official", "partial")
#: ``rho`` when none is given, per method (``"official"`` has a fixed penalty and ignores it).
DEFAULT_RHO = {"ialm": 2.0, "official": 2.0, "partial": 1.5}


@torch.library.register_fake("lowrankedit::rpca")
def _fake(M, lamb=None, mu=None, method="ialm", tol=1e-7, max_iter=10000, symmetric=-1, rho=2.0, alpha=1.6):
    batch = M.shape[:-2]
    stat = lambda dtype: torch.empty(batch, dtype=dtype, device="cpu")  # noqa: E731
    L = torch.empty_like(M, memory_format=torch.contiguous_format)
    return (L, torch.empty_like(L), stat(torch.int64), stat(torch.bool), stat(torch.float64), stat(torch.float64),
            stat(torch.int64), stat(torch.float64), stat(torch.float64), torch.empty((), dtype=torch.bool, device="cpu"))


@torch.library.register_fake("lowrankedit::_rpca_step")
def _fake_step(M, L, S, Y, A, mu, lamb, mu_next, active, alpha):
    return M.new_empty((M.shape[0], 2), dtype=torch.float64)


def _real(value, op, name, kind=numbers.Real):
    if not isinstance(value, kind) or isinstance(value, bool):
        what = "an int" if kind is numbers.Integral else "a real number"
        raise TypeError(f"{op}: expected {name} to be {what}, got {value!r}")
    return value


def rpca(M, lamb=None, *, mu=None, tol=1e-7, max_iter=10000, method="ialm", symmetric=None, rho=None, alpha=1.6,
         progress=False):
    """Principal component pursuit ``min ||L||_* + lamb ||S||_1  s.t.  L + S = M``, batched over leading dims.

    Parameters
    ----------
    M : torch.Tensor, numpy.ndarray or __dlpack__ object
        ``(..., n, n)`` float32 or float64, CPU or CUDA, finite (Jacobian Grams are symmetric PSD; any square
        matrix works). The result does not depend on the scale of ``M``: ``rpca(c M) = c rpca(M)`` with the same
        iterations (bit for bit when ``c`` is a power of two, to rounding otherwise), and denormal input is solved
        like any other; an all-zero matrix gives ``L = S = 0`` (converged, 0 iterations).
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
        ``"ialm"``: stop when the primal residual ``||L + S - M||_F / ||M||_F`` and the dual residual (the
        ``L``-step's optimality gap ``mu ||(alpha - 1)(L + S_old - M) + S - S_old||_F``, divided by ``n``: the RMS
        entry of a matrix in the multiplier's units, which carry no scale, since ``|Y_ij| <= lamb`` at the optimum)
        are both ``<= tol``: the KKT conditions of the convex problem, checked on an iteration with the exact SVT.
        Both residuals are the same for ``M`` and ``c M``.
    max_iter : int
        Iteration cap (per matrix).
    method : {"ialm", "official", "partial"}
        ``"ialm"`` (default): the inexact augmented Lagrange multiplier method (ADMM, one ``L`` and one ``S`` step
        per multiplier update) made fast for Jacobian Grams: over-relaxation ``alpha``, the penalty above (grown
        by ``rho`` while the primal residual exceeds 10x the dual one; on noise-floor matrices also divided by
        ``rho`` while the dual exceeds 10x the primal, with plain steps), and a warm-started block-Krylov partial
        SVT for symmetric ``M`` (a few ``(n, p)`` products instead of a full eigendecomposition; the iterate it
        stops on is re-checked with the exact SVT). Hundreds of iterations on the DCGAN Grams, where the official
        rule takes thousands and stops short of the optimum. ``"official"``: the official LowRankGAN ADMM with
        fixed ``mu``: same start (``L = S = Y = 0``), update order and stopping rule, hence the same iterates.
        ``"partial"``: symmetric ``M`` only (a non-symmetric one raises), one matrix at a time through
        :func:`lowrankedit.ops.rpca_ialm` (Lin et al.'s inexact ALM, over-relaxed, with a balanced penalty, a
        rank-adaptive partial SVT and a spectral-gap certificate, never a full eigendecomposition while the rank
        stays small: the route for large Grams); ``mu`` is its starting penalty, ``alpha`` and ``symmetric=None``
        do not apply, and ``info`` also holds its ``certified``, ``gap``, ``tail``, ``threshold``,
        ``svt_attempts`` and ``full_svt``.
    symmetric : bool or None
        Use eigendecompositions (``True``) or SVDs (``False``); ``None``: eigh when ``M`` is symmetric to rounding
        (``max |M - M^T| <= 1000 eps max |M|``, as Grams computed by a GEMM are), solving for its symmetric part
        ``(M + M^T) / 2``.
    rho : float, optional
        ``"ialm"``, ``"partial"``: the penalty's growth factor (``>= 1``; ``1`` keeps ``mu`` fixed); default 2.0
        (``"ialm"``), 1.5 (``"partial"``, Lin et al.).
    alpha : float
        ``"ialm"``: over-relaxation in ``(0, 2)`` (``1``: plain ADMM); ``1.6`` cut the iterations on the DCGAN
        Grams by about a third.
    progress : bool
        Show a tqdm bar over iterations.

    Returns
    -------
    L, S : torch.Tensor
        ``(..., n, n)``, dtype and device of ``M``.
    info : dict
        ``method``; per matrix (shape ``M.shape[:-2]``): ``iterations`` (int64, the iterations that matrix took;
        converged matrices are frozen while others go on), ``converged`` (bool), ``primal_residual``
        (``||L + S - M||_F / ||M||_F``), ``dual_residual`` (``"ialm"``: the gap above over ``n``; ``"official"``: ``mu ||S_k - S_{k-1}||_F / n``,
        reported, not used to stop), ``rank``
        (int64, rank of ``L``), ``mu`` (final), ``lamb`` (float64).

    Notes
    -----
    Each iteration, with ``Y`` the multiplier of ``L + S = M``: ``L = SVT(M - S - Y/mu, 1/mu)``; then one fused
    kernel pass computes ``Lh = alpha L + (1 - alpha)(M - S)``, ``S = shrink(M - Lh - Y/mu, lamb/mu)``,
    ``Y = Y + mu (Lh + S - M)``, the next SVT argument and both residual norms. The whole solver is the operator
    ``torch.ops.lowrankedit.rpca`` (C++: defaults, stopping, stall and certification rules in one place); it
    solves for ``M / s`` with ``s = max |M|`` (per matrix) and scales back. The ``S``-step optimality holds exactly; the ``L``-step's is off by the dual residual.

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
    M = as_tensor(M, op, "M")
    if not isinstance(method, str):
        raise TypeError(f"{op}: expected method to be a str, got {method!r}")
    rho = DEFAULT_RHO.get(method, 2.0) if rho is None else rho
    if method == "partial":
        return _partial(M, lamb, mu, tol, max_iter, symmetric, rho, progress)
    args = (M.detach(), None if lamb is None else _per_matrix(lamb, op, "lamb"),
            None if mu is None else _per_matrix(mu, op, "mu"), method, float(_real(tol, op, "tol")),
            int(_real(max_iter, op, "max_iter", numbers.Integral)), _symmetric_flag(symmetric, op),
            float(_real(rho, op, "rho")), float(_real(alpha, op, "alpha")))
    if progress:
        from tqdm.auto import tqdm

        with tqdm(total=max_iter, desc=f"rpca[{method}]", leave=False) as bar:
            def report(iterations, primal, dual, active):
                bar.n = iterations
                bar.set_postfix(primal=f"{primal:.2e}", dual=f"{dual:.2e}", active=active)
                bar.refresh()

            out = _C.rpca_progress(*args, report)
    else:
        out = torch.ops.lowrankedit.rpca(*args)
    L, S, iterations, converged, primal, dual, rank, mu_final, lamb_used, sym = out
    info = {
        "method": method,
        "iterations": iterations,
        "converged": converged,
        "primal_residual": primal,
        "dual_residual": dual,
        "rank": rank,
        "mu": mu_final,
        "lamb": lamb_used,
        "symmetric": bool(sym),
    }
    return L, S, info



def _partial(M, lamb, mu, tol, max_iter, symmetric, rho, progress):
    """``method="partial"``: :func:`~lowrankedit.ops.rpca_ialm` per matrix, its info stacked per matrix."""
    from .rpca_ialm import rpca_ialm

    op = "rpca(method='partial')"
    if symmetric is False:
        raise ValueError(f"{op}: expected symmetric=None or True (this solver is for symmetric M only), got False; "
                         "use method='ialm' for general matrices")
    if M.dim() < 2 or M.shape[-1] != M.shape[-2]:
        raise ValueError(f"{op}: expected square matrices M of shape (..., n, n), got {tuple(M.shape)}")
    batch = M.shape[:-2]
    flat = M.reshape(-1, *M.shape[-2:])
    per = lambda value, name: (None if value is None else  # noqa: E731
                               _per_matrix(value, op, name).double().cpu().expand(batch).reshape(-1).tolist())
    lambs, mus = per(lamb, "lamb"), per(mu, "mu")
    Ls, Ss, infos = [], [], []
    indices = range(flat.shape[0])
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="rpca[partial]", leave=False)
    for i in indices:
        try:
            L, S, info = rpca_ialm(flat[i], None if lambs is None else lambs[i], tol=tol, max_iter=max_iter,
                                   mu0=None if mus is None else mus[i], rho=rho)
        except ValueError as exc:
            raise ValueError(f"{op}: matrix {i}: {exc}") from exc
        Ls.append(L)
        Ss.append(S)
        infos.append(info)
    dtypes = {bool: torch.bool, int: torch.int64, float: torch.float64}
    info = {key: torch.tensor([d[key] for d in infos], dtype=dtypes[type(infos[0][key])]).reshape(batch)
            for key in infos[0] if key != "method"} if infos else {}
    info.update(method="partial", symmetric=True)
    if not infos:
        return torch.zeros_like(M), torch.zeros_like(M), info
    return torch.stack(Ls).reshape(M.shape), torch.stack(Ss).reshape(M.shape), info
