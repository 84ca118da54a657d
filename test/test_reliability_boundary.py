"""The callback boundary (#18): an exception in any callback is counted on /diagnostics and the node keeps serving.

* A subscription callback, an executor completion, a service and a parameter callback made to raise: the node stays
  active, ``callback_errors`` counts each failure, the service/parameter call is answered with a refusal.
* Depth: cleanup while a frame's outputs are being published (``get_subscription_count`` on a destroyed publisher,
  ``InvalidHandle``) is not a traceback but ``outputs_dropped_by_transition``.
* A node process whose ``ROS_LOG_DIR`` cannot be created still starts and serves.
"""

import sys
import time
import types
from concurrent.futures import Future

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS tests need the workspace: run through `make test`")
pytest.importorskip("axcl_msgs.msg", reason="axcl_msgs not built: run through `make test`")

from axcl_msgs.msg import DetectionArray  # noqa: E402
from axcl_msgs.srv import Detect  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.srv import GetState  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from axcl_ros.io.image import array_to_image_fields  # noqa: E402
from axcl_ros.nodes.depth import DepthNode  # noqa: E402
from axcl_ros.nodes.detector import DetectorNode  # noqa: E402
from axcl_ros.nodes.frame_pipeline import FrameTimes  # noqa: E402
from axcl_ros_testing.depth_models import build_onnx_probe  # noqa: E402
from axcl_ros_testing.lifecycle_client import LifecycleClient  # noqa: E402
from axcl_ros_testing.ros_graph import RosGraph, RosProcess  # noqa: E402
from axcl_ros_testing.yolo_models import ultralytics_yolo_model  # noqa: E402

pytestmark = [pytest.mark.ros]

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
TOPIC = "/bd/cam/image_raw"
OK = TransitionCallbackReturn.SUCCESS


def _image(sec, h=48, w=64):
    msg = Image(**array_to_image_fields(np.full((h, w, 3), 80, np.uint8), "bgr8", data_as="array"))
    msg.header.stamp.sec, msg.header.frame_id = sec, "cam"
    return msg


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("bd_models")
    yolo = d / "yolo64.onnx"
    ultralytics_yolo_model(yolo, size=(64, 64), num_classes=3)
    return types.SimpleNamespace(yolo=yolo, probe=build_onnx_probe(d / "depth56.onnx", 56, 56))


@pytest.fixture(scope="module")
def rig(models):
    with RosGraph(threads=6) as g:
        det = g.add(DetectorNode("bd_det", context=g.context, parameter_overrides=[
            Parameter("model_path", value=str(models.yolo)), Parameter("image_topics", value=[TOPIC]),
            Parameter("input_qos", value="reliable"), Parameter("publish_annotated", value=False),
            Parameter("diagnostics_period", value=0.1)]))
        test = g.node("bd_test")
        lc = LifecycleClient(g, test)
        assert lc.change("/bd_det", "configure") and lc.change("/bd_det", "activate")
        r = types.SimpleNamespace(graph=g, det=det, test=test, lc=lc, dets=[], diags={})
        test.create_subscription(DetectionArray, "/bd/cam/detections", r.dets.append, QOS)
        test.create_subscription(DiagnosticArray, "/diagnostics",
                                 lambda m: r.diags.update({s.name: s for s in m.status}), QOS)
        r.pub = test.create_publisher(Image, TOPIC, QOS)
        g.wait_for(lambda: r.pub.get_subscription_count() > 0, 10, "detector subscription")
        yield r


def _served(r, sec):
    n = len(r.dets)
    r.pub.publish(_image(sec))
    r.graph.wait_for(lambda: len(r.dets) > n and r.dets[-1].header.stamp.sec == sec, 20, f"detections for {sec}")


def _diag(r, key):
    name = "axcl_ros: /bd_det"
    r.diags.pop(name, None)
    r.graph.wait_for(lambda: name in r.diags, 10, "a /diagnostics status")
    status = r.diags[name]
    return status, {kv.key: kv.value for kv in status.values}.get(key)


def test_a_raising_subscription_callback_is_counted_and_the_node_keeps_serving(rig, monkeypatch):
    r = rig
    _served(r, 1)
    before = r.det.callback_errors.total

    def boom(*_a, **_k):
        raise RuntimeError("injected: adapter bug")

    monkeypatch.setattr(r.det.adapter, "preprocess", boom)  # RuntimeError is not an ImageConversionError
    for i in range(5):  # one at a time: the subscription keeps the latest frame only
        r.pub.publish(_image(10 + i))
        r.graph.wait_for(lambda i=i: r.det.callback_errors.total == before + i + 1, 20, "a counted callback error")
    monkeypatch.undo()
    _served(r, 20)
    assert r.lc.state("/bd_det") == "active"
    status, count = _diag(r, "callback_errors")
    assert int(count) == before + 5 and "injected: adapter bug" in status.message


def test_a_raising_executor_completion_is_counted(rig, monkeypatch):
    r = rig
    before = r.det.callback_errors.total
    monkeypatch.setattr(r.det.pipeline, "_on_result",
                        lambda *a: (_ for _ in ()).throw(KeyError("injected completion")))
    r.pub.publish(_image(30))
    r.graph.wait_for(lambda: r.det.callback_errors.total == before + 1, 20, "the completion's error counted")
    assert any(k.startswith("inference result") for k in r.det.callback_errors.counts)
    monkeypatch.undo()
    _served(r, 31)


def test_a_raising_service_and_parameter_callback_are_answered(rig, monkeypatch):
    r = rig
    monkeypatch.setattr(r.det, "_message", lambda *a: (_ for _ in ()).throw(ValueError("injected service bug")))
    req = Detect.Request(image=_image(40))
    res = r.graph.call(r.test.create_client(Detect, "/bd_det/detect"), req, 20)
    assert res.success is False and "injected service bug" in res.message  # answered by the guard's fallback
    assert any(k.startswith("service") for k in r.det.callback_errors.counts)
    monkeypatch.undo()

    monkeypatch.setattr(r.det, "validate_parameter", lambda *a: 1 / 0)
    before = r.det.callback_errors.total
    req = SetParameters.Request(parameters=[ParameterMsg(name="confidence_threshold", value=ParameterValue(
        type=ParameterType.PARAMETER_DOUBLE, double_value=0.3))])
    res = r.graph.call(r.test.create_client(SetParameters, "/bd_det/set_parameters"), req, 20).results[0]
    assert res.successful is False and "ZeroDivisionError" in res.reason
    assert r.det.callback_errors.total == before + 1
    monkeypatch.undo()
    _served(r, 41)
    assert r.graph.call(r.test.create_client(GetState, "/bd_det/get_state"), GetState.Request(),
                        10).current_state.label == "active"


def test_a_raising_qos_event_callback_is_counted(rig, monkeypatch):
    r = rig
    before = r.det.callback_errors.total
    monkeypatch.setattr(r.det.cameras, "_qos_mismatch", lambda *a: 1 / 0)
    best_effort = r.test.create_publisher(Image, TOPIC, QoSProfile(depth=1,
                                                                   reliability=ReliabilityPolicy.BEST_EFFORT))
    try:
        r.graph.wait_for(lambda: r.det.callback_errors.total > before, 20, "the incompatible-QoS event counted")
        assert any(k.startswith("incompatible_qos event") for k in r.det.callback_errors.counts)
    finally:
        r.test.destroy_publisher(best_effort)
    monkeypatch.undo()
    _served(r, 50)


def test_depth_cleanup_while_publishing_a_frame_is_not_an_error(models):
    """Issue item 2: deactivate + cleanup between the outputs of one frame (deterministic version of the race)."""
    with RosGraph(threads=4) as g:
        node = g.add(DepthNode("bd_depth", context=g.context, parameter_overrides=[
            Parameter("model_path", value=str(models.probe)), Parameter("image_topic", value="/bd/dcam/image_raw"),
            Parameter("input_qos", value="reliable")]))
        assert node.trigger_configure() == OK and node.trigger_activate() == OK
        outputs, adapter, host, cam = node.outputs, node.adapter, node.model, node.cameras.streams[0]
        bgr = np.full((56, 56, 3), 100, np.uint8)
        result = host.submit(adapter.preprocess(bgr)).result(timeout=30)
        publish = node._publish

        def publish_then_cleanup(*args):
            publish(*args)
            node.trigger_deactivate()
            node.trigger_cleanup()  # destroys outputs.timing before _on_result reaches it

        node._publish = publish_then_cleanup
        future = Future()
        future.set_result(result)
        t = time.perf_counter()
        node.pipeline._on_result(cam, _image(1).header, (outputs, adapter, host, (56, 56), None), FrameTimes(t, t),
                                 future)
        assert node.counters["outputs_dropped_by_transition"] == 1
        assert cam.errors == 0 and node.bad_inputs.total == 0
        assert node.trigger_configure() == OK
        node.trigger_cleanup()


def test_node_starts_when_the_log_directory_cannot_be_created(models, tmp_path):
    argv = [sys.executable, "-m", "axcl_ros.nodes.detector", "--ros-args", "-r", "__node:=bd_logdir",
            "-p", f"model_path:={models.yolo}", "-p", "image_topics:=[/bd/logdir/image_raw]"]
    with RosProcess(argv, timeout=120, env={"ROS_LOG_DIR": "/proc/axcl_ros_cannot_create/log"},
                    log_path=str(tmp_path / "logdir.log")) as proc, RosGraph(threads=2) as g:
        lc = LifecycleClient(g, g.node("bd_logdir_client"))
        client = lc._client(GetState, "/bd_logdir/get_state")
        deadline = time.monotonic() + 60
        while not client.wait_for_service(timeout_sec=0.5):
            assert proc.proc.poll() is None, f"the node died:\n{proc.output()[-2000:]}"
            assert time.monotonic() < deadline, "no get_state service"
        assert lc.state("/bd_logdir") == "unconfigured"
        assert lc.change("/bd_logdir", "configure")
        assert "cannot be used" in proc.output()


@pytest.mark.parametrize("argv, service", [
    (["-m", "axcl_ros.bringup.host", "--nodes", "bd_logdir_host_a:axcl_ros_testing.dummy_nodes:DummyLifecycleNode",
      "--autostart", "false", "--ros-args", "-r", "__ns:=/bd_logdir_host"],
     "/bd_logdir_host/bd_logdir_host_a/get_state"),
    (["-m", "axcl_ros.bringup.lifecycle_manager", "--ros-args", "-r", "__node:=bd_logdir_mgr", "-p",
      "autostart:=false"], "/bd_logdir_mgr/manage_nodes"),
])
def test_host_and_manager_start_when_the_log_directory_cannot_be_created(tmp_path, argv, service):
    from axcl_msgs.srv import ManageNodes

    kind = GetState if service.endswith("get_state") else ManageNodes
    with RosProcess([sys.executable, *argv], timeout=120, env={"ROS_LOG_DIR": "/proc/axcl_ros_cannot_create/log"},
                    log_path=str(tmp_path / "proc.log")) as proc, RosGraph(threads=2) as g:
        client = g.node("bd_logdir_probe").create_client(kind, service)
        deadline = time.monotonic() + 60
        while not client.wait_for_service(timeout_sec=0.5):
            assert proc.proc.poll() is None, f"the process died:\n{proc.output()[-2000:]}"
            assert time.monotonic() < deadline, f"no {service}"
        assert "cannot be used" in proc.output()
