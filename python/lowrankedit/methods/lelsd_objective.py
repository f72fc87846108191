"""LELSD's objective: the feature-level localization score of an edit (paper Eq. 2 over layers), the correlation
penalty between directions (Eq. 3), and the loss of one optimization step, with the generator and segmenter runs
they need. The optimizer loop is :func:`lowrankedit.methods.lelsd.lelsd`; masks are checked by
:func:`lowrankedit.segmenters.check_masks`; held-out scoring is :func:`lowrankedit.evaluate.held_out_scores`.
"""
import math

import torch
import torch.nn.functional as F

from ..models.protocol import check_layer
from ..segmenters import check_masks

#: Pseudo-layer name: the generator's output image, usable in ``layers`` beside the generator's own feature layers.
IMAGE = "image"

_COMBINE = ("average", "union", "intersection")


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


def _segment(segmenter, images, feats, who):
    with torch.no_grad():
        masks = segmenter(images.detach(), {k: v.detach() for k, v in feats.items()})
    return check_masks(masks, images, who)


def _feature_layers(G, layers, segmenter):
    """Generator layers to compute (shallow to deep): the localization layers plus those the segmenter asks for."""
    wanted = {l for l in layers if l != IMAGE}
    for l in getattr(segmenter, "layers", ()) or ():
        check_layer(G, l, "lelsd (segmenter.layers)")
        wanted.add(l)
    return [l for l in G.layers if l in wanted]


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
