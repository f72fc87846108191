#!/usr/bin/env bash
# README demo command: set up (idempotent), then write the demo pictures to out/:
#   dcgan_samples_region.png (samples + the mouth region), one picture per method (scripts/demo_<method>.py) and
#   stylegan2_wplus.png (scripts/demo_stylegan2.py: the four methods on a random-weight StyleGAN2 in W+).
# then the comparison report: all four methods on the DCGAN's eyes, mouth and nose -> out/report.html.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python scripts/demo.py
for demo in scripts/demo_*.py; do
  [ -e "$demo" ] || continue
  echo "[demo] $demo"
  .venv/bin/python "$demo"
done
ls -l out/*.png
echo "[demo] lowrankedit report --regions eyes,mouth,nose --out out"
.venv/bin/lowrankedit report --regions eyes,mouth,nose --out out

