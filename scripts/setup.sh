#!/usr/bin/env bash
# Idempotent set-up: creates .venv, installs the pinned dependencies, builds lowrankedit (editable).
# Safe to run again: finished steps are skipped quickly.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
VPY="$ROOT/.venv/bin/python"

want_torch=2.14.1
have_torch=$("$VPY" -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null || true)
if [ "$have_torch" != "$want_torch" ]; then
  echo "[setup] installing torch==$want_torch (about a minute from the local wheel store)"
  "$VPY" -m pip install -q "torch==$want_torch"
fi
# Small pure-Python/test dependencies; pip skips what is already satisfied.
"$VPY" -m pip install -q numpy scipy ninja pybind11 pytest pytest-benchmark hypothesis safetensors tqdm pillow setuptools wheel
if ! "$VPY" -c "import gan_face_generate" 2>/dev/null; then
  echo "[setup] installing gan-face-generate==1.1.1 (weights only, --no-deps)"
  "$VPY" -m pip install -q --no-deps "gan-face-generate==1.1.1"
fi

# Build the extension in place. Every .cu file is compiled when nvcc is found (or FORCE_CUDA=1);
# WITH_CUDA=0 forces a CPU-only build. ninja rebuilds only what changed.
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;9.0+PTX}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
echo "[setup] building lowrankedit._C (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST)"
"$VPY" setup.py -q build_ext --inplace
# Editable install: a .pth file puts this checkout's python/ on the venv's path, so edits take effect at once and
# the extension built in place above is the one imported (pip install -e would compile every kernel a second time).
SITE=$("$VPY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$ROOT/python" > "$SITE/lowrankedit-editable.pth"
# The `lowrankedit` command (setup.py's console script; the .pth install above does not write it).
if [ ! -x .venv/bin/lowrankedit ]; then
  printf '#!%s\nimport sys\nfrom lowrankedit.cli import main\nsys.exit(main())\n' "$VPY" > .venv/bin/lowrankedit
  chmod +x .venv/bin/lowrankedit
fi
# Headless Chromium, which the report test opens the report in (skipped without it). Only when missing; as root
# (CI) directly, otherwise through sudo when it needs no password; never fatal.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
  echo "[setup] installing chromium (headless browser for tests/test_report.py)"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } >/dev/null 2>&1 \
    || echo "[setup] could not install chromium; tests/test_report.py will skip its rendering check"
fi
"$VPY" -c "import lowrankedit, json; print('[setup] ready:', json.dumps(lowrankedit.info()))"
