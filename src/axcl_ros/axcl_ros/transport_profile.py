"""The shipped Fast DDS transport profile: where it is, and putting it in force for a process.

Fast DDS's default shared-memory segment is 512 KB. A best-effort sample that does not fit (a 640x480 ``bgr8`` image
is 921,600 bytes) goes another way and is mostly lost. ``config/fastdds_camera.xml`` gives each participant a 32 MB
segment. It is the *publisher's* segment that carries a sample, so the camera driver's process needs the profile too
(README: "QoS, large images and the transport profile").

One implementation for every entry point: the node executables and ``perception_host`` call
:func:`apply_transport_profile` before ``rclpy.init``; ``scripts/env.sh``, the demo and a camera driver's shell use
``eval "$(python3 -m axcl_ros.transport_profile)"``. A profile the user already set (``FASTRTPS_DEFAULT_PROFILES_FILE``
for Fast DDS 2.x, ``FASTDDS_DEFAULT_PROFILES_FILE`` for 3.x) is never overridden.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import MutableMapping, Optional

PROFILE_NAME = "fastdds_camera.xml"
#: Fast DDS 2.x (Humble, Jazzy) reads the first, Fast DDS 3.x (Kilted) the second (and warns that the first is
#: deprecated, so it is only set for distributions on Fast DDS 2.x or when ROS_DISTRO is unknown, as with the wheels).
PROFILE_VARS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
FASTDDS2_DISTROS = ("humble", "iron", "jazzy")
#: Set by :func:`apply_transport_profile` so child processes do not log the choice again as "the user's".
APPLIED_MARK = "AXCL_ROS_TRANSPORT_PROFILE"


def shipped_profile() -> Optional[Path]:
    """Path of the shipped profile: ``share/axcl_ros/config`` when installed, else the source tree's ``config``."""
    candidates = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            candidates.append(Path(get_package_share_directory("axcl_ros")) / "config" / PROFILE_NAME)
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    candidates.append(Path(__file__).resolve().parents[1] / "config" / PROFILE_NAME)
    return next((p for p in candidates if p.is_file()), None)


def apply_transport_profile(environ: Optional[MutableMapping[str, str]] = None) -> str:
    """Put the shipped profile in force for this process (and its children) unless one is set; return a log line.

    Must run before the first DDS participant is created (before ``rclpy.init``).
    """
    env = os.environ if environ is None else environ
    if env.get(APPLIED_MARK) and env.get(APPLIED_MARK) == env.get(PROFILE_VARS[1]):
        return f"Fast DDS transport profile: {env[APPLIED_MARK]} (axcl_ros shipped profile)"
    user = {v: env[v] for v in PROFILE_VARS if env.get(v)}
    if user:
        where = ", ".join(f"{k}={v}" for k, v in user.items())
        return f"Fast DDS transport profile: the user's ({where}); the shipped {PROFILE_NAME} is not applied"
    path = shipped_profile()
    if path is None:
        return (f"Fast DDS transport profile: none ({PROFILE_NAME} not found); camera images over 512 KB may be lost "
                "by best-effort transport")
    distro = env.get("ROS_DISTRO", "")
    for var in PROFILE_VARS:
        if var == PROFILE_VARS[1] or not distro or distro in FASTDDS2_DISTROS:
            env[var] = str(path)
    env[APPLIED_MARK] = str(path)
    return f"Fast DDS transport profile: {path} (axcl_ros shipped profile)"


def log_transport_profile(logger, environ: Optional[MutableMapping[str, str]] = None) -> None:
    """:func:`apply_transport_profile` and log the result with ``logger.info``."""
    logger.info(apply_transport_profile(environ))


def shell_exports(environ: Optional[MutableMapping[str, str]] = None) -> str:
    """``export`` lines that put the profile in force in a shell (nothing changes when the user set one)."""
    env = dict(os.environ if environ is None else environ)
    line = apply_transport_profile(env)
    out = [f"# {line}"]
    for var in (*PROFILE_VARS, APPLIED_MARK):
        if env.get(var):
            out.append(f"export {var}='{env[var]}'")
    return "\n".join(out)


def main(argv: Optional[list] = None) -> int:
    """``python3 -m axcl_ros.transport_profile``: print the shell exports (``eval "$(...)"``); ``--path``: the file."""
    args = sys.argv[1:] if argv is None else argv
    if "--path" in args:
        path = shipped_profile()
        print(path or "")
        return 0 if path else 1
    print(shell_exports())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
