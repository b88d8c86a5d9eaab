#!/usr/bin/env bash
# Create .venv with everything llava_drive needs, from PyPI only (no ROS install needed).
# Idempotent: a second run only re-checks the installed packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" - <<'PY'
import sys
if sys.version_info[:2] != (3, 11):
    sys.exit(f'llava_drive standalone needs CPython 3.11 (the ROS 2 wheels are built for it), '
             f'found {sys.version.split()[0]}; set PYTHON=/path/to/python3.11')
PY
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and pinned, so nothing else pulls a different (multi-GB CUDA) build.
.venv/bin/python -m pip install --quiet 'torch==2.13.0'
.venv/bin/python -m pip install --quiet -e '.[standalone,test]'
echo "llava_drive is installed in .venv (activate with: source .venv/bin/activate)"
