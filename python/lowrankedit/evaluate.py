"""Honest evaluation of local edits: held-out samples, a calibrated strength, both signs, mean and spread.

Each paper scores its edits on its own protocol, at its own strength and usually in one sign. Here every edit is
applied to the same held-out latents at the strength ``alpha`` that makes the mean RMS change inside the region
reach one target, in both signs (the sign of a found direction is arbitrary; the two sides of an edit are not
alike), and scored by :mod:`lowrankedit.metrics`: ROIR, masked MSE inside and outside, localization.
"""
import math
import time

import torch

from . import fileformat
from .directions import Directions, direction_stack, edit
from .metrics import localization_score, masked_mse, rms_inside
from .region import Region
from .methods.lelsd_objective import (IMAGE, _feature_layers, _forward, _segment, combine_masks,
                                      feature_localization_score, resize_mask)

#: Seed of the held-out latents (no discovery default draws it: those use seeds 0.. and seed * 1_000_003 + step).
EVAL_SEED = 20261201
#: The per-sample quantities an evaluation records, each ``(2, n)``: sign (``-alpha``, ``+alpha``) by sample.
METRICS = ("roir", "mse_inside", "mse_outside", "localization", "rms_inside")


class PartEdit:
    """A PandA edit as one edit: appearance ``appearance`` added at ``part`` of a :class:`PartsAppearances`.

    ``render(G, latents, alphas) -> (n, k, 3, H, W)`` as :func:`lowrankedit.edit` does for a latent direction.
    ``part`` is a part index, a list of them, or a float mask (``PartsAppearances.part_map``).
    """

    def __init__(self, parts, part, appearance, meta=None):
        self.parts, self.part, self.appearance = parts, part, appearance
        self.meta = dict(meta or {})

    def render(self, G, latents, alphas):
        return torch.stack([self.parts.edit(latents, self.part, self.appearance, float(a), generator=G)
                            for a in alphas], dim=1)

    def save(self, path):
        """The parts and appearances, with the chosen part and appearance in ``meta['selection']``."""
        self.parts.meta["selection"] = {"part": self.part, "appearance": self.appearance, **self.meta}
        self.parts.save(path)

    @classmethod
    def load(cls, path, generator=None):
        from .methods.panda import PartsAppearances

        pa = PartsAppearances.load(path, generator=generator)
        sel = dict(pa.meta.get("selection") or {})
        if "part" not in sel or "appearance" not in sel:
            raise ValueError(f"PartEdit.load: {path} holds PandA parts but no chosen part and appearance "
                             "(meta['selection'])")
        part, appearance = sel.pop("part"), sel.pop("appearance")
        return cls(pa, part, appearance, sel)

    def __repr__(self):
        return f"PartEdit(layer={self.parts.layer!r}, part={self.part}, appearance={self.appearance})"


def render(G, source, latents, alphas):
    """Images of ``source``'s edit of ``latents`` at each alpha, ``(n, k, 3, H, W)``.

    ``source``: a ``Directions`` (its first direction), a latent direction tensor ``(*latent_shape)``, or anything
    with ``render(G, latents, alphas)`` (a :class:`PartEdit`).
    """
    if isinstance(source, Directions):
        if len(source) == 0:
            raise ValueError(f"evaluate: got a Directions with no direction (method {source.meta.get('method')!r})")
        return edit(G, latents, source.vectors[0], list(alphas))
    if isinstance(source, torch.Tensor):
        return edit(G, latents, source, list(alphas))
    if callable(getattr(source, "render", None)):
        return source.render(G, latents, list(alphas))
    raise TypeError(f"evaluate: expected an edit as Directions, a direction tensor or an object with "
                    f"render(G, latents, alphas), got {type(source).__name__}")


def _mask_of(region, H, W):
    if isinstance(region, Region):
        return region.mask(H, W)
    if isinstance(region, torch.Tensor) and region.dim() == 2:
        return Region.from_mask(region).mask(H, W)
    raise TypeError(f"evaluate: expected region as a lowrankedit.Region or an (H, W) mask, got "
                    f"{type(region).__name__}")


def mean_rms_inside(G, source, latents, mask, alpha, originals=None):
    """Mean over ``latents`` and both signs of :func:`lowrankedit.metrics.rms_inside` at strength ``alpha``."""
    with torch.no_grad():
        x0 = G.synthesize(latents) if originals is None else originals
        x = render(G, source, latents, [-alpha, alpha])
    m = mask.to(x0)
    return float(torch.stack([rms_inside(x0, x[:, s], m) for s in (0, 1)]).double().mean())


def calibrate(G, source, latents, mask, target=0.1, *, rtol=1e-3, max_alpha=1e4, max_iter=60):
    """The strength ``alpha > 0`` at which the mean RMS change inside ``mask`` (both signs) equals ``target``.

    Parameters
    ----------
    G : generator
    source : Directions, tensor or PartEdit
        The edit (see :func:`render`).
    latents : torch.Tensor
        ``(n, *latent_shape)`` calibration codes.
    mask : torch.Tensor
        ``(H, W)`` in [0, 1] at the image resolution.
    target : float
        RMS change per pixel inside the mask, in image units (images in [-1, 1]), ``> 0``.
    rtol : float
        Stop when ``|rms(alpha) - target| <= rtol * target``.
    max_alpha : float
        Give up (``ValueError``) when even this strength stays below the target.

    Returns
    -------
    float

    Notes
    -----
    ``rms(alpha)`` is 0 at 0 and continuous; the bracket ``[lo, hi]`` with ``rms(lo) < target <= rms(hi)`` is
    found from ``alpha = 1`` by linear guesses (``alpha * target / rms``, 1.25x to 4x a step), then narrowed by
    regula falsi with a bisection every third step: the result is a crossing of the target, the first one when
    ``rms`` increases with ``alpha`` (as it does for every edit seen on the shipped generators).
    """
    if not (isinstance(target, (int, float)) and target > 0 and math.isfinite(target)):
        raise ValueError(f"calibrate: expected target > 0, got {target!r}")
    with torch.no_grad():
        x0 = G.synthesize(latents)

    def f(a):
        return mean_rms_inside(G, source, latents, mask, a, x0)

    # Bracket [lo, hi] with rms(lo) < target <= rms(hi), stepping by the linear guess alpha * target / rms (an
    # edit's change grows about linearly for small alpha, so this lands close in a step or two), at most 4x a step.
    lo, r_lo, hi, r_hi = 0.0, 0.0, None, None
    a = 1.0
    while hi is None:
        r = f(a)
        if abs(r - target) <= rtol * target:
            return a
        if r >= target:
            hi, r_hi = a, r
        else:
            lo, r_lo = a, r
            a = a * min(4.0, max(1.25, target / max(r, 1e-30)))
            if a > max_alpha:
                raise ValueError(f"calibrate: the edit does not reach a mean RMS change of {target:g} inside the "
                                 f"region even at alpha = {max_alpha:g} (reached {r:.3g}); lower the target")
    # Then regula falsi (linear interpolation inside the bracket), halving when it stalls.
    for i in range(max_iter):
        mid = lo + (hi - lo) * (target - r_lo) / (r_hi - r_lo)
        if i % 3 == 2 or not lo < mid < hi:
            mid = 0.5 * (lo + hi)
        r = f(mid)
        if abs(r - target) <= rtol * target:
            return mid
        if r < target:
            lo, r_lo = mid, r
        else:
            hi, r_hi = mid, r
    return hi


class Evaluation:
    """Results of :func:`evaluate`.

    Attributes
    ----------
    rows : list of dict
        One per edit: ``name``, ``alpha``, ``seconds`` (the method's time, when known), and for each of
        :data:`METRICS` its ``mean`` and ``std`` over samples and both signs (``roir_mean``, ``roir_std``, ...), the
        mean at each sign (``roir_minus``, ``roir_plus``) and the median (``roir_median``).
    samples : dict
        ``name -> {metric: (2, n) tensor}``, row 0 at ``-alpha``, row 1 at ``+alpha``.
    params : dict
        Target, sample count and seed, calibration settings, region.
    """

    def __init__(self, rows, samples, params):
        self.rows, self.samples, self.params = rows, samples, params

    def row(self, name):
        for r in self.rows:
            if r["name"] == name:
                return r
        raise KeyError(f"Evaluation: no edit named {name!r}; have {[r['name'] for r in self.rows]}")

    def save(self, path):
        """Write in the package's file format (kind ``"evaluation"``)."""
        tensors = {f"{name}/{metric}": t for name, per in self.samples.items() for metric, t in per.items()}
        fileformat.save(path, "evaluation", tensors, {"rows": self.rows, "params": self.params})

    @classmethod
    def load(cls, path):
        tensors, meta = fileformat.load(path, "evaluation")
        samples = {}
        for key, t in tensors.items():
            name, metric = key.rsplit("/", 1)
            samples.setdefault(name, {})[metric] = t
        return cls(meta["rows"], samples, meta["params"])

    def table(self):
        """A Markdown table: one row per edit, mean +- std of each metric, alpha and the method's time."""
        head = ("| edit | alpha | ROIR (lower better) | MSE inside | MSE outside | localization (higher better) | "
                "ROIR at -alpha / +alpha | time s |")
        lines = [head, "|" + "---|" * 8]
        for r in self.rows:
            sec = "" if r.get("seconds") is None else f"{r['seconds']:.1f}"
            lines.append(f"| {r['name']} | {r['alpha']:.3g} | {r['roir_mean']:.3f} +- {r['roir_std']:.3f} | "
                         f"{r['mse_inside_mean']:.4f} +- {r['mse_inside_std']:.4f} | "
                         f"{r['mse_outside_mean']:.5f} +- {r['mse_outside_std']:.5f} | "
                         f"{r['localization_mean']:.3f} +- {r['localization_std']:.3f} | "
                         f"{r['roir_minus']:.3f} / {r['roir_plus']:.3f} | {sec} |")
        return "\n".join(lines)

    def __repr__(self):
        return f"Evaluation({[r['name'] for r in self.rows]}, target={self.params.get('target')})"


def evaluate(G, edits, region, *, samples=32, seed=EVAL_SEED, target=0.1, calibration_samples=8, chunk=16,
             times=None, progress=True):
    """Score edits on held-out samples at a calibrated strength, in both signs.

    Parameters
    ----------
    G : generator
    edits : dict
        ``name -> edit``: a ``Directions`` (its first direction is scored), a direction tensor ``(*latent_shape)``
        or a :class:`PartEdit`.
    region : Region or torch.Tensor
        Where the edits should act; ``(H, W)`` masks are made into a ``Region``.
    samples : int
        Held-out latents scored, ``G.sample_latents(samples, seed)``.
    seed : int
        Their seed; the calibration latents use ``seed + 1``. The default :data:`EVAL_SEED` is drawn by no
        discovery default.
    target : float
        Mean RMS change per pixel inside the region (images in [-1, 1]) the strength is calibrated to.
    calibration_samples : int
        Latents used to calibrate (distinct from the scored ones).
    chunk : int
        Latents rendered at once.
    times : dict, optional
        ``name -> seconds`` each method took; default ``meta["seconds"]`` of each edit, when it has one.
    progress : bool
        Show a tqdm bar over the edits.

    Returns
    -------
    Evaluation

    Notes
    -----
    For each edit: ``alpha = calibrate(...)`` (:func:`calibrate`, on the calibration latents), then for each scored
    latent ``z_i`` and sign ``s``: ``x0 = G(z_i)``, ``x1 = G(z_i + s alpha d)`` (or the PandA edit), and the
    per-sample :func:`lowrankedit.metrics.roir`, :func:`~lowrankedit.metrics.masked_mse` (inside, outside),
    :func:`~lowrankedit.metrics.localization_score` and :func:`~lowrankedit.metrics.rms_inside`. Means and
    standard deviations run over all ``2 * samples`` values. Negating a direction swaps the two signs and changes
    no mean or spread.
    """
    from tqdm.auto import tqdm

    if not isinstance(edits, dict) or not edits:
        raise ValueError(f"evaluate: expected edits as a non-empty dict name -> edit, got {type(edits).__name__}")
    for name in edits:
        if not isinstance(name, str) or "/" in name or not name:
            raise ValueError(f"evaluate: expected edit names as non-empty strings without '/', got {name!r}")
    for arg, v in (("samples", samples), ("calibration_samples", calibration_samples), ("chunk", chunk)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"evaluate: expected {arg} to be an int >= 1, got {v!r}")
    z = G.sample_latents(samples, seed=seed)
    z_cal = G.sample_latents(calibration_samples, seed=seed + 1)
    with torch.no_grad():
        x0 = torch.cat([G.synthesize(c) for c in z.split(chunk)])
    H, W = x0.shape[-2:]
    mask = _mask_of(region, H, W).to(x0)
    rows, per_edit = [], {}
    for name, source in tqdm(edits.items(), desc="evaluate", disable=not progress, leave=False):
        t0 = time.perf_counter()
        alpha = calibrate(G, source, z_cal, mask, target)
        values = {m: torch.empty(2, samples, dtype=torch.float64) for m in METRICS}
        start = 0
        for zc, xc in zip(z.split(chunk), x0.split(chunk)):
            with torch.no_grad():
                x1 = render(G, source, zc, [-alpha, alpha])
            stop = start + zc.shape[0]
            for s in (0, 1):
                inside, outside = masked_mse(xc, x1[:, s], mask)
                values["mse_inside"][s, start:stop] = inside.double()
                values["mse_outside"][s, start:stop] = outside.double()
                values["roir"][s, start:stop] = (outside / inside.clamp_min(torch.finfo(inside.dtype).tiny)).double()
                values["localization"][s, start:stop] = localization_score(xc, x1[:, s], mask,
                                                                           reduction="none").double()
                values["rms_inside"][s, start:stop] = inside.double().sqrt()
            start = stop
        seconds = (times or {}).get(name)
        if seconds is None:
            seconds = getattr(source, "meta", {}).get("seconds") if hasattr(source, "meta") else None
        row = {"name": name, "alpha": float(alpha), "seconds": None if seconds is None else float(seconds),
               "eval_seconds": time.perf_counter() - t0}
        for m, v in values.items():
            row[f"{m}_mean"] = float(v.mean())
            row[f"{m}_std"] = float(v.std())
            row[f"{m}_median"] = float(v.median())
            row[f"{m}_minus"], row[f"{m}_plus"] = float(v[0].mean()), float(v[1].mean())
        rows.append(row)
        per_edit[name] = values
    region_desc = region.to_dict() if isinstance(region, Region) else {"kind": "mask", "size": [H, W]}
    params = {"target_rms_inside": float(target), "target": float(target), "samples": samples, "seed": seed,
              "calibration_samples": calibration_samples, "calibration_seed": seed + 1, "region": region_desc,
              "signs": [-1, 1]}
    return Evaluation(rows, per_edit, params)


def held_out_scores(G, segmenter, directions, latents, *, alphas=(-3.0, -1.5, 1.5, 3.0), mask_combine="average",
                    layers=None, layer_weights=None, chunk=16):
    """LELSD's held-out scores: image-level (and feature-level) localization of directions on given latents.

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
    vecs = direction_stack(vecs, G.latent_shape, "held_out_scores", "directions")
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
