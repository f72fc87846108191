"""ReSeFa (Zhu et al., "Region-Based Semantic Factorization in GANs", ICML 2022): latent directions that change a
region while keeping its background, as the top generalized eigenvectors of ``(fg, bg + tau tr(bg) I)``.

Differences from the official ``compute_direction.py`` (see docs/official.md), all on purpose:

* symmetric-definite solver (Cholesky + symmetric eigensolver, :func:`lowrankedit.ops.generalized_eigh`) instead
  of the general ``eig(inv(M_back) @ M_fore)``: real eigenvalues by construction, about 5x less work;
* the regularization ``tau = 1e-3`` is ON by default (the official code only adds it with ``--full_rank``), since
  the paper itself requires a full-rank background Gram (Eq. 10). It matters: on the DCGAN mouth Gram (D = 100,
  background eigenvalues 7e-6 .. 0.15, condition 2e4) the shift tau tr(bg) = 4.7e-4 dominates the weakest
  background directions, and the top direction with tau = 1e-3 has |cos| = 0.56 with the tau = 0 one; each agrees
  with the official inv + eig route at the same tau to |cos| = 1.0000 (tests/test_resefa.py);
* the paper's Woodbury route (Eq. 12) for high-dimensional latents, when the Jacobians are given as thin factors:
  :func:`resefa_from_factors`.
"""
import math
import numbers

import torch

from .. import validation as V
from ..directions import Directions
from ..gram import Gram
from ..ops.generalized_eigh import generalized_eigh, generalized_eigh_woodbury
from ..ops.generalized_eigh_topk import generalized_eigh_topk

_ROUTES = ("auto", "dense", "topk", "woodbury")
#: ``route="auto"`` on a Gram takes the top-k solver when ``D >= TOPK_MIN_DIM`` and ``k <= D / TOPK_MAX_FRACTION``:
#: there one Cholesky and a few block solves beat the full eigensolver (below, the dense route is fast anyway).
TOPK_MIN_DIM = 512
TOPK_MAX_FRACTION = 16
_COPY_KEYS = ("latent_space", "generator", "region", "layer")


def _check_k(k, n, op):
    if k is None:
        return n
    return V.integer(k, "k", op, min=1, max=n)


def _directions(w, X, k, latent_shape, meta):
    vectors = X[:, :k].mT.reshape(k, *latent_shape).contiguous()
    return Directions(vectors, w[:k].clone(), meta)


def _meta(base, **extra):
    base = dict(base or {})
    meta = {key: base[key] for key in _COPY_KEYS if key in base}
    meta.update({"method": "resefa", "normalize": "unit", "source": base})
    meta.update(extra)
    return meta


#: ``tau`` per preset: ``"default"`` regularizes (the paper's Eq. 10; needed on the DCGAN, whose background Gram has
#: condition 2e4), ``"official"`` is the official script's default (no regularization).
PRESETS = {"default": {"tau": 1e-3}, "official": {"tau": 0.0}}


def resefa(gram, *, tau=None, k=None, route="auto", preset="default"):
    """Directions that edit the region of ``gram`` and leave its background alone (ReSeFa, Eqs. 7-11).

    Parameters
    ----------
    gram : lowrankedit.Gram
        ``fg``, ``bg`` ``(D, D)`` (each normalized by its pixel count), ``latent_shape`` with ``prod = D``.
    tau : float, optional
        Regularization ``bg + tau tr(bg) I`` (Eq. 10), ``>= 0``; default ``1e-3`` as in the paper.
        ``tau = 0`` (``preset="official"``) reproduces the official default and raises when ``bg`` is singular.
    k : int, optional
        Number of directions, largest generalized eigenvalue first; default all ``D``.
    route : {"auto", "dense", "topk", "woodbury"}
        "dense": all ``D`` eigenpairs (:func:`lowrankedit.ops.generalized_eigh`). "topk": only the ``k`` leading
        ones (:func:`lowrankedit.ops.generalized_eigh_topk`: one Cholesky, block Krylov through triangular
        solves). "auto": "topk" when ``k`` is given, ``D >= 512`` and ``k <= D / 16``, else "dense". "woodbury"
        needs the background as a thin factor: use :func:`resefa_from_factors`.
    preset : {"default", "official"}
        Fills ``tau`` when it is ``None`` (see :data:`PRESETS`).

    Returns
    -------
    Directions
        ``vectors (k, *latent_shape)`` unit-norm, ``scores (k,)`` the generalized eigenvalues
        ``n^T fg n / n^T bg' n`` (descending), ``meta`` with ``method="resefa"``, ``tau``, ``route``, ``k``,
        ``n_fg``, ``n_bg`` and the Gram's own meta under ``source``; on the top-k route also ``topk`` (restarts,
        block applications, block width, largest relative Ritz residual, converged).

    Notes
    -----
    Solves ``fg n = lambda (bg + tau tr(bg) I) n`` with :func:`lowrankedit.ops.generalized_eigh` (Cholesky of the
    regularized ``bg``, symmetric eigensolver); each eigenvector is scaled to unit norm with its largest-magnitude
    entry positive. The eigenvectors are ``bg'``-orthogonal, not mutually orthogonal.

    Examples
    --------
    >>> import torch, lowrankedit
    >>> g = torch.Generator().manual_seed(0)
    >>> Jf, Jb = torch.randn(5, 6, generator=g, dtype=torch.float64), torch.randn(30, 6, generator=g, dtype=torch.float64)
    >>> dirs = lowrankedit.resefa(lowrankedit.Gram(Jf.T @ Jf / 5, Jb.T @ Jb / 30, 5, 30), k=2)
    >>> dirs.vectors.shape, dirs.meta["route"]
    (torch.Size([2, 6]), 'dense')
    """
    op = "resefa"
    if preset not in PRESETS:
        raise ValueError(f"{op}: expected preset in {tuple(PRESETS)}, got {preset!r}")
    tau = PRESETS[preset]["tau"] if tau is None else tau
    if not isinstance(gram, Gram):
        raise TypeError(f"{op}: expected a lowrankedit.Gram, got {type(gram).__name__}; "
                        "for Jacobian factors use lowrankedit.resefa_from_factors(Jf, Jb)")
    if route not in _ROUTES:
        raise ValueError(f"{op}: expected route in {_ROUTES}, got {route!r}")
    if route == "woodbury":
        raise ValueError(f"{op}: route='woodbury' needs the background as a thin factor Jb (m, D), but a Gram "
                         "holds the dense (D, D) bg; use lowrankedit.resefa_from_factors(Jf, Jb, route='woodbury')")
    D = gram.dim
    if math.prod(gram.latent_shape) != D:
        raise ValueError(f"{op}: Gram latent_shape {gram.latent_shape} does not match D = {D}")
    given = k is not None
    k = _check_k(k, D, op)
    if route == "auto":
        route = "topk" if given and D >= TOPK_MIN_DIM and k * TOPK_MAX_FRACTION <= D else "dense"
    tau = V.real(tau, "tau", op, min=0.0)
    extra = {}
    if route == "topk":
        w, X, info = generalized_eigh_topk(gram.fg, gram.bg, k, tau=tau)
        if not info["converged"]:
            raise RuntimeError(f"{op}: the top-k eigensolver did not converge in {info['restarts']} restarts "
                               f"(largest relative residual {float(info['residuals'].max()):.2e}); use "
                               "route='dense'")
        extra["topk"] = {"restarts": int(info["restarts"]), "applications": int(info["applications"]),
                         "block": int(info["block"]), "steps": int(info["steps"]),
                         "max_residual": float(info["residuals"].max()), "converged": bool(info["converged"])}
    else:
        w, X = generalized_eigh(gram.fg, gram.bg, tau)
    meta = _meta(gram.meta, tau=float(tau), preset=preset, route=route, k=k, n_fg=float(gram.n_fg), n_bg=float(gram.n_bg),
                 latent_shape=list(gram.latent_shape), **extra)
    return _directions(w, X, k, gram.latent_shape, meta)


def resefa_from_factors(Jf, Jb, *, tau=1e-3, k=None, route="auto", n_fg=None, n_bg=None, latent_shape=None,
                        meta=None):
    """ReSeFa from the Jacobian factors themselves: ``fg = Jf^T Jf / n_fg``, ``bg = Jb^T Jb / n_bg``.

    Parameters
    ----------
    Jf : torch.Tensor
        ``(r, D)`` foreground Jacobian rows (for a soft mask ``w``, pass ``sqrt(w) * J`` and ``n_fg = sum(w)``).
    Jb : torch.Tensor
        ``(m, D)`` background Jacobian rows, or any factor with ``bg = Jb^T Jb / n_bg`` (e.g. ``V diag(s)`` of a
        truncated SVD, with ``n_bg = 1``).
    tau : float
        As in :func:`resefa`; the Woodbury route needs ``tau > 0`` (a thin ``Jb`` makes ``bg`` singular).
    k : int, optional
        Number of directions. Default: ``D`` on the dense route; ``min(r, D)`` on the Woodbury route with a thin
        ``Jf`` (the other eigenvalues are exactly 0).
    route : {"auto", "dense", "woodbury"}
        "auto" takes "woodbury" when ``m < D`` (``Jb`` is thin), else "dense". "dense" forms both ``(D, D)`` Grams
        and calls :func:`lowrankedit.ops.generalized_eigh`; "woodbury" calls
        :func:`lowrankedit.ops.generalized_eigh_woodbury` (Eq. 12), exact ``r x r`` reduction when ``r < D``.
    n_fg, n_bg : float, optional
        Normalizations; default the row counts (as the official code and :class:`lowrankedit.Gram`).
    latent_shape : tuple, optional
        Shape of one latent; default ``(D,)``.
    meta : dict, optional
        Provenance (generator, region, ...) to carry into the result.

    Returns
    -------
    Directions
        As :func:`resefa`; both routes give the same directions and scores (to rounding).

    Examples
    --------
    >>> import torch, lowrankedit
    >>> g = torch.Generator().manual_seed(0)
    >>> Jf, Jb = torch.randn(4, 64, generator=g, dtype=torch.float64), torch.randn(16, 64, generator=g, dtype=torch.float64)
    >>> a = lowrankedit.resefa_from_factors(Jf, Jb, k=2)
    >>> b = lowrankedit.resefa_from_factors(Jf, Jb, k=2, route="dense")
    >>> a.meta["route"], bool(torch.allclose(a.vectors, b.vectors)), bool(torch.allclose(a.scores, b.scores))
    ('woodbury', True, True)
    """
    op = "resefa_from_factors"
    for name, t in (("Jf", Jf), ("Jb", Jb)):
        V.tensor(t, name, op, ndim=2)
    if Jf.shape[1] != Jb.shape[1]:
        raise ValueError(f"{op}: expected Jf and Jb with the same D, got {tuple(Jf.shape)} and {tuple(Jb.shape)}")
    if route not in _ROUTES or route == "topk":
        raise ValueError(f"{op}: expected route in ('auto', 'dense', 'woodbury'), got {route!r}")
    (r, D), m = Jf.shape, Jb.shape[0]
    latent_shape = (D,) if latent_shape is None else V.shape(latent_shape, "latent_shape", op)
    tau = V.real(tau, "tau", op, min=0.0)
    if math.prod(latent_shape) != D:
        raise ValueError(f"{op}: latent_shape {latent_shape} does not match D = {D}")
    n_fg = V.positive(r if n_fg is None else n_fg, "n_fg", op)
    n_bg = V.positive(m if n_bg is None else n_bg, "n_bg", op)
    if route == "auto":
        route = "woodbury" if m < D else "dense"
    extra = dict(tau=float(tau), route=route, n_fg=n_fg, n_bg=n_bg, latent_shape=list(latent_shape))
    if route == "dense":
        k = _check_k(k, D, op)
        w, X = generalized_eigh(Jf.mT @ Jf / n_fg, Jb.mT @ Jb / n_bg, tau)
    else:
        Fb = Jb / math.sqrt(n_bg)
        if r < D:
            k = _check_k(k, r, op)
            w, X = generalized_eigh_woodbury(Fb, Fa=Jf / math.sqrt(n_fg), tau=tau, k=k)
        else:
            k = _check_k(k, D, op)
            w, X = generalized_eigh_woodbury(Fb, Jf.mT @ Jf / n_fg, tau=tau, k=k)
    return _directions(w, X, k, latent_shape, _meta(meta, k=k, **extra))
