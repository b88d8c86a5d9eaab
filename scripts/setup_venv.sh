#!/usr/bin/env bash
# Create a virtualenv with everything llava_drive needs, from PyPI only (no ROS install needed).
# Idempotent: a second run only re-checks the installed packages.
#   VENV=DIR          the virtualenv to create or update (default .venv, relative to the repo)
#   ROS_WHEELS=kilted the ROS 2 wheels: kilted (extras `standalone`, and `interfaces`: the rosidl
#                     build tools; default) or jazzy (extra `standalone-jazzy`, the ros-jazzy-*
#                     metapackages)
#   PYTHON=python3.11 the interpreter the virtualenv is made from
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
case "${ROS_WHEELS:-kilted}" in
    kilted) EXTRA=standalone,interfaces ;;
    jazzy) EXTRA=standalone-jazzy ;;
    *) echo "ROS_WHEELS must be kilted or jazzy, not '${ROS_WHEELS}'" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" - <<'PY'
import sys
if sys.version_info[:2] != (3, 11):
    sys.exit(f'llava_drive standalone needs CPython 3.11 (the ROS 2 wheels are built for it), '
             f'found {sys.version.split()[0]}; set PYTHON=/path/to/python3.11')
PY
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first and pinned, so nothing else pulls a different (multi-GB CUDA) build.
"$VENV/bin/python" -m pip install --quiet 'torch==2.13.0'
"$VENV/bin/python" -m pip install --quiet -e ".[$EXTRA,test]"
echo "llava_drive is installed in $VENV with the ${ROS_WHEELS:-kilted} ROS 2 wheels" \
     "(activate with: source $VENV/bin/activate)"
