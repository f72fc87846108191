#!/usr/bin/env bash
# README demo command: set up (idempotent), then write the demo pictures to out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python scripts/demo.py "$@"
