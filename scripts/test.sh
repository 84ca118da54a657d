#!/usr/bin/env bash
# Set up everything (scripts/bootstrap.sh --test), then lint and run the whole test suite against the built workspace.
#   scripts/test.sh [pytest args...]      e.g. scripts/test.sh -k detector
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/bootstrap.sh --test
# shellcheck disable=SC1091
. scripts/env.sh
# Every test run gets its own DDS domain on localhost only, and its own log folder.
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( ($$ % 100) + 1 ))}   # per run (DDS discovery stays on localhost)
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOG_DIR=$ROOT/log/test-$(date +%Y%m%d-%H%M%S)-$$/ros
mkdir -p "$ROS_LOG_DIR"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID ROS_LOG_DIR=$ROS_LOG_DIR"
echo "[test] ruff check"
ruff check
echo "[test] pytest"
exec python -m pytest "$@"
