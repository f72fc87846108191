"""Demo: the four methods on StyleGAN2 in W+ (RANDOM weights) -> out/stylegan2_wplus.png.

A 64x64 StyleGAN2 built by ``lowrankedit.models.stylegan2`` with seeded random weights (no pretrained StyleGAN
weights can be downloaded here), in W+ (``num_ws = 10`` rows of ``w_dim = 16``: 160 latent entries, so robust PCA
runs in minutes on a busy 2-core machine). For a centre box, each method finds a direction (LowRankGAN and ReSeFa
from the Jacobian Grams of two samples, LELSD with the box as a static segmenter, PandA at block ``b16`` with the
box as a hand-drawn part). Every direction is then applied to held-out samples at a calibrated strength (the mean
RMS change inside the box equals ``--target``), in both signs, and the ROIR (change outside / change inside, lower
is better) is measured: mean and spread over samples and signs. Prints the table (time per method, ROIR) and draws
one row per method: held-out samples at -alpha, 0, +alpha and the change map.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

import lowrankedit as le  # noqa: E402
from lowrankedit import viz  # noqa: E402
from lowrankedit.segmenters import StaticRegion  # noqa: E402

CONFIG = dict(channel_base=512, channel_max=64, w_dim=16)  # narrow, so the 2-core CPU machine runs it in minutes


def calibrate(edit_fn, original, mask, target, iters=5):
    """``alpha > 0`` at which the mean (over samples and both signs) RMS change inside ``mask`` equals ``target``;
    returns ``(alpha, rms)``. ``edit_fn(alpha) -> images`` like ``original``."""
    alpha = 1.0
    for _ in range(iters):
        rms = 0.5 * sum(float(le.metrics.masked_mse(original, edit_fn(s * alpha), mask)[0].sqrt().mean())
                        for s in (1, -1))
        alpha *= target / max(rms, 1e-12)
    rms = 0.5 * sum(float(le.metrics.masked_mse(original, edit_fn(s * alpha), mask)[0].sqrt().mean()) for s in (1, -1))
    return alpha, rms


def held_out_roir(edit_fn, original, mask, alpha):
    """ROIR of every held-out sample in both signs ``(2n,)``."""
    return torch.cat([le.metrics.roir(original, edit_fn(s * alpha), mask) for s in (1, -1)])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--gram-samples", type=int, default=2)
    ap.add_argument("--held-out", type=int, default=16)
    ap.add_argument("--show", type=int, default=3, help="held-out samples drawn per method")
    ap.add_argument("--target", type=float, default=0.25, help="mean RMS change inside the box")
    ap.add_argument("--lelsd-steps", type=int, default=80)
    ap.add_argument("--panda-iters", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="out")
    args = ap.parse_args()
    threads = torch.get_num_threads()

    R = args.resolution
    G = le.models.stylegan2(R, space="wplus", seed=args.seed, **CONFIG)
    region = le.Region.box(R * 5 // 16, R * 5 // 16, R * 3 // 8, R * 3 // 8, size=(R, R), name="centre")
    mask = region.mask(R, R)
    print(f"{G.name}: latent_shape {G.latent_shape} (W+), channels {G.synthesis.channels}; region {region}; "
          f"{threads} threads on a shared machine")

    held = G.sample_latents(args.held_out, seed=10_000 + args.seed)
    with torch.no_grad():
        original = G.synthesize(held)
    results = {}

    def latent_edit(d):
        return lambda a: le.edit(G, held, d, [a])[:, 0]

    # LowRankGAN and ReSeFa: one pair of Grams (forward-mode Jacobians), timed once and counted in both
    t0 = time.perf_counter()
    gram = le.jacobian_gram(G, G.sample_latents(args.gram_samples, seed=args.seed), region, progress=True)
    gram = le.Gram(gram.fg.double(), gram.bg.double(), gram.n_fg, gram.n_bg, gram.latent_shape, gram.meta)
    t_gram = time.perf_counter() - t0  # float64 Grams: robust PCA reaches its tolerance in far fewer iterations
    print(f"jacobian_gram: {gram.meta['mode']} ({gram.meta['jvp']}), {t_gram:.1f} s for {args.gram_samples} samples")
    t0 = time.perf_counter()
    # tol 1e-5: at 1e-7 the dual residual of this Gram stalls near 6e-7 and IALM would run to max_iter
    d = le.lowrankgan(gram, tol=1e-5, max_iter=3000, progress=True)
    info = d.meta["rpca"]
    results["lowrankgan"] = (latent_edit(d[0].float()), t_gram + time.perf_counter() - t0,
                             f"Gram + robust PCA (tol 1e-5, {info['iterations']} iterations)")
    t0 = time.perf_counter()
    d = le.resefa(gram, k=1)
    results["resefa"] = (latent_edit(d[0].float()), t_gram + time.perf_counter() - t0, "Gram + generalized eigh")

    t0 = time.perf_counter()
    d = le.lelsd(G, StaticRegion(region), layers=("b16", "b32", "image"), steps=args.lelsd_steps, lr=5e-2,
                 seed=args.seed, eval_samples=8, progress=True)
    results["lelsd"] = (latent_edit(d[0]), time.perf_counter() - t0, f"{args.lelsd_steps} Adam steps")

    t0 = time.perf_counter()
    pa = le.panda(G, "b16", ranks=(16, 6), n_samples=256, iters=args.panda_iters, seed=args.seed, progress=True)
    t_panda = time.perf_counter() - t0
    box = region.mask(R, R)  # PandA's pixel-level control: the hand-drawn part is the same box
    results["panda"] = (lambda a: pa.edit(held, box, 0, a), t_panda, "b16, box as the part, appearance 0")

    rows, table = [], []
    for name, (fn, seconds, how) in results.items():
        alpha, rms = calibrate(fn, original, mask, args.target)
        r = held_out_roir(fn, original, mask, alpha)
        table.append((name, seconds, float(r.mean()), float(r.std()), float(r.median()), alpha, rms, how))
        with torch.no_grad():
            cells = [fn(-alpha)[:args.show], original[:args.show], fn(alpha)[:args.show]]
        change = (cells[2] - cells[0]).pow(2).mean(1, keepdim=True)
        change = 2 * change / change.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1) - 1
        rows.append(torch.stack(cells + [change.expand(-1, 3, -1, -1)], 1).flatten(0, 1))  # sample-major

    print(f"\nheld-out ROIR on {args.held_out} samples x 2 signs, alpha calibrated to mean RMS change "
          f"{args.target} inside the box ({threads} threads, shared machine):")
    print("| method | time (s) | ROIR mean | ROIR std | ROIR median | alpha | how |")
    print("|---|---|---|---|---|---|---|")
    for name, s, m, sd, med, a, rms, how in table:
        print(f"| {name} | {s:.1f} | {m:.3f} | {sd:.3f} | {med:.3f} | {a:.3g} | {how} |")

    grid = torch.cat(rows).clamp(-1, 1)
    nrow, scale = 4 * args.show, 2
    img = viz.image_grid(grid, nrow=nrow, scale=scale)
    img = viz.outline_mask(img, mask, (R, R), nrow, grid.shape[0], scale=scale)
    title_h, label_w = 34, 150
    canvas = Image.new("RGB", (img.width + label_w, img.height + title_h), (255, 255, 255))
    canvas.paste(img, (label_w, title_h))
    draw = ImageDraw.Draw(canvas)
    draw.text((6, 3), f"RANDOM WEIGHTS (seed {args.seed}), not a trained StyleGAN2: {R}px, W+ {G.latent_shape}. "
              "Per sample: -alpha, original, +alpha, change map.", fill=(200, 0, 0))
    draw.text((6, 18), f"alpha calibrated: mean RMS change {args.target} inside the box (outlined)", fill=(0, 0, 0))
    row_h = img.height // len(rows)
    for i, (name, s, m, sd, *_rest) in enumerate(table):
        y = title_h + i * row_h + row_h // 2 - 14
        draw.text((6, y), name, fill=(0, 0, 0))
        draw.text((6, y + 14), f"ROIR {m:.2f} +- {sd:.2f}, {s:.0f} s", fill=(0, 0, 0))
    path = viz.save_png(canvas, os.path.join(args.out, "stylegan2_wplus.png"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
