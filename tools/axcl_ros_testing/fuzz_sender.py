"""Publisher process of the DDS fuzz suite: ``python -m axcl_ros_testing.fuzz_sender KIND SEED COUNT TOPIC``.

Builds :func:`axcl_ros_testing.fuzz.sequence` (the same cases the test expects), waits for a subscriber, prints
``ready``, then for every index ``i`` read from stdin publishes case ``i`` (``header.stamp.sec = i + 1``, frame
``fuzz``) over reliable DDS and prints ``i`` back. ``quit`` (or end of input) ends it.
"""

from __future__ import annotations

import array
import sys
import time


def _message(kind: str, case, index: int):
    from axcl_msgs.msg import AudioChunk
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest

    fields = dict(case.fields)
    if "data" in fields:
        fields["data"] = array.array("B", fields["data"])
    if kind == "image":
        msg = Image(**fields)
    elif kind == "compressed":
        msg = CompressedImage(**fields)
    elif kind == "camera_info":
        msg = CameraInfo(**fields, roi=RegionOfInterest(**case.extra["roi"]))
    else:
        msg = AudioChunk(**fields)
    msg.header.stamp.sec, msg.header.frame_id = index + 1, "fuzz"
    return msg


def main(argv=None) -> int:
    """Run the sender (see the module doc)."""
    kind, seed, count, topic = (argv or sys.argv[1:])[:4]
    import rclpy
    from axcl_msgs.msg import AudioChunk
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from .fuzz import sequence

    cases = sequence(kind, int(seed), int(count))
    rclpy.init()
    node = rclpy.create_node(f"fuzz_sender_{kind}")
    msg_type = {"image": Image, "compressed": CompressedImage, "camera_info": CameraInfo, "audio": AudioChunk}[kind]
    pub = node.create_publisher(msg_type, topic, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    print("ready", len(cases), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if line == "quit":
            break
        index = int(line)
        pub.publish(_message(kind, cases[index], index))
        print(index, flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
