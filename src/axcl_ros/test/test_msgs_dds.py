"""Every axcl_msgs message, service and action type crosses real rclpy + Fast DDS intact."""

import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS tests need the workspace: run through `make test`")
msgs = pytest.importorskip("axcl_msgs.msg", reason="axcl_msgs not built: run through `make test`")

from axcl_msgs.action import ListenOnce  # noqa: E402
from axcl_msgs.srv import Detect, Transcribe  # noqa: E402
from rclpy.action import ActionClient, ActionServer  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402

from axcl_ros_testing.ros_graph import RosGraph  # noqa: E402

pytestmark = pytest.mark.ros


def _header(msg, sec=12, nsec=345, frame="cam0"):
    msg.header.stamp.sec = sec
    msg.header.stamp.nanosec = nsec
    msg.header.frame_id = frame
    return msg


def _samples():
    det = msgs.Detection(class_id=3, class_name="cup", score=0.75, center_x=10.5, center_y=20.25, size_x=4.0,
                         size_y=8.0, track_id=msgs.Detection.TRACK_NONE)
    timing = msgs.InferenceTiming(model="yolo11s.axmodel", backend="axcl", device="axcl:129", preprocess_ms=1.5,
                                  queue_ms=0.25, inference_ms=3.5, postprocess_ms=0.75, total_ms=6.0)
    arr = _header(msgs.DetectionArray(image_width=640, image_height=480, detections=[det, det], timing=timing))
    chunk = _header(msgs.AudioChunk(sample_rate=48000, channels=2, sample_format=msgs.AudioChunk.FORMAT_S16LE,
                                    data=bytes(range(256)) * 4))
    seg = msgs.TranscriptSegment(start=0.5, end=1.75, text="hello", avg_logprob=-0.25, no_speech_prob=0.0078125)
    tr = _header(msgs.Transcript(segment_id=7, is_final=True, success=True, text="hello robot", language="en",
                                 duration=1.75, segments=[seg], timing=timing))
    st = _header(msgs.DeviceStatus(available=True, index=0, device_id=129, name="AX650N", firmware="V3.10.2",
                                   temperature_c=48.5, cpu_load_percent=3.25, npu_load_percent=40.0,
                                   memory_used_kb=100, memory_total_kb=945 * 1024, cmm_used_kb=2048,
                                   cmm_total_kb=7040 * 1024))
    return [arr, chunk, tr, st, timing, det, seg]


def test_every_message_round_trips():
    with RosGraph() as g:
        pub_node = g.node("msg_pub")
        sub_node = g.node("msg_sub")
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for i, sample in enumerate(_samples()):
            received = []
            topic = f"/axcl_test/m{i}"
            sub = sub_node.create_subscription(type(sample), topic, received.append, qos)
            pub = pub_node.create_publisher(type(sample), topic, qos)
            g.wait_for(lambda p=pub: p.get_subscription_count() > 0, 10, f"subscriber on {topic}")
            pub.publish(sample)
            g.wait_for(lambda r=received: len(r) == 1, 10, f"{type(sample).__name__} on {topic}")
            assert received[0] == sample, type(sample).__name__
            sub_node.destroy_subscription(sub)
            pub_node.destroy_publisher(pub)


def test_services_and_action_round_trip():
    with RosGraph() as g:
        server = g.node("srv_server")
        client_node = g.node("srv_client")

        def detect(req, resp):
            resp.success = True
            resp.message = f"{req.image.width}x{req.image.height}"
            resp.detections.header = req.image.header
            return resp

        def transcribe(req, resp):
            resp.success = True
            resp.transcript.text = f"{len(req.audio.data)} bytes"
            resp.transcript.language = req.language
            return resp

        server.create_service(Detect, "/axcl_test/detect", detect)
        server.create_service(Transcribe, "/axcl_test/transcribe", transcribe)
        req = Detect.Request()
        req.image.width, req.image.height = 4, 2
        req.image.header.frame_id = "cam"
        resp = g.call(client_node.create_client(Detect, "/axcl_test/detect"), req)
        assert resp.success and resp.message == "4x2" and resp.detections.header.frame_id == "cam"
        treq = Transcribe.Request(language="auto")
        treq.audio.data = b"\x00\x01" * 50
        tresp = g.call(client_node.create_client(Transcribe, "/axcl_test/transcribe"), treq)
        assert tresp.transcript.text == "100 bytes" and tresp.transcript.language == "auto"

        def execute(goal_handle):
            fb = ListenOnce.Feedback(speech_active=True, elapsed=0.5)
            goal_handle.publish_feedback(fb)
            goal_handle.succeed()
            result = ListenOnce.Result(success=True, message="ok")
            result.transcript.text = f"lang={goal_handle.request.language}"
            return result

        ActionServer(server, ListenOnce, "/axcl_test/listen_once", execute)
        ac = ActionClient(client_node, ListenOnce, "/axcl_test/listen_once")
        assert ac.wait_for_server(timeout_sec=10)
        feedback = []
        send = ac.send_goal_async(ListenOnce.Goal(timeout=1.0, language="de"),
                                  feedback_callback=lambda m: feedback.append(m.feedback))
        g.wait_for(send.done, 10, "goal acceptance")
        result_future = send.result().get_result_async()
        g.wait_for(result_future.done, 10, "action result")
        assert result_future.result().result.transcript.text == "lang=de"
