#!/usr/bin/env bash
# Run the test suite with DDS on loopback and the large-sample FastDDS profile.
# VENV=DIR runs it with another virtualenv (default .venv), e.g. one set up with ROS_WHEELS=jazzy.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export FASTDDS_DEFAULT_PROFILES_FILE=${FASTDDS_DEFAULT_PROFILES_FILE:-$PWD/config/fastdds_shm.xml}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$VENV/bin/python" -m pytest -q "$@"
