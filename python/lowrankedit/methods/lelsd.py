"""LELSD: latent directions whose edits stay inside a semantic mask, found by maximizing a localization score.

Pure PyTorch driving the generator (no compiled op): the work is forward and backward passes through ``G``.
Paper: "Optimizing Latent Space Directions For GAN-based Local Image Editing" (Pajouheshgar et al., ICASSP 2022).
The optimization follows the official implementation (see ``OFFICIAL.md``, section LELSD): Adam, one ``alpha`` per
step uniform in ``[-3, 3]`` resampled while ``|alpha| < 0.5``, a relaxed one-hot mixture of the directions
(temperature 0.001), per-layer ``diff = mean_c (r - r_edit)^2``, masks of both images averaged (or union /
intersection) and resized bilinearly with ``align_corners=True``, normalized layer weights, the correlation penalty
with weight 1, renormalization after every step. Where we differ, on purpose:

- each layer's mask is resized from the segmenter's mask (the official code resizes layer to layer, deep to shallow);
- the learning rate is halved exactly ``lr_halvings`` times, at steps ``d, 2d, ...`` with ``d = steps // 5`` (the
  official condition ``i % d == d - 1`` halves one step earlier and a fifth time at the last step, to no effect);
- ``"image"`` may be listed as a layer (the output image as one more feature map);
- the result is scored on held-out samples with the image-level :func:`localization_score` (the official code
  reports the training objective).
"""
import math
import time

import torch
import torch.nn.functional as F

from .. import validation as V
from ..directions import Directions
from ..metrics import _prepare
from ..models.protocol import check_generator, check_layer, fingerprint

#: Pseudo-layer name: the generator's output image, usable in ``layers`` beside the generator's own feature layers.
IMAGE = "image"

_COMBINE = ("average", "union", "intersection")


# ----------------------------------------------------------------------------------------------------------------
# Localization scores
# ----------------------------------------------------------------------------------------------------------------

def localization_score(original, edited, mask, *, reduction="mean"):
    """Image-level localization score: the share of an edit's change that falls inside a mask (higher is better).

    Parameters
    ----------
    original, edited : torch.Tensor
        ``(n, C, H, W)`` images (or feature maps) before and after the edit.
    mask : torch.Tensor
        ``(H, W)`` (the same for every sample) or ``(n, H, W)``, values in [0, 1].
    reduction : {"mean", "none"}
        ``"mean"`` averages the per-sample scores to a 0-d tensor; ``"none"`` returns them, ``(n,)``.

    Returns
    -------
    torch.Tensor
        0-d (``"mean"``) or ``(n,)`` (``"none"``), each value in [0, 1].

    Notes
    -----
    With ``d[i, y, x] = mean_c (original[i, c, y, x] - edited[i, c, y, x])^2`` the per-pixel change and ``m`` the
    mask, the score of sample ``i`` is

        ``s_i = sum_{y,x} d[i, y, x] * m[i, y, x] / sum_{y,x} d[i, y, x]``,

    and ``s_i = 0`` when the sample did not change at all (``sum d[i] == 0``). The result is ``mean_i s_i``.
    A change only inside a binary mask scores 1, only outside scores 0; a change spread uniformly over the image
    scores the mask's area fraction. This is paper Eq. 2 evaluated on the image instead of a feature map.

    Examples
    --------
    >>> x = torch.zeros(1, 3, 4, 4); y = x.clone(); y[..., :2, :] = 1.0
    >>> m = torch.zeros(4, 4); m[:2] = 1
    >>> float(localization_score(x, y, m)), float(localization_score(x, y, 1 - m))
    (1.0, 0.0)
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"localization_score: expected reduction 'mean' or 'none', got {reduction!r}")
    d, m = _prepare(original, edited, mask, "localization_score")
    total = d.sum((1, 2))
    inside = (d * m).sum((1, 2))
    per_sample = torch.where(total > 0, inside / total.clamp_min(torch.finfo(total.dtype).tiny),
                             torch.zeros_like(total))
    return per_sample.mean() if reduction == "mean" else per_sample


def resize_mask(mask, h, w):
    """Bilinearly resize ``(n, H, W)`` masks to ``(n, h, w)`` with ``align_corners=True`` (the official resampling)."""
    if tuple(mask.shape[-2:]) == (h, w):
        return mask
    return F.interpolate(mask[:, None], size=(int(h), int(w)), mode="bilinear", align_corners=True)[:, 0]


def feature_localization_score(original, edited, mask, *, weights=None, eps=1e-6):
    """Feature-level localization score, the LELSD training objective (paper Eq. 2 summed over layers).

    Parameters
    ----------
    original, edited : dict[str, torch.Tensor] or torch.Tensor
        Feature maps ``(n, C_l, h_l, w_l)`` per layer before and after the edit (a single tensor is one layer).
        Differentiable in ``edited``.
    mask : torch.Tensor
        ``(n, H, W)`` or ``(H, W)`` in [0, 1] at any resolution; resized to each layer bilinearly with
        ``align_corners=True``.
    weights : sequence of float, optional
        One non-negative weight per layer (in the order of ``original``); normalized to sum 1. Default: equal.
    eps : float
        Added to each denominator, as in the official code.

    Returns
    -------
    torch.Tensor
        ``(n,)``, per sample ``sum_l w_l * sum(diff_l * m_l) / (sum(diff_l) + eps)`` with
        ``diff_l = mean over channels of (r_l - r_edit_l)^2`` and ``m_l`` the mask resized to layer ``l``.
        LELSD minimizes ``-mean`` of this.
    """
    if isinstance(original, torch.Tensor):
        original, edited = {"features": original}, {"features": edited}
    if not isinstance(original, dict) or not isinstance(edited, dict) or list(original) != list(edited):
        raise ValueError("feature_localization_score: expected original and edited as tensors or dicts with the same "
                         f"layers, got {list(original) if isinstance(original, dict) else type(original).__name__} "
                         f"and {list(edited) if isinstance(edited, dict) else type(edited).__name__}")
    names = list(original)
    if not names:
        raise ValueError("feature_localization_score: expected at least one layer")
    w = _normalized_weights(weights, len(names), "feature_localization_score")
    n = next(iter(original.values())).shape[0]
    mask = torch.as_tensor(mask)
    if mask.dim() == 2:
        mask = mask.expand(n, *mask.shape)
    if mask.dim() != 3 or mask.shape[0] != n:
        raise ValueError(f"feature_localization_score: expected mask of shape (H, W) or ({n}, H, W), "
                         f"got {tuple(mask.shape)}")
    score = 0
    for name, wl in zip(names, w):
        r, r_edit = original[name], edited[name]
        if r.shape != r_edit.shape or r.dim() != 4 or r.shape[0] != n:
            raise ValueError(f"feature_localization_score: expected layer {name!r} original and edited of the same "
                             f"shape ({n}, C, h, w), got {tuple(r.shape)} and {tuple(r_edit.shape)}")
        if wl == 0:
            continue
        diff = (r - r_edit).pow(2).mean(1)
        m = resize_mask(mask.to(diff), *diff.shape[-2:])
        score = score + wl * (diff * m).sum((1, 2)) / (diff.sum((1, 2)) + eps)
    return score


def _normalized_weights(weights, n, who):
    if weights is None:
        return [1.0 / n] * n
    w = [float(v) for v in weights]
    if len(w) != n:
        raise ValueError(f"{who}: expected {n} layer weights, got {len(w)}")
    if any(not math.isfinite(v) or v < 0 for v in w) or sum(w) <= 0:
        raise ValueError(f"{who}: expected non-negative finite layer weights with a positive sum, got {w}")
    s = sum(w)
    return [v / s for v in w]


def combine_masks(m1, m2, method="average"):
    """Combine the masks of the original and the edited image: ``average`` (default), ``union`` or ``intersection``.

    ``average = (m1 + m2) / 2``, ``union = m1 + m2 - m1 m2``, ``intersection = m1 m2`` (soft masks stay in [0, 1]).
    """
    if method == "average":
        return 0.5 * (m1 + m2)
    if method == "union":
        return m1 + m2 - m1 * m2
    if method == "intersection":
        return m1 * m2
    raise ValueError(f"lelsd: expected mask_combine in {_COMBINE}, got {method!r}")


# ----------------------------------------------------------------------------------------------------------------
# Running the generator and the segmenter
# ----------------------------------------------------------------------------------------------------------------

def _features_one_pass(G, latents, feature_layers):
    """Features at several layers from one run of the generator, when it can tell them in one pass.

    A generator may offer ``features_many(latents, layers) -> dict`` for this. The protocol's ``features(latents,
    layer)`` reruns the shallower layers for every layer asked, which costs LELSD about twice the work per step on
    the DCGAN, whose ``features_many`` runs the blocks once.
    """
    many = getattr(G, "features_many", None)
    if callable(many):
        return many(latents, list(feature_layers))
    return None


def _forward(G, latents, feature_layers, need_image, one_pass=True):
    """Features at ``feature_layers`` (ordered shallow to deep) and, if asked, the image from the deepest of them."""
    feats = _features_one_pass(G, latents, feature_layers) if one_pass and len(feature_layers) > 1 else None
    if feats is None:
        feats = {layer: G.features(latents, layer) for layer in feature_layers}
    image = None
    if need_image:
        if feature_layers:
            deepest = feature_layers[-1]
            image = G.synthesize_from(feats[deepest], deepest, latents)
        else:
            image = G.synthesize(latents)
    return feats, image


def check_masks(masks, images, who="lelsd"):
    """Validate what a segmenter returned for ``images (N, 3, H, W)``: ``(N, h, w)`` floats in [0, 1], no NaN.

    Returns the masks as a float tensor on the images' device (bool and integer masks are converted).
    """
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"{who}: expected the segmenter to return a torch.Tensor, got {type(masks).__name__}")
    n = images.shape[0]
    if masks.dim() != 3 or masks.shape[0] != n or masks.shape[1] <= 0 or masks.shape[2] <= 0:
        raise ValueError(f"{who}: expected the segmenter to return masks of shape ({n}, h, w) for {n} images, "
                         f"got {tuple(masks.shape)}")
    if not masks.is_floating_point():
        masks = masks.to(images.dtype if images.is_floating_point() else torch.float32)
    masks = masks.to(images.device)
    if torch.isnan(masks).any():
        raise ValueError(f"{who}: the segmenter returned masks containing NaN")
    lo, hi = float(masks.min()), float(masks.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"{who}: expected the segmenter's mask values in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
    return masks


def _segment(segmenter, images, feats, who):
    with torch.no_grad():
        masks = segmenter(images.detach(), {k: v.detach() for k, v in feats.items()})
    return check_masks(masks, images, who)


def _sample_alpha(lo, hi, gen):
    """Uniform in ``[-hi, hi]``, resampled while ``|alpha| < lo`` (the official rejection sampling)."""
    while True:
        alpha = (2 * torch.rand((), generator=gen, dtype=torch.float64).item() - 1) * hi
        if abs(alpha) >= lo:
            return alpha


def _relaxed_one_hot(k, temperature, gen):
    """A sample of the relaxed one-hot (Gumbel-softmax, uniform class probabilities) distribution, ``(k,)``."""
    if k == 1:
        return torch.ones(1, dtype=torch.float64)
    u = torch.rand(k, generator=gen, dtype=torch.float64).clamp(1e-20, 1 - 1e-12)
    gumbel = -torch.log(-torch.log(u))
    return torch.softmax(gumbel / temperature, dim=0)


def correlation_penalty(vectors):
    """Mean absolute off-diagonal entry of the directions' correlation (cosine) matrix, over all ``k x k`` entries.

    ``vectors (k, *latent_shape)``; 0 for a single direction. As in the official code, the mean runs over the whole
    matrix (diagonal zeros included).
    """
    v = vectors.flatten(1)
    if v.shape[0] < 2:
        return v.new_zeros(())
    cov = v @ v.T
    d = cov.diagonal().sqrt()
    corr = cov / (d[:, None] * d[None, :])
    return (corr - torch.eye(v.shape[0], dtype=v.dtype, device=v.device)).abs().mean()


# ----------------------------------------------------------------------------------------------------------------
# Held-out evaluation
# ----------------------------------------------------------------------------------------------------------------

def held_out_scores(G, segmenter, directions, latents, *, alphas=(-3.0, -1.5, 1.5, 3.0), mask_combine="average",
                    layers=None, layer_weights=None, chunk=16):
    """Image-level (and feature-level) localization scores of directions on given latents, no gradients.

    Parameters
    ----------
    G : generator
    segmenter : callable
        ``segmenter(images, features) -> masks (N, h, w)`` in [0, 1].
    directions : Directions or torch.Tensor
        ``(k, *latent_shape)`` (any norm: the edit is ``latents + alpha * direction``) or one ``(*latent_shape)``.
    latents : torch.Tensor
        ``(n, *latent_shape)`` held-out codes.
    alphas : sequence of float
        Edit strengths; the scores are averaged over them and over the samples.
    mask_combine : {"average", "union", "intersection"}
        How the original and edited images' masks are combined.
    layers, layer_weights : optional
        The layers of the feature-level score (default: all of ``G.layers``) and their weights.

    Returns
    -------
    (image_scores, feature_scores) : tuple of torch.Tensor
        Each ``(k,)`` float64: :func:`localization_score` of the images with the combined mask resized to the image
        (bilinear, ``align_corners=True``), and :func:`feature_localization_score` over ``layers``.
    """
    vecs = directions.vectors if isinstance(directions, Directions) else directions
    shape = tuple(G.latent_shape)
    if tuple(vecs.shape) == shape:
        vecs = vecs[None]
    if tuple(vecs.shape[1:]) != shape:
        raise ValueError(f"held_out_scores: expected directions of shape (k, {', '.join(map(str, shape))}), "
                         f"got {tuple(vecs.shape)}")
    layers = list(G.layers) if layers is None else list(layers)
    feat_layers = _feature_layers(G, layers, segmenter)
    alphas = [float(a) for a in alphas]
    k = vecs.shape[0]
    img_sum = torch.zeros(k, dtype=torch.float64)
    feat_sum = torch.zeros(k, dtype=torch.float64)
    count = 0
    with torch.no_grad():
        for start in range(0, latents.shape[0], chunk):
            z = latents[start:start + chunk]
            f0, x0 = _forward(G, z, feat_layers, True)
            f0[IMAGE] = x0
            m0 = _segment(segmenter, x0, f0, "held_out_scores")
            for i in range(k):
                d = vecs[i].to(z)
                for a in alphas:
                    f1, x1 = _forward(G, z + a * d, feat_layers, True)
                    f1[IMAGE] = x1
                    m1 = _segment(segmenter, x1, f1, "held_out_scores")
                    m = combine_masks(m0, m1, mask_combine)
                    img_sum[i] += localization_score(x0, x1, resize_mask(m, *x0.shape[-2:]).clamp(0, 1),
                                                     reduction="none").double().sum()
                    feat_sum[i] += feature_localization_score({l: f0[l] for l in layers}, {l: f1[l] for l in layers},
                                                              m, weights=layer_weights).double().sum()
            count += z.shape[0] * len(alphas)
    return img_sum / count, feat_sum / count


def _feature_layers(G, layers, segmenter):
    """Generator layers to compute (shallow to deep): the localization layers plus those the segmenter asks for."""
    wanted = {l for l in layers if l != IMAGE}
    for l in getattr(segmenter, "layers", ()) or ():
        check_layer(G, l, "lelsd (segmenter.layers)")
        wanted.add(l)
    return [l for l in G.layers if l in wanted]


# ----------------------------------------------------------------------------------------------------------------
# The method
# ----------------------------------------------------------------------------------------------------------------

def lelsd(G, segmenter, *, num_directions=1, layers=None, layer_weights=None, steps=300, batch_size=4, lr=1e-3,
          lr_halvings=4, mask_combine="average", alpha_range=(0.5, 3.0), corr_weight=1.0, temperature=1e-3, seed=0,
          progress=True, eval_samples=32, eval_alphas=None):
    """Find ``num_directions`` latent directions whose edits change the generator mostly inside a segmenter's mask.

    Parameters
    ----------
    G : generator
        Any generator of the protocol (``latent_shape``, ``sample_latents``, ``layers``, ``features``,
        ``synthesize_from``, ``synthesize``).
    segmenter : callable
        ``segmenter(images (N, 3, H, W), features: dict layer -> (N, C, h, w)) -> masks (N, h', w')`` with values in
        [0, 1] (any resolution; resized bilinearly with ``align_corners=True`` to each layer). ``features`` holds the
        localization layers' features plus those of the layers listed in the segmenter's optional ``layers``
        attribute, and ``"image"``. Called without gradients on the original and on the edited samples. Built in:
        :class:`lowrankedit.segmenters.StaticRegion`, :class:`lowrankedit.segmenters.PandaParts`.
    num_directions : int
        Number of directions ``K`` found together, kept apart by the correlation penalty (paper Eq. 3).
    layers : sequence of str, optional
        Layers of the localization score (paper Eq. 2, summed over layers): names from ``G.layers`` and/or
        ``"image"`` (the output image as one more layer). Default: all of ``G.layers``, as in the paper.
    layer_weights : sequence of float, optional
        One per entry of ``layers``, normalized to sum 1; default equal.
    steps : int
        Optimization steps (one batch each).
    batch_size : int
        Latent codes per step (new ones every step, reproducible from ``seed``).
    lr : float
        Initial Adam learning rate; halved ``lr_halvings`` times, ``steps // (lr_halvings + 1)`` steps apart.
    mask_combine : {"average", "union", "intersection"}
        How the masks of the original and the edited image are combined.
    alpha_range : (float, float)
        ``(lo, hi)``: each step's edit strength is uniform in ``[-hi, hi]``, resampled while ``|alpha| < lo``.
    corr_weight : float
        Weight of the correlation penalty (mean absolute off-diagonal correlation of the directions).
    temperature : float
        Temperature of the relaxed one-hot mixture of directions drawn each step (near one-hot when small).
    seed : int
        Seeds the initial directions, the alphas, the mixtures and the latent batches: equal seeds, equal results.
    progress : bool
        Show a tqdm progress bar.
    eval_samples : int
        Held-out latent codes (never used in training) on which the returned scores are measured.
    eval_alphas : sequence of float, optional
        Edit strengths of the held-out evaluation; default ``(-hi, -hi/2, hi/2, hi)``.

    Returns
    -------
    Directions
        ``(K, *latent_shape)`` unit-norm vectors sorted by ``scores``: the held-out image-level
        :func:`localization_score` (averaged over ``eval_alphas`` and samples), best first. ``meta`` records the
        parameters, the held-out feature-level scores (``feature_scores``), the training curve
        (``history``: per-step feature-level score) and the time per step.

    Notes
    -----
    Each step: draw ``z (B, *latent_shape)``, ``alpha`` and a near-one-hot mixture ``c`` of the directions;
    ``u = sum_k c_k u_k``; features ``r_l = h_l(z)`` and ``r'_l = h_l(z + alpha u)``; masks ``s(x)``, ``s(x')`` of both
    images combined into ``m``; loss ``-mean_batch sum_l w_l sum(diff_l * m_l) / (sum(diff_l) + 1e-6)
    + corr_weight * mean|Corr(U) - I|``; an Adam step; every ``u_k`` renormalized to unit norm.
    A batch whose combined masks are all empty raises ``ValueError`` (nothing to localize in).

    The defaults are the official ones (all layers, ``lr = 1e-3``, batch 4). On the 64x64 DCGAN (z in R^100) with
    the mouth box, 100 steps with ``layers=("block3", "block4", "image")`` and ``lr=5e-2`` reach a held-out
    image-level score of 0.36-0.38 (random directions: 0.044 on average), about 8.7x; the official settings reach
    0.13 in 300 steps (their ``lr`` suits a longer run); see ``bench/results/lelsd.md``.

    Examples
    --------
    >>> import lowrankedit
    >>> from lowrankedit.segmenters import StaticRegion
    >>> G = lowrankedit.models.dcgan_digiface()
    >>> dirs = lowrankedit.lelsd(G, StaticRegion(lowrankedit.models.dcgan_mouth_region()), steps=2,
    ...                          layers=("block4",), progress=False, eval_samples=2)
    >>> dirs.vectors.shape, dirs.meta["method"]
    (torch.Size([1, 100]), 'lelsd')
    """
    from tqdm.auto import tqdm

    check_generator(G, ("latent_shape", "sample_latents", "layers", "features", "synthesize_from", "synthesize"),
                    "lelsd")
    if not callable(segmenter):
        raise TypeError(f"lelsd: expected segmenter to be callable as segmenter(images, features), "
                        f"got {type(segmenter).__name__}")
    for name, v, lo in (("num_directions", num_directions, 1), ("steps", steps, 1), ("batch_size", batch_size, 1),
                        ("eval_samples", eval_samples, 0), ("lr_halvings", lr_halvings, 0)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"lelsd: expected {name} to be an int >= {lo}, got {v!r}")
    lr = V.positive(lr, "lr", "lelsd")
    seed = V.integer(seed, "seed", "lelsd")
    V.boolean(progress, "progress", "lelsd")
    if mask_combine not in _COMBINE:
        raise ValueError(f"lelsd: expected mask_combine in {_COMBINE}, got {mask_combine!r}")
    try:
        a_lo, a_hi = (float(a) for a in alpha_range)
    except (TypeError, ValueError):
        raise ValueError(f"lelsd: expected alpha_range = (lo, hi), got {alpha_range!r}") from None
    if not (0 <= a_lo < a_hi and math.isfinite(a_hi)):
        raise ValueError(f"lelsd: expected alpha_range (lo, hi) with 0 <= lo < hi, got {alpha_range!r}")
    temperature = V.positive(temperature, "temperature", "lelsd")
    corr_weight = V.real(corr_weight, "corr_weight", "lelsd", min=0.0)
    if eval_alphas is not None:
        eval_alphas = [V.real(a, "eval_alphas", "lelsd") for a in eval_alphas]

    layers = list(G.layers) if layers is None else list(layers)
    if not layers or len(set(layers)) != len(layers):
        raise ValueError(f"lelsd: expected a non-empty list of distinct layers, got {layers}")
    for l in layers:
        if l != IMAGE:
            check_layer(G, l, "lelsd")
    weights = _normalized_weights(layer_weights, len(layers), "lelsd")
    # Keep the given (layer, weight) pairs but order layers shallow to deep, the image last.
    order = {l: i for i, l in enumerate(G.layers)}
    pairs = sorted(zip(layers, weights), key=lambda p: order.get(p[0], len(order)))
    layers, weights = [p[0] for p in pairs], [p[1] for p in pairs]
    feat_layers = _feature_layers(G, layers, segmenter)

    shape = tuple(G.latent_shape)
    probe = G.sample_latents(1, seed=seed)
    device, dtype = probe.device, probe.dtype
    gen = torch.Generator().manual_seed(int(seed))
    init = torch.randn(num_directions, *shape, generator=gen, dtype=torch.float64)
    init = init / init.flatten(1).norm(dim=1).view(-1, *([1] * len(shape)))
    u = init.to(device=device, dtype=dtype).requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    history = []
    t0 = time.perf_counter()

    bar = tqdm(range(steps), desc="lelsd", disable=not progress, leave=False)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = learning_rate(lr, step, steps, lr_halvings)
        z = G.sample_latents(batch_size, seed=_train_seed(seed, step)).to(device=device, dtype=dtype)
        alpha = _sample_alpha(a_lo, a_hi, gen)
        coefs = _relaxed_one_hot(num_directions, temperature, gen).to(device=device, dtype=dtype)

        loss, score = _step_loss(G, segmenter, u, z, alpha, coefs, layers, weights, feat_layers, mask_combine,
                                 corr_weight, step=step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            u /= u.flatten(1).norm(dim=1).view(-1, *([1] * len(shape)))
        history.append(float(score.detach()))
        if progress and step % 10 == 0:
            bar.set_postfix(score=f"{sum(history[-20:]) / len(history[-20:]):.3f}")
    seconds_per_step = (time.perf_counter() - t0) / steps

    vectors = u.detach()
    eval_alphas = (-a_hi, -a_hi / 2, a_hi / 2, a_hi) if eval_alphas is None else tuple(float(a) for a in eval_alphas)
    if eval_samples > 0:
        z_eval = G.sample_latents(eval_samples, seed=_eval_seed(seed)).to(device=device, dtype=dtype)
        img_scores, feat_scores = held_out_scores(G, segmenter, vectors, z_eval, alphas=eval_alphas,
                                                  mask_combine=mask_combine, layers=layers, layer_weights=weights)
    else:
        img_scores = feat_scores = torch.full((num_directions,), float("nan"), dtype=torch.float64)
    order_idx = torch.argsort(img_scores, descending=True, stable=True) if eval_samples > 0 else \
        torch.arange(num_directions)
    meta = {
        "method": "lelsd",
        "latent_space": getattr(G, "latent_space", "native"),
        "generator": fingerprint(G),
        "region": getattr(segmenter, "describe", lambda: {"segmenter": type(segmenter).__name__})(),
        "score": "held-out image-level localization score (lowrankedit.localization_score)",
        "feature_scores": feat_scores[order_idx].tolist(),
        "params": {"num_directions": num_directions, "layers": layers, "layer_weights": weights, "steps": steps,
                   "batch_size": batch_size, "lr": lr, "lr_halvings": lr_halvings, "mask_combine": mask_combine,
                   "alpha_range": [a_lo, a_hi], "corr_weight": corr_weight, "temperature": temperature,
                   "seed": seed, "eval_samples": eval_samples, "eval_alphas": list(eval_alphas)},
        "history": history,
        "seconds_per_step": seconds_per_step,
    }
    return Directions(vectors[order_idx.to(vectors.device)], img_scores[order_idx].to(torch.float32), meta)


def learning_rate(lr, step, steps, halvings=4):
    """The learning rate at ``step`` of ``steps``: ``lr`` halved ``halvings`` times, ``steps // (halvings + 1)`` apart.

    ``lr * 0.5 ** min(step // (steps // (halvings + 1)), halvings)``; constant when ``steps <= halvings``.
    """
    every = steps // (halvings + 1)
    if every <= 0:
        return lr
    return lr * 0.5 ** min(step // every, halvings)


def _step_loss(G, segmenter, u, z, alpha, coefs, layers, weights, feat_layers, mask_combine, corr_weight, *,
               step=0, one_pass=True):
    """The loss of one LELSD step and its localization term: ``(-score + corr_weight * penalty, score)``.

    ``u (K, *latent_shape)`` the directions (requires grad), ``z (B, *latent_shape)`` the batch, ``coefs (K,)`` the
    mixture; ``one_pass=False`` computes every layer with ``G.features`` (the protocol's way, for the benchmark).
    """
    shape = tuple(G.latent_shape)
    with torch.no_grad():
        f0, x0 = _forward(G, z, feat_layers, True, one_pass)
    f0[IMAGE] = x0
    direction = (coefs.view(-1, *([1] * len(shape))) * u).sum(0)
    f1, x1 = _forward(G, z + alpha * direction, feat_layers, True, one_pass)
    f1[IMAGE] = x1
    m = combine_masks(_segment(segmenter, x0, f0, "lelsd"), _segment(segmenter, x1, f1, "lelsd"), mask_combine)
    if not (m.flatten(1).sum(1) > 0).any():
        raise ValueError(f"lelsd: the segmenter's masks are empty for every sample of the batch at step {step} "
                         "(nothing to localize the edit in); check the segmenter, its part or its threshold")
    score = feature_localization_score({l: f0[l] for l in layers}, {l: f1[l] for l in layers}, m,
                                       weights=weights).mean()
    loss = -score
    if u.shape[0] > 1 and corr_weight > 0:
        loss = loss + corr_weight * correlation_penalty(u)
    return loss, score


def _train_seed(seed, step):
    """Seed of step ``step``'s latent batch (distinct from the held-out seed for every step)."""
    return int(seed) * 1_000_003 + int(step) + 1


def _eval_seed(seed):
    """Seed of the held-out codes: no training step of any run with fewer than a million steps draws it."""
    return int(seed) * 1_000_003
