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

from .. import fileformat
from .. import validation as V
from ..models.protocol import check_generator, check_latents, check_layer, check_provenance, fingerprint
from ..ops.panda_grad import panda_step
from ..region import resample_area

_NEEDS = ("latent_shape", "sample_latents", "layers", "features", "synthesize_from")


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
    own Armijo-backtracked step (grown x2 after every accepted step, halved on every rejected trial), from ``lr``
    (a float or ``(N,)``) or ``1 / ||Z_i||_F^2``. The gradient is the same re-associated one as
    :func:`lowrankedit.ops.panda_grad`, batched over per-sample parts (``torch.bmm``)."""
    N = Z.shape[0]
    GA = A.T @ A
    Pn = P.expand(N, *P.shape).clone()
    zsq = Z.pow(2).sum((1, 2))
    if lr is None:
        lr = 1.0 / zsq.clamp_min(torch.finfo(Z.dtype).tiny)
    lr = torch.as_tensor(lr, dtype=Z.dtype, device=Z.device).expand(N).clone()
    q, Y, K = _quad(Z, A, GA, Pn)
    for _ in range(int(iters)):
        g = 2 * (torch.bmm(Pn, torch.bmm(Y.transpose(1, 2), torch.matmul(GA, Y)))
                 + torch.bmm(Z.transpose(1, 2), torch.matmul(A, K)))
        trial = lr * 2
        pending = torch.ones(N, dtype=torch.bool, device=Z.device)
        for _ in range(max_backtracks + 1):
            Pt = (Pn - trial[:, None, None] * g).clamp_min(0)
            qt, Yt, Kt = _quad(Z, A, GA, Pt)
            ok = pending & (qt <= q + 1e-4 * (g * (Pt - Pn)).sum((1, 2)))
            if ok.any():
                sel = ok[:, None, None]
                Pn, Y, K = torch.where(sel, Pt, Pn), torch.where(sel, Yt, Y), torch.where(sel, Kt, K)
                q = torch.where(ok, qt, q)
                lr = torch.where(ok, trial, lr)
            pending = pending & ~ok
            if not pending.any():
                break
            trial = torch.where(pending, trial * 0.5, trial)
        lr = torch.where(pending, trial, lr)  # no decrease found: keep P_i, restart smaller next time
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
        batch size (the per-sample loss is a ``1 / batch`` share of a batch's), each sample then line-searched."""
        Z, A, P = self._unfold(features, "PartsAppearances.refine")
        if lr is None and self.meta.get("lr_parts"):
            lr = float(self.meta["lr_parts"]) * float(self.meta.get("batch_size", 1))
        with torch.no_grad():
            return refine_parts(Z, A, P, iters=iters, lr=lr)

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
                    lr = None
                    if self.meta.get("lr_parts"):
                        lr = float(self.meta["lr_parts"]) * float(self.meta.get("batch_size", 1))
                    s = refine_parts(Z, A, P, iters=iters, lr=lr)[:, :, k]
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


def panda(G, layer, *, ranks=(64, 8), n_samples=1024, batch_size=16, iters=1000, lr=None, seed=0, features=None,
          dtype=torch.float32, progress=True):
    """Learn parts and appearances at one layer of a generator (PandA, Algorithm 1).

    Parameters
    ----------
    G : generator
        With ``sample_latents``, ``features``, ``synthesize_from`` and ``layers`` (see CONTRACT.md).
    layer : str
        One of ``G.layers``.
    ranks : (int, int)
        ``(Rc, Rs)``: appearances ``1 <= Rc <= C`` and parts ``1 <= Rs <= h * w``.
    n_samples : int
        Size of the pool of features sampled once from ``G`` (seeds ``seed``); each iteration draws a random batch
        from it. The HOSVD initialization uses the whole pool.
    batch_size : int
        Samples per iteration (gradients are summed over the batch, as in the official code).
    iters : int
        Iterations of Algorithm 1.
    lr : float or None
        ``None`` (default): no hand tuning; each block's step is found by Armijo backtracking, starting from twice
        the last accepted step (the first from ``1 / ||Z_batch||_F^2``). A float: Algorithm 1 with that fixed step
        for both blocks and no line search (the official default is ``1e-8`` on its StyleGAN2 features).
    seed : int
        Seeds the pool's latents, the parts' uniform ``[0, 0.01]`` initialization and the batch order.
    features : ``(N, C, h, w)`` tensor, optional
        Use these features instead of sampling from ``G``.
    dtype : torch dtype
        float32 (default) or float64 for the optimization.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    PartsAppearances

    Examples
    --------
    >>> import lowrankedit
    >>> G = lowrankedit.models.dcgan_digiface()
    >>> pa = lowrankedit.panda(G, "block2", ranks=(32, 4), n_samples=64, iters=20, progress=False)
    >>> pa.appearances.shape, pa.parts.shape, bool((pa.parts >= 0).all())
    (torch.Size([256, 32]), torch.Size([64, 4]), True)
    """
    check_generator(G, _NEEDS, "panda")
    check_layer(G, layer, "panda")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"panda: expected dtype float32 or float64, got {dtype}")
    for name, v in (("n_samples", n_samples), ("batch_size", batch_size), ("iters", iters)):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < (0 if name == "iters" else 1):
            raise ValueError(f"panda: expected {name} to be a {'non-negative' if name == 'iters' else 'positive'} "
                             f"int, got {v!r}")
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

    A = hosvd_appearances(Z, Rc).to(dtype)
    gen = torch.Generator().manual_seed(int(seed))
    P = (torch.rand(h * w, Rs, generator=gen, dtype=torch.float64) * 0.01).to(Z.device, dtype)

    B = min(int(batch_size), N)
    line_search = lr is None
    lr_P = lr_A = float(lr) if lr is not None else None
    history, relative = [], []
    from tqdm.auto import tqdm

    bar = tqdm(range(int(iters)), desc=f"panda {layer}", disable=not progress, leave=False)
    for _ in bar:
        idx = torch.randperm(N, generator=gen)[:B].to(Z.device)
        Zb = Z.index_select(0, idx)
        zsq = float(Zb.double().pow(2).sum())
        if lr_P is None:  # first step: a scale-free guess the line search corrects
            lr_P = lr_A = 1.0 / zsq
        out = panda_step(Zb, A, P, 2 * lr_P if line_search else lr_P, 2 * lr_A if line_search else lr_A,
                         line_search=line_search, max_backtracks=20)
        A, P = out.appearances, out.parts
        if line_search:  # keep the accepted step; a block that found no decrease restarts 2^-10 smaller
            lr_P = out.lr_parts if out.lr_parts > 0 else lr_P * 2.0 ** -10
            lr_A = out.lr_appearances if out.lr_appearances > 0 else lr_A * 2.0 ** -10
        history.append(float(out.new_loss) / B)
        relative.append(float(out.new_loss) / zsq)
        if progress and len(history) % 10 == 1:
            bar.set_postfix(loss=f"{history[-1]:.4g}", unexplained=f"{relative[-1]:.3f}")
    meta = {"method": "panda", "generator": fingerprint(G), "layer": layer, "ranks": [Rc, Rs],
            "n_samples": N, "batch_size": B, "iters": int(iters), "lr": lr, "seed": int(seed),
            "lr_parts": lr_P, "lr_appearances": lr_A, "history": history, "history_relative": relative,
            "dtype": str(dtype).replace("torch.", "")}
    return PartsAppearances(A, P, layer, (C, h, w), meta, generator=G)
