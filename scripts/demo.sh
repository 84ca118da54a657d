#!/usr/bin/env bash
# The main job: the composed perception pipeline on bundled sample inputs (run after scripts/bootstrap.sh).
# The demo code lives in tools/axcl_ros_demo (not installed with the package; scripts/env.sh puts tools/ on PYTHONPATH).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck disable=SC1091
. scripts/env.sh
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}
export ROS_LOG_DIR=$ROOT/out/demo/ros_log HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
# scripts/env.sh put the shipped Fast DDS transport profile in force (camera-size messages; README: "QoS, large
# images and the transport profile"); the demo's publishers and nodes run with it.
exec python -m axcl_ros_demo --out out/demo "$@"
