"""Demo: PandA parts learnt at a DCGAN layer, over faces, and local edits at one part -> out/panda_parts.png.

Rows: the faces; each face with its refined parts (Eq. 6) as a coloured overlay; the same with the global parts;
the global parts alone (one tile per part, its colour); then edits at the part that covers the mouth, with several
appearances and both signs of alpha, the part's footprint outlined, and the per-pixel change (brighter = more).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

import lowrankedit as le  # noqa: E402
from lowrankedit import viz  # noqa: E402

PALETTE = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
                    (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195)], np.float32)


def upsample(maps, size):
    """(n, h, w) in [0, 1] -> (n, H, W), bilinear."""
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)


def overlay(images_u8, part_maps):
    """images (n, H, W, 3) uint8, part_maps (n, Rs, H, W) in [0, 1] -> (n, H, W, 3) uint8: each pixel tinted with
    the colour of its parts, weighted by their saliency."""
    pm = part_maps.numpy()
    cols = PALETTE[np.arange(pm.shape[1]) % len(PALETTE)]
    w = pm / np.maximum(pm.sum(1, keepdims=True), 1e-8)
    colour = np.einsum("nkhw,kc->nhwc", w, cols)
    alpha = 0.65 * pm.max(1)[..., None]
    return (images_u8 * (1 - alpha) + colour * alpha).clip(0, 255).astype(np.uint8)


def row(arrs, pad=2, scale=3):
    """A list of (H, W, 3) uint8 tiles -> one PIL row, upscaled."""
    H, W = arrs[0].shape[:2]
    canvas = np.full((H + 2 * pad, len(arrs) * (W + pad) + pad, 3), 255, np.uint8)
    for i, a in enumerate(arrs):
        canvas[pad:pad + H, pad + i * (W + pad): pad + i * (W + pad) + W] = a
    img = Image.fromarray(canvas)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


def outline(a, mask, colour=(255, 255, 255)):
    m = mask.numpy() >= 0.5
    p = np.pad(m, 1)
    edge = m & ~(p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:])
    a = a.copy()
    a[edge] = colour
    return a


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--layer", default="block3")
    ap.add_argument("--ranks", type=int, nargs=2, default=(64, 8))
    ap.add_argument("--iters", type=int, default=600)
    ap.add_argument("--n", type=int, default=8, help="faces shown")
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--out", default="out")
    args = ap.parse_args()
    torch.set_num_threads(1)  # small GEMMs: one thread is fastest on a shared machine

    G = le.models.dcgan_digiface()
    t0 = time.perf_counter()
    pa = le.panda(G, args.layer, ranks=tuple(args.ranks), iters=args.iters, progress=False)
    t_learn = time.perf_counter() - t0
    loc = pa.locality()
    print(f"learnt {pa} in {t_learn:.1f} s; part locality (mass in top 10% pixels): "
          + ", ".join(f"{v:.2f}" for v in loc.tolist()))

    lat = G.sample_latents(args.n, seed=args.seed)
    with torch.no_grad():
        feats = G.features(lat, args.layer)
        images = G.synthesize_from(feats, args.layer, lat)
    H, W = images.shape[-2:]
    faces = viz.to_uint8(images)
    Rs = pa.parts.shape[1]
    refined = torch.stack([pa.saliency(feats, k) for k in range(Rs)], 1)          # (n, Rs, h, w)
    global_ = torch.stack([pa.saliency(feats, k, refine=False) for k in range(Rs)], 1)
    up = lambda m: upsample(m.flatten(0, 1), (H, W)).view(m.shape[0], m.shape[1], H, W)
    rows = [row(list(faces)), row(list(overlay(faces, up(refined)))), row(list(overlay(faces, up(global_))))]

    # the global parts alone, each in its colour
    gmaps = upsample(global_[0], (H, W)).numpy()
    tiles = [(gmaps[k][..., None] * PALETTE[k % len(PALETTE)]).astype(np.uint8) for k in range(Rs)]
    rows.append(row(tiles))

    # edits at the part covering the mouth
    mouth = le.models.dcgan_mouth_region().mask(H, W)
    cover = [(upsample(pa.part_map(k)[None], (H, W))[0] * mouth).sum() / upsample(pa.part_map(k)[None], (H, W))[0]
             .sum() for k in range(Rs)]
    k = int(torch.stack(cover).argmax())
    foot = upsample(pa.part_map(k)[None], (H, W))[0]
    roirs = []
    for j in (0, 1, 2, 3):
        # alpha on the scale of the appearance's activity: 3 std of a_j^T z over the faces' features
        s = torch.einsum("c,nchw->nhw", pa.appearances[:, j], feats)
        alpha = 3.0 * float(s.std())
        for sign in (1, -1):
            edited = pa.edit(lat[:4], k, j, sign * alpha)
            roirs.append(float(le.metrics.roir(images[:4], edited, (foot >= 0.5).float()).mean()))
            ed = viz.to_uint8(edited)
            diff = (edited - images[:4]).pow(2).mean(1).sqrt()
            diff = (diff / diff.max().clamp_min(1e-8) * 255).byte().numpy()
            tiles = [outline(e, foot) for e in ed] + [np.repeat(d[..., None], 3, -1) for d in diff]
            rows.append(row(tiles))
    width = max(r.width for r in rows)
    canvas = Image.new("RGB", (width, sum(r.height for r in rows) + 30), (255, 255, 255))
    y = 30
    for r in rows:
        canvas.paste(r, (0, y))
        y += r.height
    ImageDraw.Draw(canvas).text(
        (6, 8), f"PandA {args.layer} ranks {tuple(args.ranks)}: faces / refined parts / global parts / parts / "
        f"edits at part {k} (appearances 0-3, +/-alpha; outline = part footprint; right: change)", fill=(0, 0, 0))
    path = viz.save_png(canvas, os.path.join(args.out, "panda_parts.png"))
    print(f"wrote {path}; edits at part {k} (mouth); ROIR (footprint >= 0.5) per edit: "
          + ", ".join(f"{r:.3f}" for r in roirs))


if __name__ == "__main__":
    main()
