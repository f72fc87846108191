#!/usr/bin/env bash
# README test command: set up (idempotent), then run the whole test suite (CUDA cases show as skipped without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest tests -q -rs "$@"
