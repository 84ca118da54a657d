"""A camera driver stand-in for tests and benchmarks, run as its own process like a real driver.

    python -m axcl_ros_testing.camera_publisher --topic /cam/image_raw --frames 60 --fps 30 --width 640 \\
        --height 480 --qos best_effort

Publishes ``bgr8`` frames of the real size (640x480 = 921,600 bytes) with ``header.stamp`` = send time and
``header.frame_id`` = the frame index, after waiting (up to ``--wait``) for ``--subscribers`` matched subscriptions.
Prints one JSON line at the end: ``{"published": N, "subscribers": M}``.
"""

from __future__ import annotations

import argparse
import json
import time


def main(argv=None) -> int:
    """Entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topic", default="/camera/image_raw")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--qos", choices=("best_effort", "reliable"), default="best_effort")
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--subscribers", type=int, default=1)
    ap.add_argument("--wait", type=float, default=20.0, help="seconds to wait for the subscribers")
    ap.add_argument("--linger", type=float, default=1.0, help="seconds to stay up after the last frame")
    args = ap.parse_args(argv)

    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("test_camera_driver")
    reliability = ReliabilityPolicy.RELIABLE if args.qos == "reliable" else ReliabilityPolicy.BEST_EFFORT
    pub = node.create_publisher(Image, args.topic, QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=args.depth,
                                                              reliability=reliability))
    deadline = time.monotonic() + args.wait
    while pub.get_subscription_count() < args.subscribers and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.3)  # let the matched subscriptions finish their side of discovery
    msg = Image(height=args.height, width=args.width, encoding="bgr8", step=args.width * 3,
                data=bytes(args.width * args.height * 3))
    period = 1.0 / args.fps
    t0 = time.monotonic()
    for i in range(args.frames):
        msg.header.frame_id = str(i)
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        delay = t0 + (i + 1) * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    time.sleep(args.linger)
    print(json.dumps({"published": args.frames, "subscribers": pub.get_subscription_count()}), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
