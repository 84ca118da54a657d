#!/usr/bin/env bash
# The main job: the composed perception pipeline on bundled sample inputs (run after scripts/bootstrap.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck disable=SC1091
. scripts/env.sh
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}
export ROS_LOG_DIR=$ROOT/out/demo/ros_log HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
# Fast DDS loses best-effort messages bigger than its shared-memory segment (camera images) unless its large-data
# transports are on; on a robot the camera driver needs the same setting (README: "QoS and large images").
export FASTDDS_BUILTIN_TRANSPORTS=${FASTDDS_BUILTIN_TRANSPORTS:-LARGE_DATA}
exec python -m axcl_ros.demo --out out/demo "$@"
