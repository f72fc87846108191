"""Demo: ReSeFa mouth directions on the pretrained DCGAN -> out/demo_resefa.png.

Grams of the mouth box averaged over a few faces (float64 reference Jacobians), the top generalized eigenvectors
(tau = 1e-3), then each of the top directions applied to new faces at several strengths; one grid row per
(face, direction), columns = alphas, mouth box outlined. Prints the masked MSE inside/outside the box per direction.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import torch  # noqa: E402

import lowrankedit as le  # noqa: E402
from lowrankedit import viz  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-gram", type=int, default=2, help="faces whose Grams are averaged")
    ap.add_argument("--n-show", type=int, default=3, help="new faces to edit")
    ap.add_argument("--k", type=int, default=3, help="directions to show")
    ap.add_argument("--alpha", type=float, default=6.0, help="largest |alpha|")
    ap.add_argument("--tau", type=float, default=1e-3)
    ap.add_argument("--out", default="out")
    args = ap.parse_args()

    t0 = time.perf_counter()
    G = le.models.dcgan_digiface()
    region = le.models.dcgan_mouth_region()
    gram = le.reference.jacobian_gram(G, G.sample_latents(args.n_gram, seed=0), region)
    dirs = le.resefa(gram, tau=args.tau, k=args.k)
    print(f"Grams of {args.n_gram} faces + resefa in {time.perf_counter() - t0:.1f} s: {dirs}")

    latents = G.sample_latents(args.n_show, seed=123)
    alphas = torch.linspace(-args.alpha, args.alpha, 5)
    rows = []
    mask = region.mask(64, 64)
    for j in range(args.k):
        imgs = le.edit(G, latents, dirs.vectors[j].float(), alphas)  # (n, 5, 3, 64, 64)
        rows.append(imgs)
        orig = imgs[:, 2:3].expand_as(imgs).reshape(-1, 3, 64, 64)
        inside, outside = le.metrics.masked_mse(orig, imgs.reshape(-1, 3, 64, 64), mask)
        print(f"direction {j} (score {float(dirs.scores[j]):.3g}): masked MSE inside {inside.mean():.4f}, "
              f"outside {outside.mean():.5f}, ratio outside/inside {outside.mean() / inside.mean():.3f}")
    grid = torch.stack(rows, 1).reshape(-1, 3, 64, 64)  # face-major, then direction, then alpha
    nrow, scale = len(alphas), 3
    img = viz.image_grid(grid, nrow=nrow, scale=scale)
    img = viz.outline_mask(img, mask, (64, 64), nrow, grid.shape[0], scale=scale)
    path = viz.save_png(img, os.path.join(args.out, "demo_resefa.png"))
    print(f"wrote {path}: rows = (face, direction 0..{args.k - 1}), columns = alpha {alphas.tolist()}; "
          f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
