"""Detector and depth nodes on ``backend: axcl`` against the C stub runtime (a test double of the documented AXCL
API, not the card): end to end through real DDS, one device context shared by both nodes of the process, exactly one
input copy and one output copy per frame, fault recovery through cleanup/configure, no leaked device memory."""

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS tests need the workspace: run through `make test`")
pytest.importorskip("axcl_msgs.msg", reason="axcl_msgs not built: run through `make test`")

from axcl_msgs.msg import DetectionArray  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from axcl_ros.io.image import array_to_image_fields  # noqa: E402
from axcl_ros.models.letterbox import letterbox  # noqa: E402
from axcl_ros.nodes.depth import DepthNode  # noqa: E402
from axcl_ros.nodes.detector import DetectorNode  # noqa: E402
from axcl_ros.runtime.axcl import get_runtime  # noqa: E402
from axcl_ros_testing import stub_models as sm  # noqa: E402
from axcl_ros_testing.lifecycle_client import LifecycleClient  # noqa: E402
from axcl_ros_testing.ros_graph import RosGraph  # noqa: E402

pytestmark = pytest.mark.ros
QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
YOLO_IN = 640 * 640 * 3
YOLO_OUT = sum(4 * g * g * 144 for g in (80, 40, 20))
DEPTH_IN = 518 * 518 * 3
DEPTH_OUT = 4 * 518 * 518


@pytest.fixture()
def models(tmp_path):
    return {"yolo": sm.yolo11_stub(tmp_path / "yolo11s.axmodel"), "depth": sm.depth_stub(tmp_path / "da2.axmodel")}


def _image(bgr, sec, frame="cam"):
    msg = Image(**array_to_image_fields(bgr, "bgr8", data_as="array"))
    msg.header.stamp.sec, msg.header.frame_id = sec, frame
    return msg


def test_detector_and_depth_share_the_card_one_copy_each_way_per_frame(stub, models):
    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    with RosGraph() as g:
        det = g.add(DetectorNode("det_axcl", context=g.context, parameter_overrides=[
            Parameter("model_path", value=str(models["yolo"])), Parameter("backend", value="axcl"),
            Parameter("image_topics", value=["/axcam/image_raw"]), Parameter("input_qos", value="reliable"),
            Parameter("publish_annotated", value=False)]))
        dep = g.add(DepthNode("depth_axcl", context=g.context, parameter_overrides=[
            Parameter("model_path", value=str(models["depth"])), Parameter("backend", value="auto"),
            Parameter("image_topic", value="/axcam/image_raw"), Parameter("input_qos", value="reliable")]))
        test = g.node("axcl_nodes_test")
        lc = LifecycleClient(g, test)
        for name in ("/det_axcl", "/depth_axcl"):
            assert lc.change(name, "configure") and lc.change(name, "activate"), name
        assert det.model.executor is dep.model.executor and det.model.backend == "axcl"
        # one device set-up and one context for both nodes' models
        assert stub.calls("axclrtSetDevice") == 1 and stub.calls("axclrtCreateContext") == 1
        assert get_runtime().live_sessions == 2
        dets, depths = [], []
        test.create_subscription(DetectionArray, "/axcam/detections", dets.append, QOS)
        test.create_subscription(Image, "/axcam/inverse_depth_relative", depths.append, QOS)
        pub = test.create_publisher(Image, "/axcam/image_raw", QOS)
        g.wait_for(lambda: pub.get_subscription_count() >= 2, 10, "both nodes subscribed")
        frames = 3
        stub.reset()
        for k in range(frames):
            pub.publish(_image(bgr, 10 + k))
            g.wait_for(lambda k=k: len(dets) > k and len(depths) > k, 30, f"outputs of frame {k}")
        c = stub.counters()
        assert c["h2d_bytes"] == frames * (YOLO_IN + DEPTH_IN), c
        assert c["d2h_bytes"] == frames * (YOLO_OUT + DEPTH_OUT), c
        assert c["h2d_calls"] == frames * 2 and c["d2h_calls"] == frames * (3 + 1), c
        # the detection is the stub's known box, mapped back from the letterbox to the input image
        boxed, info = letterbox(bgr, (640, 640), 0)
        expected = sm.expected_yolo_box(boxed[None])
        d = dets[-1].detections[0]
        x0 = (expected.box[0] - info.pad_left) / info.scale
        y0 = (expected.box[1] - info.pad_top) / info.scale
        assert d.class_id == expected.class_id and abs(d.score - expected.score) < 1e-3
        assert abs((d.center_x - d.size_x / 2) - x0) < 0.5 and abs((d.center_y - d.size_y / 2) - y0) < 0.5
        assert [m.header.stamp.sec for m in dets] == [10, 11, 12] and dets[0].timing.backend == "axcl"
        for name in ("/det_axcl", "/depth_axcl"):
            assert lc.change(name, "deactivate") and lc.change(name, "cleanup")
        assert stub.counters()["outstanding_allocs"] == 0


def test_execute_failure_reported_then_recovered_by_cleanup_configure(stub, models, monkeypatch):
    bgr = np.full((240, 320, 3), 77, np.uint8)
    with RosGraph() as g:
        det = g.add(DetectorNode("det_fault", context=g.context, parameter_overrides=[
            Parameter("model_path", value=str(models["yolo"])), Parameter("backend", value="axcl"),
            Parameter("image_topics", value=["/fcam/image_raw"]), Parameter("input_qos", value="reliable")]))
        test = g.node("fault_test")
        lc = LifecycleClient(g, test)
        monkeypatch.setenv("AXCL_STUB_FAIL_EXECUTE_AFTER", "1")
        assert lc.change("/det_fault", "configure") and lc.change("/det_fault", "activate")
        got = []
        test.create_subscription(DetectionArray, "/fcam/detections", got.append, QOS)
        pub = test.create_publisher(Image, "/fcam/image_raw", QOS)
        g.wait_for(lambda: pub.get_subscription_count() > 0, 10, "subscription")
        pub.publish(_image(bgr, 1))
        g.wait_for(lambda: len(got) == 1, 20, "first frame")
        pub.publish(_image(bgr, 2))
        g.wait_for(lambda: det.counters["inference_errors"] == 1, 20, "the injected execute failure")
        assert "execute" in det.last_error and len(got) == 1
        monkeypatch.delenv("AXCL_STUB_FAIL_EXECUTE_AFTER")
        assert lc.change("/det_fault", "deactivate") and lc.change("/det_fault", "cleanup")
        assert lc.change("/det_fault", "configure") and lc.change("/det_fault", "activate")
        pub.publish(_image(bgr, 3))
        g.wait_for(lambda: len(got) == 2, 20, "a frame after recovery")
        assert got[-1].header.stamp.sec == 3
        lc.change("/det_fault", "deactivate")
        lc.change("/det_fault", "cleanup")


def test_load_failure_is_a_readable_configure_failure(stub, models, monkeypatch):
    monkeypatch.setenv("AXCL_STUB_FAIL_LOAD", "1")
    with RosGraph() as g:
        det = g.add(DetectorNode("det_noload", context=g.context, parameter_overrides=[
            Parameter("model_path", value=str(models["yolo"])), Parameter("backend", value="axcl")]))
        lc = LifecycleClient(g, g.node("noload_test"))
        assert not lc.change("/det_noload", "configure") and lc.state("/det_noload") == "unconfigured"
        assert "yolo11s.axmodel" in det.last_error or "Load" in det.last_error, det.last_error
        monkeypatch.delenv("AXCL_STUB_FAIL_LOAD")
        assert lc.change("/det_noload", "configure")
        lc.change("/det_noload", "cleanup")


def test_hundred_configure_cleanup_cycles_leave_no_device_memory(stub, models):
    with RosGraph() as g:
        det = g.add(DetectorNode("det_cycles", context=g.context, parameter_overrides=[
            Parameter("model_path", value=str(models["yolo"])), Parameter("backend", value="axcl")]))
        t0 = time.monotonic()
        for _ in range(100):
            assert det.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert stub.counters()["outstanding_allocs"] == 4  # 1 input + 3 heads
            assert det.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert stub.counters()["outstanding_allocs"] == 0 and stub.counters()["loaded_models"] == 0
        assert time.monotonic() - t0 < 120


def test_device_lost_reported_then_recovered_by_cleanup_configure(stub, models, monkeypatch):
    bgr = np.full((240, 320, 3), 90, np.uint8)
    with RosGraph() as g:
        det = g.add(DetectorNode("det_lost", context=g.context, parameter_overrides=[
            Parameter("model_path", value=str(models["yolo"])), Parameter("backend", value="axcl"),
            Parameter("image_topics", value=["/lcam/image_raw"]), Parameter("input_qos", value="reliable")]))
        test = g.node("lost_test")
        lc = LifecycleClient(g, test)
        assert lc.change("/det_lost", "configure") and lc.change("/det_lost", "activate")
        got = []
        test.create_subscription(DetectionArray, "/lcam/detections", got.append, QOS)
        pub = test.create_publisher(Image, "/lcam/image_raw", QOS)
        g.wait_for(lambda: pub.get_subscription_count() > 0, 10, "subscription")
        pub.publish(_image(bgr, 1))
        g.wait_for(lambda: len(got) == 1, 20, "a frame before the fault")
        monkeypatch.setenv("AXCL_STUB_DEVICE_LOST_AFTER", str(stub.counters()["calls_since_init"]))
        pub.publish(_image(bgr, 2))
        g.wait_for(lambda: det.counters["inference_errors"] >= 1, 20, "the device-lost error")
        assert det.last_error and len(got) == 1 and lc.state("/det_lost") == "active"
        monkeypatch.delenv("AXCL_STUB_DEVICE_LOST_AFTER")
        assert lc.change("/det_lost", "deactivate") and lc.change("/det_lost", "cleanup")
        assert lc.change("/det_lost", "configure") and lc.change("/det_lost", "activate")
        pub.publish(_image(bgr, 3))
        g.wait_for(lambda: len(got) == 2, 20, "a frame after recovery")
        assert got[-1].header.stamp.sec == 3
        lc.change("/det_lost", "deactivate")
        lc.change("/det_lost", "cleanup")


def test_frame_in_flight_during_cleanup_is_not_an_error(stub, tmp_path):
    slow = sm.yolo11_stub(tmp_path / "slow.axmodel", delay_us=400_000)
    bgr = np.full((240, 320, 3), 50, np.uint8)
    with RosGraph() as g:
        det = g.add(DetectorNode("det_slow", context=g.context, parameter_overrides=[
            Parameter("model_path", value=str(slow)), Parameter("backend", value="axcl"),
            Parameter("image_topics", value=["/scam/image_raw"]), Parameter("input_qos", value="reliable")]))
        test = g.node("slow_test")
        assert det.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert det.trigger_activate() == TransitionCallbackReturn.SUCCESS
        pub = test.create_publisher(Image, "/scam/image_raw", QOS)
        g.wait_for(lambda: pub.get_subscription_count() > 0, 10, "subscription")
        pub.publish(_image(bgr, 1))
        g.wait_for(lambda: det.cameras.streams[0].received == 1, 10, "the frame to be submitted")
        time.sleep(0.05)  # running on the device now; a second frame waits in the slot
        pub.publish(_image(bgr, 2))
        g.wait_for(lambda: det.cameras.streams[0].received == 2, 10, "the second frame")
        assert det.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert det.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        time.sleep(0.6)  # the in-flight result arrives after cleanup
        assert det.counters["inference_errors"] == 0 and det.bad_inputs.total == 0 and not det.last_error


def test_speech_node_on_the_card_stub(stub, tmp_path):
    from axcl_msgs.srv import Transcribe

    from axcl_ros import assets
    from axcl_ros.io.audio import encode_chunk
    from axcl_ros.io.audio_format import FORMAT_S16LE
    from axcl_ros.models.whisper.tokenizer import WhisperTokenizer
    from axcl_ros.nodes.speech import SpeechNode

    try:
        tokenizer = assets.whisper_tiny_en_ct2() / "tokenizer.json"
    except assets.AssetNotFoundError as exc:
        pytest.skip(str(exc))
    tok = WhisperTokenizer.from_hf_json(tokenizer)
    words = tok.encode(" bring me the red cup")
    sm.whisper_stub(tmp_path, n_text_layer=2, n_text_state=32, n_vocab=len(tok), sequence=words, eot=tok.eot,
                    bad=tok.encode(" corrupt")[0], name="tiny")
    with RosGraph() as g:
        node = g.add(SpeechNode("speech_axcl", context=g.context, parameter_overrides=[
            Parameter("model_dir", value=str(tmp_path)), Parameter("tokenizer_path", value=str(tokenizer)),
            Parameter("backend", value="auto"), Parameter("timestamps", value=False)]))
        lc = LifecycleClient(g, g.node("speech_axcl_test"))
        assert lc.change("/speech_axcl", "configure"), node.last_error
        assert lc.change("/speech_axcl", "activate")
        req = Transcribe.Request(language="en")
        req.audio.sample_rate, req.audio.channels, req.audio.sample_format = 16000, 1, FORMAT_S16LE
        req.audio.data = encode_chunk(np.zeros(16000, np.float32), FORMAT_S16LE, 1)
        req.audio.header.stamp.sec = 5
        client = g.node("speech_axcl_client").create_client(Transcribe, "/speech_axcl/transcribe")
        resp = g.call(client, req, timeout=60)
        assert resp.success, resp.message
        assert resp.transcript.text.strip() == "bring me the red cup"
        assert resp.transcript.timing.backend == "axcl"
        assert lc.change("/speech_axcl", "deactivate") and lc.change("/speech_axcl", "cleanup")
        assert stub.counters()["outstanding_allocs"] == 0
