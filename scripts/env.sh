# Source me: activates .venv and the colcon install space, puts tools/ (test helpers, demo) on PYTHONPATH, and keeps
# DDS traffic on this machine.
_AXCL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case $- in *u*) _AXCL_NOUNSET=1; set +u ;; *) _AXCL_NOUNSET=0 ;; esac  # setup.bash reads unset variables
# shellcheck disable=SC1091
. "$_AXCL_ROOT/.venv/bin/activate"
# shellcheck disable=SC1091
. "$_AXCL_ROOT/install/setup.bash"
[ "$_AXCL_NOUNSET" = 1 ] && set -u
# test helpers, the AXCL stub and the demo (tools/: axcl_ros_testing, axcl_ros_demo) are not part of the installed
# package; they are imported from the checkout
case ":${PYTHONPATH:-}:" in
  *":$_AXCL_ROOT/tools:"*) ;;
  *) export PYTHONPATH="$_AXCL_ROOT/tools${PYTHONPATH:+:$PYTHONPATH}" ;;
esac
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
# the shipped Fast DDS transport profile (camera-size messages), unless one is already set; the same for any camera
# driver started from this shell (README: "QoS, large images and the transport profile")
eval "$(python3 -m axcl_ros.transport_profile)"
export ROS_LOG_DIR=${ROS_LOG_DIR:-$_AXCL_ROOT/log/ros}
unset _AXCL_ROOT _AXCL_NOUNSET
