"""One call per method for one region: what the command line and the report run, timed.

:func:`discover` returns an edit (a ``Directions``, or a :class:`lowrankedit.evaluate.PartEdit` for PandA) whose
``meta["seconds"]`` is the method's wall time, including the work it needs first (the Jacobian Grams for
LowRankGAN and ReSeFa, the parts and appearances for PandA), unless that work was handed in already done.
"""
import time

import torch

from .evaluate import PartEdit, calibrate
from .metrics import localization_score
from .models.protocol import fingerprint

METHODS = ("lowrankgan", "resefa", "lelsd", "panda")
#: PandA settings of the command line and report: the DCGAN layer its demo uses, ranks and iterations.
PANDA_DEFAULTS = {"layer": "block3", "ranks": (64, 8), "iters": 300, "n_samples": 512, "appearances": 8}


def discover(G, method, region, *, faces=8, seed=0, preset="default", gram=None, parts=None, progress=False,
             lelsd_steps=None):
    """Run ``method`` for ``region`` on ``G``.

    Parameters
    ----------
    G : generator
    method : {"lowrankgan", "resefa", "lelsd", "panda"}
    region : lowrankedit.Region
    faces : int
        Latents ``G.sample_latents(faces, seed)`` whose Jacobian Grams are averaged (LowRankGAN, ReSeFa) or on which
        PandA's part and appearance are chosen.
    seed : int
        Seeds the method.
    preset : {"default", "official"}
        The method's settings (see each method's ``PRESETS``; PandA's parts as :func:`learn_parts` learns them).
    gram : lowrankedit.Gram, optional
        Reuse these Grams (LowRankGAN and ReSeFa on the same region); ``meta["seconds"]`` then adds
        ``gram.meta["seconds"]`` when present.
    parts : PartsAppearances, optional
        Reuse learnt PandA parts (they do not depend on the region); their ``meta["seconds"]`` is added likewise.
    progress : bool
        Progress bars of the long steps.
    lelsd_steps : int, optional
        Override LELSD's step count (tests use a few).

    Returns
    -------
    Directions or PartEdit
    """
    from . import lelsd, resefa
    from .segmenters import StaticRegion

    if method not in METHODS:
        raise ValueError(f"discover: expected method in {METHODS}, got {method!r}")
    t0 = time.perf_counter()
    before = 0.0
    if method in ("lowrankgan", "resefa"):
        if gram is None:
            gram = region_gram(G, region, faces=faces, seed=seed, progress=progress)
            t0 = time.perf_counter()
        before = float(gram.meta.get("seconds", 0.0))
        out = _lowrankgan_nonempty(gram, preset) if method == "lowrankgan" else resefa(gram, k=8, preset=preset)
        out.meta.setdefault("region", region.to_dict())
        out.meta.setdefault("generator", fingerprint(G))
        out.meta["params"] = {**out.meta.get("params", {}), "faces": faces, "seed": seed, "preset": preset}
    elif method == "lelsd":
        out = lelsd(G, StaticRegion(region), num_directions=1, seed=seed, preset=preset, progress=progress,
                    steps=lelsd_steps)
    else:
        if parts is None:
            parts = learn_parts(G, seed=seed, progress=progress, preset=preset)
            t0 = time.perf_counter()
        before = float(parts.meta.get("seconds", 0.0))
        out = select_part_edit(G, parts, region, faces=faces, seed=seed)
    out.meta["seconds"] = before + time.perf_counter() - t0
    return out


def _lowrankgan_nonempty(gram, preset, tries=6):
    """LowRankGAN at the preset's ``lamb`` (``lowrankgan.PRESETS``); where the optimum puts the whole region Gram into
    the sparse part (no direction), ``lamb`` is raised 1.25x at a time, as the method's warning advises. The ``lamb``
    used is in ``meta["params"]``."""
    import warnings
    from . import lowrankgan
    from .methods.lowrankgan import PRESETS

    lamb = PRESETS[preset]["lamb"]
    for _ in range(tries):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = lowrankgan(gram, lamb=lamb, preset=preset)
        if len(out):
            return out
        lamb *= 1.25
    raise ValueError(f"lowrankgan: no direction for this region up to lamb = {lamb / 1.25:.4g}; average the Grams "
                     "over more faces (--faces)")


def region_gram(G, region, *, faces=8, seed=0, progress=False):
    """The Jacobian Grams of ``region`` averaged over ``G.sample_latents(faces, seed)``, timed in ``meta["seconds"]``
    (what LowRankGAN and ReSeFa share)."""
    from . import jacobian_gram

    t0 = time.perf_counter()
    gram = jacobian_gram(G, G.sample_latents(faces, seed=seed), region, progress=progress)
    gram.meta["seconds"] = time.perf_counter() - t0
    return gram


def learn_parts(G, *, seed=0, progress=False, preset="default"):
    """PandA parts and appearances at :data:`PANDA_DEFAULTS`' layer, ranks and pool, timed in ``meta["seconds"]``
    (they do not depend on the region: one run serves every region). ``preset="default"`` runs the default step
    rule for ``PANDA_DEFAULTS["iters"]`` iterations; ``"official"`` every step setting of ``panda``'s official preset
    (batch 1, fixed ``lr = 1e-8``, 10,000 iterations)."""
    import warnings
    from . import panda
    from .methods.panda import PRESETS

    if preset not in PRESETS:
        raise ValueError(f"learn_parts: expected preset in {tuple(PRESETS)}, got {preset!r}")
    t0 = time.perf_counter()
    iters = PANDA_DEFAULTS["iters"] if preset == "default" else None
    with warnings.catch_warnings():
        if preset == "official":  # its fixed lr leaves the parts near their start, as in the paper's code: expected
            warnings.simplefilter("ignore", RuntimeWarning)
        parts = panda(G, PANDA_DEFAULTS["layer"], ranks=PANDA_DEFAULTS["ranks"], iters=iters,
                      n_samples=PANDA_DEFAULTS["n_samples"], seed=seed, progress=progress, preset=preset)
    parts.meta["seconds"] = time.perf_counter() - t0
    return parts


def select_part_edit(G, parts, region, *, faces=8, seed=0, appearances=None, target=0.1):
    """The PandA edit for a region: the learnt part that best matches it, and the most local appearance there.

    The part maximizes the soft intersection over union of its map (``parts.part_map(k)``, at the layer) with the
    region's mask at the layer's resolution. Among the first ``appearances`` appearances, each is calibrated
    (:func:`lowrankedit.evaluate.calibrate`) on ``G.sample_latents(faces, seed)`` and the one with the highest
    localization score at that strength is kept.
    """
    _, h, w = parts.feature_shape
    m = region.mask(h, w, dtype=torch.float64)
    ious = []
    for k in range(parts.parts.shape[1]):
        p = parts.part_map(k).double()
        inter = (p * m).sum()
        ious.append(float(inter / (p.sum() + m.sum() - inter).clamp_min(1e-12)))
    part = max(range(len(ious)), key=ious.__getitem__)
    n_app = min(PANDA_DEFAULTS["appearances"] if appearances is None else appearances, parts.appearances.shape[1])
    z = G.sample_latents(faces, seed=seed)
    with torch.no_grad():
        x0 = G.synthesize(z)
    H, W = x0.shape[-2:]
    mask = region.mask(H, W).to(x0)
    scores = []
    for j in range(n_app):
        cand = PartEdit(parts, part, j)
        alpha = calibrate(G, cand, z, mask, target, rtol=1e-2)
        x = cand.render(G, z, [-alpha, alpha])
        scores.append(float(sum(localization_score(x0, x[:, s], mask) for s in (0, 1)) / 2))
    appearance = max(range(n_app), key=scores.__getitem__)
    meta = {"method": "panda", "generator": fingerprint(G), "region": region.to_dict(), "layer": parts.layer,
            "part_iou": ious, "appearance_localization": scores,
            "params": {"ranks": list(parts.ranks), "iters": parts.meta.get("iters"), "faces": faces, "seed": seed,
                       "appearances_tried": n_app}}
    return PartEdit(parts, part, appearance, meta)
