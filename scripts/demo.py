"""Demo: a grid of pretrained DCGAN faces with the mouth region outlined -> out/dcgan_samples_region.png."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import lowrankedit as le  # noqa: E402
from lowrankedit import viz  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="out")
    args = ap.parse_args()

    G = le.models.dcgan_digiface()
    region = le.models.dcgan_mouth_region()
    images = G.synthesize(G.sample_latents(args.n, seed=args.seed))
    nrow, scale = 8, 3
    img = viz.image_grid(images, nrow=nrow, scale=scale)
    img = viz.outline_mask(img, region.mask(64, 64), (64, 64), nrow, args.n, scale=scale)
    path = viz.save_png(img, os.path.join(args.out, "dcgan_samples_region.png"))
    print(f"wrote {path}: {args.n} DCGAN samples (seed {args.seed}) with the {region.name} region outlined")


if __name__ == "__main__":
    main()
