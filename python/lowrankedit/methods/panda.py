"""PandA: unsupervised parts and appearances of a generator's feature maps (Oldfield et al., ICLR 2023).

A semi-nonnegative factorization of a layer's features ``Z_i (C, S)``: appearances ``A (C, Rc)`` (HOSVD-initialized,
free sign) and non-negative parts ``P (S, Rs)``, learnt by block-coordinate projected gradient descent on
``sum_i ||Z_i - A A^T Z_i P P^T||_F^2`` (Algorithm 1). Parts are spatial regions at the layer's resolution; adding
``alpha * a_j p^T`` to the features and running the rest of the generator edits part ``p`` with appearance ``a_j``.
"""
import math
import numbers

import torch
import torch.nn.functional as F

from .. import distributed
from .. import fileformat
from .. import validation as V
from ..models.protocol import check_generator, check_latents, check_layer, check_provenance, fingerprint
from ..ops.panda_grad import panda_step
from ..region import resample_area

_NEEDS = ("latent_shape", "sample_latents", "layers", "features", "synthesize_from")

# The two settings of :func:`panda`. "default": the deterministic spectral start of the parts, the bounded,
# line-searched steps (per sample independent of the batch), dead parts re-initialized, the tail of the run averaged
# (measured best, bench/bench_panda.py).
# "official": Algorithm 1 as the official code runs it (uniform random parts, fixed lr, batch 1).
PRESETS = {
    "default": {"batch_size": 16, "iters": 1000, "lr": None, "average": 0.5, "reinit_dead": True, "init": "svd"},
    "official": {"batch_size": 1, "iters": 10000, "lr": 1e-8, "average": 0.0, "reinit_dead": False,
                 "init": "random"},
}
INITS = ("svd", "random")
# Largest trial step, in units of the block's step bound 1 / L (_step_bounds, a worst-case bound). Measured on DCGAN
# block3 (128, 8), uncapped: accepted parts steps of 15-380 / L (median 56 at batch 1, 112 at batch 16): the line
# search fits one batch, the cap keeps a step from overfitting it. Under a cap the parts step is accepted at the cap
# at every iteration, so the cap is the step. At 16 / L, block4 (32, 8) at batch 16 ended 0.320 / 0.402 for seeds 0
# / 1 (256 samples, 400 steps; the batch order only): both at a training loss of 0.28, the seed-1 run moving between
# fits of the held-out's largest sample (55% of its energy) and batch 2 ending 0.319 there. At 8 / L: 0.323 / 0.314,
# every batch within 0.03 of batch 16 at block3 and block4 (bench/results/panda.md); 4 / L also holds but is slower
# (block3 (64, 8) at 400 steps: 0.460, against 0.445 at 16 / L). In the averaging window the cap decreases linearly
# (_cap_schedule): at block4, batch 1 settled at 0.422 with it, 0.430 with a 1 / t decrease.
STEP_CAP = 8.0
# The per-sample refinement (Eq. 6, refine_parts) keeps the cap it was measured with: each sample there is its own
# deterministic problem (no batches to move between).
REFINE_STEP_CAP = 16.0
# Below this batch the step cap shrinks in proportion to the batch (the linear scaling rule): every sample's gradient
# then moves the factors by the same amount at any batch size, and a run is set by the samples it sees (iters x
# batch), not by its iterations. Measured at DCGAN block4 (64, 8), seed 0: without it batch 1 and 2 ended 0.09 /
# 0.06 above batch 16 (more iterations made it worse: the noise of a one-sample step, not too few steps); with it
# and 16 / batch times the iterations, within 0.03 (bench/results/panda.md).
REFERENCE_BATCH = 16
DEAD_RELATIVE = 1e-6  # a part whose norm is at most this fraction of the largest part's norm is dead


def _check_features(features, who, shape=None):
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"{who}: expected features to be a torch.Tensor, got {type(features).__name__}")
    if features.dim() != 4:
        raise ValueError(f"{who}: expected features of shape (N, C, h, w), got {tuple(features.shape)}")
    if shape is not None and tuple(features.shape[1:]) != tuple(shape):
        raise ValueError(f"{who}: expected features of shape (N, {', '.join(map(str, shape))}) (the layer the parts "
                         f"were learnt at), got {tuple(features.shape)}")
    if not features.is_floating_point():
        raise TypeError(f"{who}: expected floating-point features, got {features.dtype}")
    if not torch.isfinite(features).all():
        raise ValueError(f"{who}: features contain NaN or Inf")
    return features


def _check_ranks(ranks, C, S, who="panda"):
    try:
        Rc, Rs = ranks
    except (TypeError, ValueError):
        raise TypeError(f"{who}: expected ranks as a pair (Rc, Rs), got {ranks!r}") from None
    for name, r, bound, what in (("Rc", Rc, C, "channels C"), ("Rs", Rs, S, "spatial positions S = h * w")):
        if not isinstance(r, numbers.Integral) or isinstance(r, bool):
            raise TypeError(f"{who}: expected {name} to be an int, got {type(r).__name__}")
        if not 1 <= r <= bound:
            raise ValueError(f"{who}: expected 1 <= {name} <= {bound} (the layer's {what}), got {name}={r}")
    return int(Rc), int(Rs)


def hosvd_appearances(features, rank):
    """The first ``rank`` left singular vectors of the mean channel scatter ``sum_i Z_i Z_i^T / N`` (Algorithm 1's
    initialization), as ``(C, rank)`` float64, each column's sign chosen so that its entries sum to >= 0.

    ``features``: ``(N, C, h, w)`` or ``(N, C, S)``. The scatter is symmetric PSD, so its eigenvectors (largest
    eigenvalue first) are its left singular vectors."""
    Z = features.reshape(features.shape[0], features.shape[1], -1)
    scatter = torch.zeros(Z.shape[1], Z.shape[1], dtype=torch.float64, device=Z.device)
    for chunk in Z.split(256):
        z = chunk.double().transpose(0, 1).reshape(Z.shape[1], -1)  # (C, n * S)
        scatter += z @ z.T
    scatter /= Z.shape[0]
    _, U = torch.linalg.eigh(scatter)
    U = U.flip(1)[:, :rank]
    sign = torch.where(U.sum(0) < 0, -1.0, 1.0).to(U)
    return U * sign


def svd_parts(Z, A, rank, *, iters=20, chunk=128):
    """A deterministic, data-driven start for the parts (NNDSVD-style), ``(S, rank)`` float64.

    The leading ``rank`` eigenvectors ``u_j`` of the spatial scatter ``M = sum_i Z_i^T A A^T Z_i`` (the parts that
    would be optimal without the non-negativity, for these appearances), each replaced by the larger (in norm) of
    its positive part ``max(u_j, 0)`` and its negative part ``max(-u_j, 0)``, normalized; then all scaled by the one
    factor ``c`` that minimizes the loss along ``c P`` (``c^2 = sum ||Y_i||^2 / sum <G_A Y_i G_P, Y_i>``).

    ``Z (N, C, S)``, ``A (C, Rc)``. ``M`` is never formed (it is ``S x S``): its eigenvectors come from ``iters``
    steps of subspace iteration with ``rank + 8`` columns, started from a fixed (seed 0) draw, so the result does
    not depend on the caller's seed. Measured on DCGAN block4 (64, 8), 256 samples, 400 steps at batch 16: held-out
    unexplained energy 0.305 / 0.296 for seeds 0 / 1 (uniform random start: 0.453 / 0.360, two local minima)."""
    N, C, S = Z.shape
    Ad = A.double()
    k = min(S, rank + 8)
    Az = A.to(Z.dtype)

    def scatter_times(Q):  # M Q = sum_i Z_i^T A A^T Z_i Q: 2 C S k per sample, nothing S x S; in Z's dtype (a
        # start needs no float64 products), accumulated in float64
        Q = Q.to(Z.dtype)
        return sum(torch.matmul(z.transpose(1, 2), torch.matmul(Az, torch.matmul(Az.T, torch.matmul(z, Q)))).sum(0)
                   .double() for z in Z.split(chunk))

    gen = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(S, k, generator=gen, dtype=torch.float64).to(Z.device))[0]
    for _ in range(int(iters)):
        Q = torch.linalg.qr(scatter_times(Q))[0]
    _, V = torch.linalg.eigh(Q.T @ scatter_times(Q))  # Rayleigh-Ritz: the eigenvectors in the subspace
    U = (Q @ V.flip(1))[:, :rank]
    pos, neg = U.clamp_min(0), (-U).clamp_min(0)
    P = torch.where((pos.norm(dim=0) >= neg.norm(dim=0))[None], pos, neg)
    P = P / P.norm(dim=0).clamp_min(1e-300)
    GA = Ad.T @ Ad
    K2 = K4 = 0.0
    for z in Z.split(chunk):
        _, Y, K = _quad(z.double(), Ad, GA, P.expand(z.shape[0], *P.shape))
        K2, K4 = K2 + float((Y * Y).sum()), K4 + float(((K + 2 * Y) * Y).sum())
    return P * (K2 / K4) ** 0.25 if K4 > 0 and K2 > 0 else P


def _quad(Z, A, GA, P):
    """Per-sample ``q_i = L_i - ||Z_i||^2`` and the products, for per-sample parts ``P (N, S, Rs)``."""
    X = torch.bmm(Z, P)                                   # (N, C, Rs)
    Y = torch.matmul(A.T, X)                              # (N, Rc, Rs)
    GP = torch.bmm(P.transpose(1, 2), P)                  # (N, Rs, Rs)
    K = torch.bmm(torch.matmul(GA, Y), GP) - 2 * Y        # (N, Rc, Rs)
    return (K * Y).sum((1, 2)), Y, K


def refine_parts(Z, A, P, *, iters=50, lr=None, max_backtracks=20):
    """Eq. 6: per-sample parts ``(N, S, Rs)``, projected gradient descent from the global ``P`` with ``A`` fixed.

    ``Z (N, C, S)``, ``A (C, Rc)``, ``P (S, Rs)``. Every sample is its own problem; they run together, each with its
    own Armijo-backtracked step, from ``lr`` (a float or ``(N,)``) or ``1 / ||Z_i||_F^2``. As in :func:`panda`, the
    trial is ``min(2 x last accepted step, 16 / L_i)`` with ``L_i`` the sample's Lipschitz bound
    (:func:`_step_bounds`), halved on every rejected trial, and a step that moved nothing does not grow. The
    gradient is the same re-associated one as :func:`lowrankedit.ops.panda_grad`, batched over per-sample parts
    (``torch.bmm``)."""
    N = Z.shape[0]
    GA = A.T @ A
    a = float(torch.linalg.eigvalsh(GA.double())[-1])
    sigma = spectral_sq(Z).to(Z)
    Pn = P.expand(N, *P.shape).clone()
    zsq = Z.pow(2).sum((1, 2))
    if lr is None:
        lr = 1.0 / zsq.clamp_min(torch.finfo(Z.dtype).tiny)
    lr = torch.as_tensor(lr, dtype=Z.dtype, device=Z.device).expand(N).clone()
    q, Y, K = _quad(Z, A, GA, Pn)
    for _ in range(int(iters)):
        g = 2 * (torch.bmm(Pn, torch.bmm(Y.transpose(1, 2), torch.matmul(GA, Y)))
                 + torch.bmm(Z.transpose(1, 2), torch.matmul(A, K)))
        bound, _ = _bounds(sigma, a, torch.linalg.matrix_norm(Pn, ord=2) ** 2)
        cap = torch.where(bound > 0, REFINE_STEP_CAP / bound.clamp_min(torch.finfo(Z.dtype).tiny), lr * 2)
        trial = torch.minimum(lr * 2, cap)
        pending = torch.ones(N, dtype=torch.bool, device=Z.device)
        moved = torch.zeros(N, dtype=torch.bool, device=Z.device)
        for _ in range(max_backtracks + 1):
            Pt = (Pn - trial[:, None, None] * g).clamp_min(0)
            qt, Yt, Kt = _quad(Z, A, GA, Pt)
            ok = pending & (qt <= q + 1e-4 * (g * (Pt - Pn)).sum((1, 2)))
            if ok.any():
                sel = ok[:, None, None]
                moved = moved | (ok & (Pt != Pn).flatten(1).any(1))
                Pn, Y, K = torch.where(sel, Pt, Pn), torch.where(sel, Yt, Y), torch.where(sel, Kt, K)
                q = torch.where(ok, qt, q)
                lr = torch.where(ok, trial, lr)
            pending = pending & ~ok
            if not pending.any():
                break
            trial = torch.where(pending, trial * 0.5, trial)
        lr = torch.where(pending, trial, lr)  # no decrease found: keep P_i, restart smaller next time
        lr = torch.where(moved | pending, lr, lr * 0.5)  # accepted without moving: no growth
    return Pn


class PartsAppearances:
    """Parts and appearances learnt by :func:`panda` at one layer of a generator.

    Attributes
    ----------
    appearances : torch.Tensor
        ``(C, Rc)``, the appearance factors ``A`` (columns; the first ones from the HOSVD are the most frequent).
    parts : torch.Tensor
        ``(S, Rs)``, non-negative parts factors ``P``, ``S = h * w`` in row-major order.
    layer : str
        The generator layer.
    feature_shape : tuple
        ``(C, h, w)`` of that layer.
    meta : dict
        Method, generator fingerprint, ranks, parameters, final step sizes, and the loss after every iteration:
        ``history`` (per sample, ``L_batch / batch``) and ``history_relative`` (``L_batch / ||Z_batch||^2``, the
        fraction of the batch's energy left unexplained).
    generator : object or None
        The generator used by :meth:`edit` (not saved; pass it to :meth:`load`).
    """

    def __init__(self, appearances, parts, layer, feature_shape, meta=None, generator=None):
        C, h, w = (int(v) for v in feature_shape)
        if appearances.dim() != 2 or appearances.shape[0] != C:
            raise ValueError(f"PartsAppearances: expected appearances of shape ({C}, Rc), got "
                             f"{tuple(appearances.shape)}")
        if parts.dim() != 2 or parts.shape[0] != h * w:
            raise ValueError(f"PartsAppearances: expected parts of shape ({h * w}, Rs), got {tuple(parts.shape)}")
        self.appearances = appearances
        self.parts = parts
        self.layer = layer
        self.feature_shape = (C, h, w)
        self.meta = dict(meta or {})
        self.generator = generator

    @property
    def ranks(self):
        return (self.appearances.shape[1], self.parts.shape[1])

    def __repr__(self):
        C, h, w = self.feature_shape
        return f"PartsAppearances(layer={self.layer!r}, feature_shape=({C}, {h}, {w}), ranks={self.ranks})"

    # ------------------------------------------------------------------ helpers
    def _unfold(self, features, who):
        _check_features(features, who, self.feature_shape)
        Z = features.reshape(features.shape[0], self.feature_shape[0], -1)
        dtype = Z.dtype if Z.dtype in (torch.float32, torch.float64) else torch.float32
        return Z.to(dtype), self.appearances.to(Z.device, dtype), self.parts.to(Z.device, dtype)

    def _part_index(self, k, who):
        if not isinstance(k, numbers.Integral) or isinstance(k, bool):
            raise TypeError(f"{who}: expected a part index (int), got {type(k).__name__}")
        if not 0 <= k < self.parts.shape[1]:
            raise ValueError(f"{who}: part index {k} out of range: there are {self.parts.shape[1]} parts")
        return int(k)

    def locality(self, top=0.1):
        """How concentrated each part is in space: the fraction of part ``k``'s mass in its top ``top`` fraction of
        pixels, ``(Rs,)``. A part spread evenly scores ``top``; one confined to that many pixels scores 1."""
        P = self.parts.double().clamp_min(0)
        n = max(1, int(math.ceil(top * P.shape[0])))
        return P.topk(n, dim=0).values.sum(0) / P.sum(0).clamp_min(1e-300)

    def part_map(self, part):
        """The spatial map an edit adds the appearance over, ``(h, w)`` in [0, 1]: the chosen parts' columns summed
        and min-max scaled (as the official code), or a hand-drawn mask ``(h, w)`` / ``(H, W)`` resampled to the
        layer by area averaging (pixel-level control)."""
        _, h, w = self.feature_shape
        if isinstance(part, torch.Tensor) and part.is_floating_point() and part.dim() == 2:
            m = part.detach().to(self.parts.device, torch.float64)
            if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
                raise ValueError("PartsAppearances.part_map: expected a mask with values in [0, 1]")
            return resample_area(m, h, w).to(self.parts.dtype)
        idx = [part] if isinstance(part, numbers.Integral) and not isinstance(part, bool) else part
        try:
            idx = [self._part_index(k, "PartsAppearances.part_map") for k in idx]
        except TypeError:
            raise TypeError("PartsAppearances.part_map: expected part as an int, a list of ints or a float mask "
                            f"(h, w) / (H, W), got {part!r}") from None
        if not idx:
            raise ValueError("PartsAppearances.part_map: expected at least one part index")
        p = self.parts[:, idx].sum(1).reshape(h, w)
        lo, hi = p.min(), p.max()
        return (p - lo) / (hi - lo) if hi > lo else torch.zeros_like(p)

    # ------------------------------------------------------------------ Eq. 6, editing, saliency
    def refine(self, features, *, iters=50, lr=None):
        """Per-sample parts (Eq. 6): ``(N, S, Rs)``, from the global parts with the appearances fixed.

        ``features``: ``(N, C, h, w)`` at :attr:`layer`. ``lr`` defaults to the training's last parts step times its
        batch size (the per-sample loss is a ``1 / batch`` share of a batch's), each sample then line-searched under
        the same bounded step rule as :func:`panda`. The same end-of-run rule as :func:`panda` applies: a sample
        whose refined parts include a dead part that was alive in the global parts, or whose loss did not decrease,
        warns (``RuntimeWarning``); ``meta["refine"]`` records the last call (``dead``: per sample, the parts that
        died; ``no_progress``: the samples whose loss did not decrease; ``warnings``)."""
        Z, A, P = self._unfold(features, "PartsAppearances.refine")
        with torch.no_grad():
            Pi = refine_parts(Z, A, P, iters=iters, lr=self._refine_lr() if lr is None else lr)
            was_dead = set(dead_parts(P))
            dead = [[k for k in row.nonzero().flatten().tolist() if k not in was_dead] for row in dead_parts(Pi)]
            before, zsq = _losses(Z, A, P)
            start, end = before / zsq.clamp_min(1e-300), _losses(Z, A, Pi)[0] / zsq.clamp_min(1e-300)
        no_progress = (~(end < start)).nonzero().flatten().tolist()
        problems = []
        if any(dead):
            problems += _check_result("PartsAppearances.refine", {i: d for i, d in enumerate(dead) if d}, 1, 0, "")
        if no_progress:
            problems += _check_result("PartsAppearances.refine", [], float(start[no_progress].mean()),
                                      float(end[no_progress].mean()), f"per-sample (samples {no_progress})")
        self.meta["refine"] = {"dead": dead, "no_progress": no_progress, "warnings": problems}
        return Pi

    def _refine_lr(self):
        if self.meta.get("lr_parts"):
            return float(self.meta["lr_parts"]) * float(self.meta.get("batch_size", 1))
        return None

    def saliency(self, features, k, *, refine=True, kind="part", iters=30):
        """Where concept ``k`` is in each sample: ``(N, h, w)`` float in [0, 1].

        ``kind="part"`` (default): part ``k`` of each sample's refined parts (Eq. 6, ``refine=True``; ``iters``
        steps) or of the global parts (``refine=False``, the same map for every sample), divided by its maximum per
        sample. ``kind="appearance"``: the paper's saliency of appearance ``k`` (section 4.1.2),
        ``m_ik = a_k^T Z_i``, min-max scaled per sample.

        Computed without gradients (a mask, not a loss). Cost at DCGAN block3, 4 samples, one CPU thread: about
        65 ms with refinement (30 line-searched steps for all samples at once), 2 ms without."""
        Z, A, P = self._unfold(features, "PartsAppearances.saliency")
        N, (_, h, w) = Z.shape[0], self.feature_shape
        with torch.no_grad():
            if kind == "part":
                k = self._part_index(k, "PartsAppearances.saliency")
                if refine:
                    s = refine_parts(Z, A, P, iters=iters, lr=self._refine_lr())[:, :, k]
                else:
                    s = P[:, k].expand(N, -1)
                s = s / s.amax(1, keepdim=True).clamp_min(torch.finfo(s.dtype).tiny)
            elif kind == "appearance":
                if not isinstance(k, numbers.Integral) or isinstance(k, bool) or not 0 <= k < A.shape[1]:
                    raise ValueError(f"PartsAppearances.saliency: appearance index {k!r} out of range: there are "
                                     f"{A.shape[1]} appearances")
                s = torch.matmul(A[:, k], Z)  # (N, S)
                lo, hi = s.amin(1, keepdim=True), s.amax(1, keepdim=True)
                s = (s - lo) / (hi - lo).clamp_min(torch.finfo(s.dtype).tiny)
            else:
                raise ValueError(f"PartsAppearances.saliency: expected kind 'part' or 'appearance', got {kind!r}")
        return s.clamp(0, 1).reshape(N, h, w)

    def masks(self, features, k, threshold=None, *, refine=True, kind="part", iters=30):
        """Binary masks ``(N, h, w)`` (float 0/1) of concept ``k``.

        With ``threshold``: ``saliency(...) >= threshold``. Without: for parts, the pixels whose largest (refined)
        part is ``k``; for appearances, the paper's rule (section 4.1.2) ``a_k^T Z_i >= mu_k`` with ``mu_k`` the mean
        of ``a_k^T Z`` over the given samples and pixels."""
        if threshold is not None:
            t = float(threshold)
            if not 0 <= t <= 1:
                raise ValueError(f"PartsAppearances.masks: expected threshold in [0, 1], got {threshold!r}")
            return (self.saliency(features, k, refine=refine, kind=kind, iters=iters) >= t).to(features.dtype)
        Z, A, P = self._unfold(features, "PartsAppearances.masks")
        N, (_, h, w) = Z.shape[0], self.feature_shape
        with torch.no_grad():
            if kind == "part":
                k = self._part_index(k, "PartsAppearances.masks")
                Pi = self.refine(features, iters=iters) if refine else P.expand(N, -1, -1)
                m = (Pi.argmax(2) == k) & (Pi[:, :, k] > 0)
            elif kind == "appearance":
                if not isinstance(k, numbers.Integral) or isinstance(k, bool) or not 0 <= k < A.shape[1]:
                    raise ValueError(f"PartsAppearances.masks: appearance index {k!r} out of range: there are "
                                     f"{A.shape[1]} appearances")
                s = torch.matmul(A[:, k], Z)
                m = s >= s.mean()
            else:
                raise ValueError(f"PartsAppearances.masks: expected kind 'part' or 'appearance', got {kind!r}")
        return m.reshape(N, h, w).to(features.dtype)

    def edit(self, latents, part, appearance, alpha, *, generator=None, force=False):
        """Images with appearance ``appearance`` added at ``part``: ``G_[l:](Z + alpha * a_j p^T)``, ``(n, 3, H, W)``.

        Parameters
        ----------
        latents : ``(n, *latent_shape)``, finite
        part : int, list of ints, or float mask ``(h, w)`` / ``(H, W)`` in [0, 1]
            Parts (summed and min-max scaled, as the official code) or a hand-drawn region (pixel-level control).
        appearance : int or ``(C,)`` tensor
            Column of :attr:`appearances`, or any finite channel vector.
        alpha : float
            Finite magnitude (its sign matters: appearances have a free sign).
        generator : optional, defaults to :attr:`generator`; must be the one the parts were learnt on (its
            fingerprint is in ``meta``) unless ``force=True``.
        """
        who = "PartsAppearances.edit"
        G = generator if generator is not None else self.generator
        if G is None:
            raise ValueError(f"{who}: no generator: pass generator=G (or load(path, generator=G))")
        check_generator(G, _NEEDS, who)
        check_layer(G, self.layer, who)
        check_provenance(self.meta, G, who, force=V.boolean(force, "force", who))
        check_latents(G, latents, who)
        alpha = V.real(alpha, "alpha", who)
        if isinstance(appearance, torch.Tensor):
            a = V.tensor(appearance, "appearance", who).detach().reshape(-1)
            if a.numel() != self.feature_shape[0]:
                raise ValueError(f"{who}: expected an appearance vector of {self.feature_shape[0]} "
                                 f"channels, got shape {tuple(appearance.shape)}")
        elif isinstance(appearance, numbers.Integral) and not isinstance(appearance, bool):
            if not 0 <= appearance < self.appearances.shape[1]:
                raise ValueError(f"{who}: appearance index {appearance} out of range: there are "
                                 f"{self.appearances.shape[1]} appearances")
            a = V.tensor(self.appearances[:, int(appearance)], f"appearances[:, {int(appearance)}]", who)
        else:
            raise TypeError(f"{who}: expected appearance as an int or a (C,) tensor, "
                            f"got {type(appearance).__name__}")
        V.tensor(self.parts, "parts", who)
        p = self.part_map(part)
        with torch.no_grad():
            Z = G.features(latents, self.layer)
            direc = float(alpha) * a.to(Z)[:, None, None] * p.to(Z)[None]
            return G.synthesize_from(Z + direc, self.layer, latents)

    # ------------------------------------------------------------------ persistence
    def save(self, path):
        """Write in the safe file format (:mod:`lowrankedit.fileformat`), atomically. The generator is not saved."""
        fileformat.save(path, "parts_appearances", {"appearances": self.appearances, "parts": self.parts},
                        {"layer": self.layer, "feature_shape": list(self.feature_shape), "meta": self.meta})

    @classmethod
    def load(cls, path, generator=None, force=False):
        """Read a file written by :meth:`save` (no code from the file runs). With ``generator``, the file must have
        been made for it (same fingerprint, the layer present) unless ``force=True``. Raises
        :class:`lowrankedit.FileFormatError` for a broken, foreign or wrong-kind file."""
        tensors, meta = fileformat.load(path, "parts_appearances")
        try:
            pa = cls(tensors["appearances"], tensors["parts"], meta["layer"], tuple(meta["feature_shape"]),
                     meta["meta"], generator)
        except (KeyError, TypeError, ValueError) as exc:
            raise fileformat.FileFormatError(path, f"not a valid PartsAppearances file ({exc})") from None
        for name in ("appearances", "parts"):
            V.tensor(getattr(pa, name), name, f"PartsAppearances.load({str(path)!r})")
        if generator is not None:
            check_provenance(pa.meta, generator, f"PartsAppearances.load({str(path)!r})",
                             force=V.boolean(force, "force", "PartsAppearances.load"))
        return pa


def _sample_features(G, layer, n, seed, chunk=256):
    out = []
    with torch.no_grad():
        lat = G.sample_latents(n, seed=seed)
        for z in lat.split(chunk):
            out.append(G.features(z, layer))
    return torch.cat(out)


def _cap_schedule(t, start, total):
    """Factor on the step cap at iteration ``t``: 1 before ``start``, then decreasing so that stochastic batches
    settle (linearly to ``1 / total`` at the end)."""
    if t < start:
        return 1.0
    return max(1.0 / total, (total - t) / (total - start))


def spectral_sq(Z, chunk=256):
    """``||Z_i||_2^2`` (squared largest singular value) of every sample, ``(N,)`` float64. ``Z``: ``(N, C, S)``."""
    return torch.cat([torch.linalg.matrix_norm(z.double(), ord=2) ** 2 for z in Z.split(chunk)])


def _step_bounds(sigma, A, P):
    """Upper bounds ``(L_P, L_A)`` on the Lipschitz constants of the parts and appearances gradients near ``(A, P)``.

    ``sigma`` bounds ``lambda_max(sum_i Z_i Z_i^T)`` over the batch (the sum of the samples' ``||Z_i||_2^2``; in
    :func:`panda`, ``B`` times the pool's mean, so a bound on average over the batches, not on each one). With
    ``a = ||A||_2^2``, ``p = ||P||_2^2``: the loss is ``sum ||Z_i||^2 - 2 ||A^T Z_i P||^2 + <G_A Y_i G_P, Y_i>``;
    the quadratic term's Hessian is at most ``4 sigma a`` (parts) / ``4 sigma p`` (appearances) and the quartic
    term's at most ``12 sigma a^2 p`` / ``12 sigma p^2 a``. Both are scale-covariant (features times ``c``: bounds
    times ``c^2``) and finite where the parts vanish, so steps taken under them cannot run away."""
    a = float(torch.linalg.eigvalsh((A.T @ A).double())[-1])
    p = float(torch.linalg.eigvalsh((P.T @ P).double())[-1])
    return _bounds(sigma, a, p)


def _bounds(sigma, a, p):
    """The formula of :func:`_step_bounds` from ``sigma``, ``a = ||A||_2^2``, ``p = ||P||_2^2`` (floats or
    tensors, e.g. per sample)."""
    return sigma * a * (4 + 12 * a * p), sigma * p * (4 + 12 * a * p)


def dead_parts(P):
    """Indices of the dead columns of parts ``P (..., S, Rs)``: norm at most ``1e-6`` times the largest column's norm
    (all of them when every column is zero). For a batch ``(N, S, Rs)``, a boolean ``(N, Rs)`` instead."""
    norms = P.double().norm(dim=-2)
    dead = norms <= DEAD_RELATIVE * norms.amax(-1, keepdim=True)
    return dead if P.dim() == 3 else dead.nonzero().flatten().tolist()


def _reinit_parts(P, dead, gen):
    """Re-draw the dead columns uniformly in ``[0, 2 m]``, ``m`` the mean entry of the living parts (the initial
    ``[0, 0.01]`` when none lives), so a restarted part enters at the scale of the others."""
    live = [k for k in range(P.shape[1]) if k not in dead]
    top = 2 * float(P[:, live].double().mean()) if live else 0.01
    if not top > 0:
        top = 0.01
    new = torch.rand(P.shape[0], len(dead), generator=gen, dtype=torch.float64) * top
    P = P.clone()
    P[:, dead] = new.to(P)
    return P


def unexplained(Z, A, P):
    """Fraction of the features' energy the factors leave unexplained, ``sum_i L_i / sum_i ||Z_i||^2`` (float64).

    ``Z (N, C, S)``, ``A (C, Rc)``, parts ``P (S, Rs)`` or per-sample ``(N, S, Rs)``."""
    loss, zsq = _losses(Z, A, P)
    return float(loss.sum() / zsq.sum().clamp_min(1e-300))


def _losses(Z, A, P):
    """Per-sample losses ``L_i`` and energies ``||Z_i||^2``, ``(N,)`` float64 each."""
    Z, A, P = Z.double(), A.double(), P.double()
    Pn = P.expand(Z.shape[0], *P.shape) if P.dim() == 2 else P
    q, _, _ = _quad(Z, A, A.T @ A, Pn)
    zsq = Z.pow(2).sum((1, 2))
    return zsq + q, zsq


def _check_result(who, dead, start, end, check_on):
    """The end-of-run rule shared by :func:`panda` and :meth:`PartsAppearances.refine`: dead parts, or a loss no
    better than at the start, warn and are returned as messages for ``meta``."""
    import warnings

    problems = []
    if dead:
        problems.append(f"{who}: the factorization ended with dead parts (all zero): {dead}")
    if not end < start:
        problems.append(f"{who}: the {check_on} loss did not improve: unexplained energy {start:.4g} at the start, "
                        f"{end:.4g} at the end")
    for msg in problems:
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
    return problems


def _resolve(name, value, preset):
    return PRESETS[preset][name] if value is None else value


def panda(G, layer, *, ranks=(64, 8), n_samples=1024, batch_size=None, iters=None, lr=None, preset="default",
          average=None, reinit_dead=None, init=None, held_out=None, init_parts=None, eval_every=None, seed=0,
          features=None,
          dtype=torch.float32, progress=True):
    """Learn parts and appearances at one layer of a generator (PandA, Algorithm 1).

    Parameters
    ----------
    G : generator
        With ``sample_latents``, ``features``, ``synthesize_from`` and ``layers`` (see docs/generators.md).
    layer : str
        One of ``G.layers``.
    ranks : (int, int)
        ``(Rc, Rs)``: appearances ``1 <= Rc <= C`` and parts ``1 <= Rs <= h * w``.
    n_samples : int
        Size of the pool of features sampled once from ``G`` (seeds ``seed``); each iteration draws a random batch
        from the pool's training part. The HOSVD initialization uses the training part.
    batch_size, iters, lr, average, reinit_dead, init : optional
        ``None`` takes the value of ``preset``; a value given overrides it.

        * ``batch_size``: samples per iteration (gradients summed over the batch, as in the official code). With
          ``lr=None`` the step per sample does not depend on the batch (see ``lr``), so a run is set by the samples
          it sees, ``iters x batch_size``: at DCGAN block3 and block4, batch 1, 2 and 4 with ``16 / batch`` times
          the iterations end within 0.03 of batch 16 (bench/results/panda.md).
        * ``iters``: iterations of Algorithm 1. Under ``preset="default"`` and ``lr=None``, leaving it ``None``
          gives ``1000 x 16 / batch_size`` below batch 16 (the samples batch 16 sees in 1000 iterations), 1000
          otherwise; ``meta["iters"]`` records the count run. An ``iters`` given explicitly is run as given, so a
          batch below 16 then sees only ``batch_size / 16`` of the samples batch 16 sees and ends behind it: at
          DCGAN block4 (64, 8), 128 samples, 100 iterations each, batch 1 ends at 0.396 against batch 16's 0.321
          (held-out unexplained energy). Not a fault of the step rule: give small batches proportionally more
          iterations (or leave ``iters=None``).
        * ``lr``: ``None``: no hand tuning. Each block's step is Armijo-backtracked from ``min(2 x last accepted
          step, 8 s / L)``, with ``L`` an upper bound on the block's Lipschitz constant computed every iteration from
          ``||A||_2``, ``||P||_2`` and ``B`` times the pool's mean ``||Z_i||_2^2`` (scale-free: features times ``c``
          give the same factors), and ``s = min(1, B / 16)`` (``meta["step_scale"]``, the linear scaling rule).
          The bound is the same whichever samples a batch holds (one from the batch's own samples would weight
          sample ``i`` by ``1 / ||Z_i||_2^2`` at batch 1, a biased descent), and ``s`` keeps a one-sample step from
          being 16 times as noisy as a batch-16 one: at block4, without them, batch 1 and 2 ended 0.09 / 0.06
          above batch 16 at any number of iterations. A step that does not move the factors does not grow the
          next one, so no step can run away, even where parts vanish. A float: Algorithm 1 with that fixed step for
          both blocks, no line search, no bound.
        * ``average``: fraction of the run, at its end, over which the iterates are averaged (0: return the last
          iterate), while the cap ``8 s / L`` decreases linearly to ``1 / iters`` of itself. The result then does not
          depend on the last few batches.
        * ``reinit_dead``: re-draw a part whose norm falls to ``1e-6`` of the largest one's (a dead part receives
          no gradient and would stay dead); ``meta["reinitialized"]`` counts them.
        * ``init``: the parts' start. ``"svd"``: deterministic, from the leading eigenvectors of the spatial scatter
          of the features seen through the HOSVD appearances, each cut to its dominant sign (NNDSVD-style,
          :func:`svd_parts`), so the factorization does not land in a different local minimum for each seed.
          ``"random"``: uniform in ``[0, 0.01]`` (the paper's).
    preset : {"default", "official"}
        ``"default"``: ``batch_size=16, iters=1000`` (``x 16 / batch_size`` below batch 16), ``lr=None,
        average=0.5, reinit_dead=True, init="svd"``.
        ``"official"``: the paper's Algorithm 1 as its official code runs it: ``batch_size=1, iters=10000,
        lr=1e-8`` (fixed, gradients summed), ``average=0, reinit_dead=False, init="random"``.
    held_out : int or tensor, optional
        Features for the end-of-run check and ``meta["held_out_curve"]``: an int takes that many samples off the end
        of the pool (not trained on; default ``min(64, N // 8)``, 0 when the pool has fewer than 16 samples, then
        the check uses the training pool); a ``(M, C, h, w)`` tensor is used as given.
    init_parts : ``(S, Rs)`` tensor, optional
        Non-negative initial parts instead of those of ``init``.
    eval_every : int, optional
        Record the held-out unexplained energy every this many iterations (default ``max(1, iters // 20)``).
    seed : int
        Seeds the pool's latents, the parts' initialization (``init="random"``), re-initializations and the batch
        order.
    features : ``(N, C, h, w)`` tensor, optional
        Use these features instead of sampling from ``G``.
    dtype : torch dtype
        float32 (default) or float64 for the optimization.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    PartsAppearances
        ``meta`` holds the settings, ``history`` (per-sample loss of each batch), ``history_relative`` (fraction of
        each batch's energy unexplained) and ``history_relative_mean`` (its running mean over the last
        ``max(1, min(100, iters // 10))`` iterations), ``held_out_curve`` (``[iteration, seconds, unexplained]``),
        ``held_out_start`` / ``held_out_end``, ``step_scale`` (``min(1, B / 16)``, ``None`` with a fixed ``lr``),
        ``dead_parts``, ``reinitialized``, ``init`` (``"given"`` with
        ``init_parts``) and ``warnings``.

    Warns
    -----
    RuntimeWarning
        When the factorization ends with dead parts, or its held-out loss is no better than at the initialization
        (also recorded in ``meta["warnings"]``), or a fixed ``lr`` made the loss non-finite (the last finite factors
        are returned).

    Examples
    --------
    >>> import lowrankedit
    >>> G = lowrankedit.models.dcgan_digiface()
    >>> pa = lowrankedit.panda(G, "block2", ranks=(32, 4), n_samples=64, iters=20, progress=False)
    >>> pa.appearances.shape, pa.parts.shape, bool((pa.parts >= 0).all())
    (torch.Size([256, 32]), torch.Size([64, 4]), True)
    """
    import time
    import warnings

    check_generator(G, _NEEDS, "panda")
    check_layer(G, layer, "panda")
    if preset not in PRESETS:
        raise ValueError(f"panda: expected preset to be one of {sorted(PRESETS)}, got {preset!r}")
    iters_given = iters is not None
    batch_size, iters = _resolve("batch_size", batch_size, preset), _resolve("iters", iters, preset)
    lr, average = _resolve("lr", lr, preset), _resolve("average", average, preset)
    reinit_dead = _resolve("reinit_dead", reinit_dead, preset)
    init = _resolve("init", init, preset)
    if init not in INITS:
        raise ValueError(f"panda: expected init to be one of {list(INITS)}, got {init!r}")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"panda: expected dtype float32 or float64, got {dtype}")
    for name, v in (("n_samples", n_samples), ("batch_size", batch_size), ("iters", iters)):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < (0 if name == "iters" else 1):
            raise ValueError(f"panda: expected {name} to be a {'non-negative' if name == 'iters' else 'positive'} "
                             f"int, got {v!r}")
    if not isinstance(average, numbers.Real) or isinstance(average, bool) or not 0 <= average < 1:
        raise ValueError(f"panda: expected average to be a fraction in [0, 1), got {average!r}")
    if not isinstance(reinit_dead, bool):
        raise TypeError(f"panda: expected reinit_dead to be a bool, got {type(reinit_dead).__name__}")
    if eval_every is not None and (not isinstance(eval_every, numbers.Integral) or isinstance(eval_every, bool)
                                   or eval_every < 1):
        raise ValueError(f"panda: expected eval_every to be a positive int, got {eval_every!r}")
    if lr is not None:
        try:
            lr = V.positive(lr, "lr", "panda")
        except ValueError:
            raise V.ArgumentError(f"panda: expected lr to be None (automatic) or a finite positive float, "
                                  f"got {V._got(lr)}") from None
    seed = V.integer(seed, "seed", "panda")
    V.boolean(progress, "progress", "panda")
    if features is None:
        features = _sample_features(G, layer, int(n_samples), seed)
    _check_features(features, "panda")
    N, C, h, w = features.shape
    Rc, Rs = _check_ranks(ranks, C, h * w)
    Z = features.detach().reshape(N, C, h * w).to(dtype).contiguous()

    # held-out features: the end of the pool (never trained on) or given
    if isinstance(held_out, torch.Tensor):
        _check_features(held_out, "panda", (C, h, w))
        Zh = held_out.detach().reshape(held_out.shape[0], C, h * w).to(dtype)
        check_on = "held-out"
    else:
        if held_out is None:
            held_out = min(64, N // 8) if N >= 16 else 0
        if not isinstance(held_out, numbers.Integral) or isinstance(held_out, bool) or not 0 <= held_out < N:
            raise ValueError(f"panda: expected held_out to be a tensor of features or an int in [0, {N - 1}] (the "
                             f"pool has {N} samples), got {held_out!r}")
        if held_out:
            Z, Zh, check_on = Z[:N - held_out], Z[N - held_out:], "held-out"
        else:
            Zh, check_on = Z, "training"
    N = Z.shape[0]

    A = hosvd_appearances(Z, Rc).to(dtype)
    gen = torch.Generator().manual_seed(int(seed))
    P = (torch.rand(h * w, Rs, generator=gen, dtype=torch.float64) * 0.01).to(Z.device, dtype)  # drawn always:
    # the generator's later draws (batches, re-initializations) then do not depend on init
    if init_parts is None and init == "svd":
        P = svd_parts(Z, A, Rs).to(dtype)
    if init_parts is not None:
        if not isinstance(init_parts, torch.Tensor) or tuple(init_parts.shape) != (h * w, Rs):
            raise ValueError(f"panda: expected init_parts to be a tensor of shape ({h * w}, {Rs}), got "
                             f"{tuple(init_parts.shape) if isinstance(init_parts, torch.Tensor) else init_parts!r}")
        if not torch.isfinite(init_parts).all() or float(init_parts.min()) < 0:
            raise ValueError("panda: expected init_parts to be finite and non-negative")
        P = init_parts.detach().to(Z.device, dtype).clone()
    start = unexplained(Zh, A, P)

    B = min(int(batch_size), N)
    iters = int(iters)
    line_search, scale = lr is None, 1.0
    if line_search:
        # the step per sample does not depend on the batch (below), so a batch smaller than REFERENCE_BATCH needs
        # proportionally more iterations to see as many samples: the default counts samples, not iterations
        scale = min(1.0, B / REFERENCE_BATCH)
        if not iters_given and preset == "default":
            iters = int(math.ceil(iters / scale))
    # the pool's mean ||Z_i||_2^2: a batch's bound is B times it, the same whichever samples the batch holds (a
    # bound from the batch's own samples weights sample i by 1 / ||Z_i||_2^2 at batch 1: a biased descent)
    sigma_mean = float(spectral_sq(Z).mean()) if line_search else None
    zsq_pool = Z.double().pow(2).sum((1, 2))
    lr_P = lr_A = float(lr) if lr is not None else None
    avg_from = iters - int(round(average * iters)) if average > 0 else iters
    A_sum = P_sum = None
    n_avg = 0
    every = int(eval_every) if eval_every is not None else max(1, iters // 20)
    window = max(1, min(100, iters // 10))
    history, relative, running, curve, reinit_log, problems = [], [], [], [], [], []
    from tqdm.auto import tqdm

    def current():
        return (A_sum / n_avg, P_sum / n_avg) if n_avg else (A, P)

    t0 = time.perf_counter()
    bar = tqdm(range(iters), desc=f"panda {layer}", disable=not distributed.show_progress(progress), leave=False)
    step = distributed.panda_step if distributed.active() else panda_step  # data-parallel over the batch
    for t in bar:
        idx = torch.randperm(N, generator=gen)[:B].to(Z.device)
        Zb = Z.index_select(0, idx)
        zsq = float(zsq_pool[idx].sum())
        if line_search:
            bound_P, bound_A = _step_bounds(B * sigma_mean, A, P)
            cap = STEP_CAP * scale * _cap_schedule(t, avg_from, iters)
            cap_P = cap / bound_P if bound_P > 0 else math.inf
            cap_A = cap / bound_A if bound_A > 0 else math.inf
            trial_P = cap_P if lr_P is None else min(2 * lr_P, cap_P)
            trial_A = cap_A if lr_A is None else min(2 * lr_A, cap_A)
            if not math.isfinite(trial_A):  # parts all zero: no appearance gradient, any step is a no-op
                trial_A = 0.0
            out = step(Zb, A, P, trial_P, trial_A, line_search=True, max_backtracks=20)
            # a step that moved nothing is no progress: the next trial does not grow (a dead block's gradient is
            # zero or projected away, so every trial would pass the Armijo test)
            moved_P, moved_A = not torch.equal(out.parts, P), not torch.equal(out.appearances, A)
            lr_P = out.lr_parts if moved_P else (trial_P * 2.0 ** -10 if out.lr_parts == 0 else trial_P / 2)
            lr_A = out.lr_appearances if moved_A else (trial_A * 2.0 ** -10 if out.lr_appearances == 0
                                                        else trial_A / 2)
        else:
            out = step(Zb, A, P, lr_P, lr_A, line_search=False)
            if not (math.isfinite(float(out.new_loss)) and bool(torch.isfinite(out.parts).all())
                    and bool(torch.isfinite(out.appearances).all())):
                msg = (f"panda: the fixed lr={lr:g} made the loss non-finite at iteration {t}; returning the last "
                       "finite factors")
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                problems.append(msg)
                break
        A, P = out.appearances, out.parts
        if reinit_dead:
            dead = dead_parts(P)
            if dead:
                P = _reinit_parts(P, dead, gen)
                reinit_log.append([t, dead])
                lr_P = None  # the bound restarts the search at the new parts
                if n_avg:  # an average across a restart mixes two different parts: restart it too
                    A_sum, P_sum, n_avg = None, None, 0
        if t >= avg_from:
            A_sum = A.double() if A_sum is None else A_sum + A.double()
            P_sum = P.double() if P_sum is None else P_sum + P.double()
            n_avg += 1
        history.append(float(out.new_loss) / B)
        relative.append(float(out.new_loss) / zsq)
        running.append(sum(relative[-window:]) / len(relative[-window:]))
        if (t + 1) % every == 0 or t + 1 == iters:
            Ac, Pc = current()
            curve.append([t + 1, time.perf_counter() - t0, unexplained(Zh, Ac, Pc)])
        if progress and len(history) % 10 == 1:
            bar.set_postfix(unexplained=f"{running[-1]:.3f}", reinit=len(reinit_log))
    seconds = time.perf_counter() - t0
    if n_avg:
        A, P = (v.to(dtype) for v in current())
    end = unexplained(Zh, A, P)
    dead = dead_parts(P)
    problems += _check_result("panda", dead, start, end, check_on)
    meta = {"method": "panda", "generator": fingerprint(G), "layer": layer, "ranks": [Rc, Rs], "preset": preset,
            "n_samples": N, "batch_size": B, "iters": iters, "lr": lr,
            "step_scale": scale if line_search else None, "average": float(average),
            "averaged_iterates": n_avg, "reinit_dead": reinit_dead,
            "init": "given" if init_parts is not None else init, "seed": int(seed), "lr_parts": lr_P,
            "lr_appearances": lr_A, "history": history, "history_relative": relative,
            "history_relative_mean": running, "held_out": int(Zh.shape[0]), "checked_on": check_on,
            "held_out_start": start, "held_out_end": end, "held_out_curve": curve, "dead_parts": dead,
            "reinitialized": sum(len(d) for _, d in reinit_log), "reinit_log": reinit_log, "seconds": seconds,
            "warnings": problems, "dtype": str(dtype).replace("torch.", "")}
    return PartsAppearances(A, P, layer, (C, h, w), meta, generator=G)
