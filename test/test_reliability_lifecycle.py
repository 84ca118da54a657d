"""Lifecycle and parameter abuse, through real DDS: every request is answered within a bound, no node dies (#18).

* A standalone detector process (``python -m axcl_ros.nodes.detector``) gets every transition id (valid, invalid and
  internal ones) and every label from every state, including ``finalized``; two clients send the same transition at the
  same moment; transitions are requested while a 30 fps camera streams. rclpy 7.1.x raises ``RCLError: Transition is
  not registered`` for an id not valid in the current state (ros2/rclpy#1209, fixed upstream by #1319): the process
  used to exit, or (unconfigured/finalized) never answer.
* Two nodes in one executor (what ``perception_host`` runs): one node's bad request never takes the other down.
* Parameters: wrong types, out of range, NaN and infinities are refused with a reason; ``use_sim_time`` without a
  ``/clock`` publisher does not silence ``/diagnostics``.
"""

import math
import sys
import threading
import time
import types

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS tests need the workspace: run through `make test`")
pytest.importorskip("axcl_msgs.msg", reason="axcl_msgs not built: run through `make test`")

from axcl_msgs.msg import DetectionArray  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from axcl_ros.io.image import array_to_image_fields  # noqa: E402
from axcl_ros.nodes.depth import DepthNode  # noqa: E402
from axcl_ros.nodes.detector import DetectorNode  # noqa: E402
from axcl_ros_testing.depth_models import build_onnx_probe  # noqa: E402
from axcl_ros_testing.lifecycle_client import LifecycleClient  # noqa: E402
from axcl_ros_testing.ros_graph import RosGraph, RosProcess  # noqa: E402
from axcl_ros_testing.yolo_models import ultralytics_yolo_model  # noqa: E402

pytestmark = [pytest.mark.ros]

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
BOUND_S = 10.0  # every request must be answered within this (generous: shared 2-core machine)
LABELS = ("configure", "cleanup", "activate", "deactivate", "shutdown", "create", "destroy", "transition_success",
          "bogus", "CONFIGURE")
# every public transition id, the internal callback-result ids and a few that do not exist
IDS = sorted({0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 20, 21, 22, 30, 31, 32, 40, 41, 42, 50, 51, 52, 60, 61, 62, 99,
              255})
VALID = {  # state -> {label: id} of the transitions valid from it
    "unconfigured": {"configure": 1, "shutdown": 5},
    "inactive": {"cleanup": 2, "activate": 3, "shutdown": 6},
    "active": {"deactivate": 4, "shutdown": 7},
    "finalized": {},
}


def _image(sec):
    msg = Image(**array_to_image_fields(np.full((48, 64, 3), 90, np.uint8), "bgr8", data_as="array"))
    msg.header.stamp.sec, msg.header.frame_id = sec, "cam"
    return msg


class Requests:
    """Raw ChangeState/GetState calls with a deadline; a request left unanswered fails the test."""

    def __init__(self, graph, node, target):
        self.graph, self.target = graph, target
        self.change_client = node.create_client(ChangeState, f"{target}/change_state")
        self.state_client = node.create_client(GetState, f"{target}/get_state")
        assert self.change_client.wait_for_service(timeout_sec=30.0), f"{target} has no change_state service"
        # The first answer of a service in another process can be dropped by DDS (see nodes/service_call.py): make
        # sure both response paths are matched with requests that have no effect, so that every later request must
        # be answered.
        no_op = ChangeState.Request()
        no_op.transition.id = 255
        graph.call(self.change_client, no_op, 30.0, resend=True)
        graph.call(self.state_client, GetState.Request(), 30.0, resend=True)
        self.sent = self.answered = 0

    def change(self, *, tid=0, label=""):
        req = ChangeState.Request()
        req.transition.id, req.transition.label = tid, label
        self.sent += 1
        future = self.change_client.call_async(req)
        deadline = time.monotonic() + BOUND_S
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert future.done(), f"change_state(id={tid}, label={label!r}) unanswered after {BOUND_S} s"
        self.answered += 1
        return future.result().success

    def state(self):
        future = self.state_client.call_async(GetState.Request())
        deadline = time.monotonic() + BOUND_S
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert future.done(), "get_state unanswered"
        return future.result().current_state.label


def _abuse_from(req, state, alive):
    """Every id and label not valid from ``state`` is refused; the node stays in ``state``."""
    valid_ids, valid_labels = set(VALID[state].values()), set(VALID[state])
    for tid in IDS:
        if tid in valid_ids:
            continue
        assert req.change(tid=tid) is False, f"id {tid} from {state}"
        assert alive(), f"process died on id {tid} from {state}"
    for label in LABELS:
        if label in valid_labels:
            continue
        assert req.change(label=label) is False, f"label {label!r} from {state}"
    assert req.state() == state


@pytest.fixture(scope="module")
def yolo(tmp_path_factory):
    path = tmp_path_factory.mktemp("lc_models") / "yolo64.onnx"
    ultralytics_yolo_model(path, size=(64, 64), num_classes=3)
    return path


@pytest.fixture
def standalone(yolo, tmp_path):
    """A detector in its own process, and a graph with two client nodes."""
    argv = [sys.executable, "-m", "axcl_ros.nodes.detector", "--ros-args", "-r", "__node:=lc_det",
            "-p", f"model_path:={yolo}", "-p", "image_topics:=[/lc/cam/image_raw]", "-p", "input_qos:=reliable",
            "-p", "publish_annotated:=false", "-p", "diagnostics_period:=0.2"]
    with RosProcess(argv, timeout=300, log_path=str(tmp_path / "lc_det.log")) as proc, RosGraph(threads=4) as g:
        a, b = g.node("lc_client_a"), g.node("lc_client_b")
        r = types.SimpleNamespace(proc=proc, graph=g, a=Requests(g, a, "/lc_det"), b=Requests(g, b, "/lc_det"),
                                  node=a, alive=lambda: proc.proc.poll() is None)
        yield r
        assert r.alive(), f"the detector process exited:\n{proc.output()[-3000:]}"


def test_every_id_and_label_from_every_state_is_answered_standalone(standalone):
    r = standalone
    _abuse_from(r.a, "unconfigured", r.alive)
    assert r.a.change(label="configure")
    _abuse_from(r.a, "inactive", r.alive)
    assert r.a.change(tid=Transition.TRANSITION_ACTIVATE)
    _abuse_from(r.a, "active", r.alive)
    assert r.a.change(tid=Transition.TRANSITION_DEACTIVATE)
    assert r.a.change(label="cleanup")
    assert r.a.change(label="shutdown")
    _abuse_from(r.a, "finalized", r.alive)
    assert r.a.answered == r.a.sent and r.a.sent > 4 * (len(IDS) - 3)


def test_two_clients_requesting_the_same_transition_at_once(standalone):
    r = standalone
    for _ in range(9):
        for transition in ("configure", "cleanup"):
            results = []
            tid = {"configure": Transition.TRANSITION_CONFIGURE, "cleanup": Transition.TRANSITION_CLEANUP}[transition]
            threads = [threading.Thread(target=lambda req=req, t=tid, out=results: out.append(
                req.change(tid=t))) for req in (r.a, r.b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(2 * BOUND_S)
            assert sorted(results) == [False, True], f"{transition}: {results}"
            assert r.alive()
    assert r.a.state() == "unconfigured"


def test_transitions_while_a_30fps_camera_streams(standalone):
    r = standalone
    pub = r.node.create_publisher(Image, "/lc/cam/image_raw", QOS)
    dets = []
    r.node.create_subscription(DetectionArray, "/lc/cam/detections", dets.append, QOS)
    stop = threading.Event()

    def stream():
        sec = 0
        while not stop.is_set():
            sec += 1
            pub.publish(_image(sec))
            time.sleep(1 / 30)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        assert r.a.change(label="configure")
        for _ in range(5):
            assert r.a.change(label="activate")
            seen = len(dets)
            r.graph.wait_for(lambda seen=seen: len(dets) > seen, 20, "detections while active")
            assert r.b.change(tid=Transition.TRANSITION_CONFIGURE) is False  # invalid id mid-stream
            assert r.a.change(label="deactivate")
        assert r.a.change(label="cleanup")
    finally:
        stop.set()
        streamer.join(5)
    assert r.alive()


# ------------------------------------------------------------------------------------- two nodes, one executor
@pytest.fixture(scope="module")
def hosted(yolo, tmp_path_factory):
    """A detector and a depth node in one executor (the perception_host layout)."""
    probe = build_onnx_probe(tmp_path_factory.mktemp("lc_depth") / "depth56.onnx", 56, 56)
    with RosGraph(threads=6) as g:
        det = g.add(DetectorNode("lh_det", context=g.context, parameter_overrides=[
            Parameter("model_path", value=str(yolo)), Parameter("image_topics", value=["/lh/cam/image_raw"]),
            Parameter("input_qos", value="reliable"), Parameter("publish_annotated", value=False),
            Parameter("diagnostics_period", value=0.2)]))
        dep = g.add(DepthNode("lh_depth", context=g.context, parameter_overrides=[
            Parameter("model_path", value=str(probe)), Parameter("image_topic", value="/lh/dcam/image_raw"),
            Parameter("input_qos", value="reliable"), Parameter("diagnostics_period", value=0.2)]))
        test = g.node("lh_test")
        lc = LifecycleClient(g, test)
        for name in ("/lh_det", "/lh_depth"):
            assert lc.change(name, "configure") and lc.change(name, "activate")
        r = types.SimpleNamespace(graph=g, det=det, dep=dep, test=test, lc=lc, depths=[], diags={},
                                  req=Requests(g, test, "/lh_det"))
        test.create_subscription(Image, "/lh/dcam/inverse_depth_relative", r.depths.append, QOS)
        test.create_subscription(DiagnosticArray, "/diagnostics",
                                 lambda m: r.diags.update({s.name: s for s in m.status}), QOS)
        r.depth_pub = test.create_publisher(Image, "/lh/dcam/image_raw", QOS)
        g.wait_for(lambda: r.depth_pub.get_subscription_count() > 0, 10, "depth subscription")
        yield r


def _depth_serves(r, sec):
    n = len(r.depths)
    r.depth_pub.publish(_image(sec))
    r.graph.wait_for(lambda: len(r.depths) > n, 20, "a depth output")


def test_one_nodes_bad_request_never_takes_the_other_down(hosted):
    r = hosted
    for i, tid in enumerate(IDS):
        if tid in VALID["active"].values():
            continue
        assert r.req.change(tid=tid) is False
        if i % 7 == 0:
            _depth_serves(r, 100 + i)
    assert r.req.state() == "active"
    assert r.det.counters["refused_transitions"] >= len(IDS) - 2
    _depth_serves(r, 999)


def _set(r, target, name, value):
    client = r.test.create_client(SetParameters, f"{target}/set_parameters")
    req = SetParameters.Request(parameters=[ParameterMsg(name=name, value=value)])
    res = r.graph.call(client, req, BOUND_S).results[0]
    r.test.destroy_client(client)
    return res.successful, res.reason


def _double(v):
    return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=v)


@pytest.mark.parametrize("name,value", [
    ("diagnostics_period", _double(math.inf)), ("diagnostics_period", _double(math.nan)),
    ("diagnostics_period", _double(-1.0)), ("diagnostics_period", _double(1e9)),
    ("diagnostics_period", ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="1")),
    ("confidence_threshold", _double(math.nan)), ("confidence_threshold", _double(-math.inf)),
    ("iou_threshold", _double(math.nan)),
    ("max_image_pixels", ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=0)),
    ("max_image_pixels", _double(1e6)),
    ("input_size", ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=True)),
    ("rect_input", ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="yes")),
    ("cpu_memory_pattern", ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=1)),
])
def test_bad_parameter_values_are_refused_with_a_reason(hosted, name, value):
    ok, reason = _set(hosted, "/lh_det", name, value)
    assert not ok and reason
    assert hosted.req.state() == "active"


def test_diagnostics_period_changes_while_active_and_survives_sim_time_without_clock(hosted):
    r = hosted
    assert _set(r, "/lh_depth", "diagnostics_period", _double(0.1)) == (True, "")
    assert _set(r, "/lh_depth", "use_sim_time",
                ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=True))[0]
    key = "axcl_ros: /lh_depth"
    r.diags.pop(key, None)
    r.graph.wait_for(lambda: key in r.diags, 10, "/diagnostics with use_sim_time and no /clock")
    assert r.lc.change("/lh_depth", "deactivate") and r.lc.change("/lh_depth", "cleanup")
    assert r.lc.change("/lh_depth", "configure"), r.dep.last_error
    r.diags.pop(key, None)
    r.graph.wait_for(lambda: key in r.diags, 10, "/diagnostics after reconfigure with use_sim_time")
    assert r.lc.change("/lh_depth", "activate")
    _set(r, "/lh_depth", "use_sim_time", ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=False))


def test_an_invalid_transition_id_never_ends_a_real_perception_host(yolo, tmp_path):
    """Issue #18: one ``{id: 1}`` to a detector hosted in perception_host ended the whole host process."""
    import yaml

    probe = build_onnx_probe(tmp_path / "depth56.onnx", 56, 56)
    doc = {"perception_host": {"ros__parameters": {"nodes": ["ph_det", "ph_dep"], "node_types": ["detector", "depth"],
                                                   "autostart": False}},
           "ph_det": {"ros__parameters": {"model_path": str(yolo), "image_topics": ["/ph/cam/image_raw"],
                                          "input_qos": "reliable", "publish_annotated": False}},
           "ph_dep": {"ros__parameters": {"model_path": str(probe), "image_topic": "/ph/dcam/image_raw",
                                          "input_qos": "reliable"}}}
    params = tmp_path / "host.yaml"
    params.write_text(yaml.safe_dump(doc))
    argv = [sys.executable, "-m", "axcl_ros.bringup.host", "--ros-args", "--params-file", str(params)]
    with RosProcess(argv, timeout=240, log_path=str(tmp_path / "host.log")) as proc, RosGraph(threads=4) as g:
        test = g.node("ph_test")
        det, dep = Requests(g, test, "/ph_det"), Requests(g, test, "/ph_dep")
        for req in (det, dep):
            assert req.change(label="configure") and req.change(label="activate"), proc.output()[-2000:]
        depths = []
        test.create_subscription(Image, "/ph/dcam/inverse_depth_relative", depths.append, QOS)
        pub = test.create_publisher(Image, "/ph/dcam/image_raw", QOS)
        g.wait_for(lambda: pub.get_subscription_count() > 0, 20, "depth subscription")
        for tid in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_CLEANUP, 0, 8, 99):
            assert det.change(tid=tid) is False
            assert proc.proc.poll() is None, f"the host exited:\n{proc.output()[-3000:]}"
        pub.publish(_image(7))
        g.wait_for(lambda: any(m.header.stamp.sec == 7 for m in depths), 30, "depth served after the bad requests")
        assert det.state() == "active" and dep.state() == "active"
