"""Fault injection through the AXCL stub runtime while the detector and depth nodes stream frames (real DDS).

Both nodes share one device (one executor, one context). Faults (the stub's environment switches, read at the call
that uses them): load failure, execute failure in the middle of a stream, device lost in the middle of a stream.
Each time: the node reports (configure FAILURE with a message, or ``inference_errors`` + ``last_error`` + an ERROR
diagnostic), its lifecycle services keep answering (no hang), and it recovers through cleanup → configure →
activate; at the end the stub holds no device memory, model, IO or context (no leak) and no thread is left behind.
"""

import threading
import time
import types

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS tests need the workspace: run through `make test`")
pytest.importorskip("axcl_msgs.msg", reason="axcl_msgs not built: run through `make test`")
build = pytest.importorskip("axcl_ros_testing.axcl_stub_build", reason="the AXCL stub builder is not available")

from axcl_msgs.msg import DetectionArray  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from axcl_ros.io.image import array_to_image_fields  # noqa: E402
from axcl_ros.nodes.depth import DepthNode  # noqa: E402
from axcl_ros.nodes.detector import DetectorNode  # noqa: E402
from axcl_ros.runtime.axcl import get_runtime, shutdown_runtime  # noqa: E402
from axcl_ros.runtime.executors import shutdown_all  # noqa: E402
from axcl_ros_testing import stub_models as sm  # noqa: E402
from axcl_ros_testing.lifecycle_client import LifecycleClient  # noqa: E402
from axcl_ros_testing.ros_graph import RosGraph  # noqa: E402

pytestmark = [pytest.mark.ros]

QOS = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
FAULTS = ("AXCL_STUB_FAIL_LOAD", "AXCL_STUB_FAIL_EXECUTE_AFTER", "AXCL_STUB_DEVICE_LOST_AFTER", "AXCL_STUB_DEVICE_IDS")
TOPIC = "/flt/image_raw"
NODES = ("/flt_det", "/flt_depth")
LEAK_KEYS = ("outstanding_allocs", "outstanding_bytes", "loaded_models", "outstanding_ioinfos", "outstanding_ios",
             "live_contexts")


@pytest.fixture()
def stub(monkeypatch):
    try:
        lib = build.build_stub()
    except build.StubBuildError as exc:
        pytest.skip(str(exc))
    monkeypatch.setenv("AXCL_LIB_PATH", str(lib))
    for key in FAULTS:
        monkeypatch.delenv(key, raising=False)
    shutdown_all()
    shutdown_runtime()
    ctl = build.StubControl(lib)
    ctl.reset()
    threads_before = threading.active_count()
    yield types.SimpleNamespace(ctl=ctl, threads_before=threads_before)
    for key in FAULTS:
        monkeypatch.delenv(key, raising=False)
    assert shutdown_all(5.0)
    shutdown_runtime()
    c = ctl.counters()
    assert {k: c[k] for k in LEAK_KEYS} == dict.fromkeys(LEAK_KEYS, 0), c
    assert c["initialized"] == 0


@pytest.fixture()
def rig(stub, tmp_path):
    """Detector + depth on the stub card, a camera publisher thread, outputs and diagnostics."""
    yolo = sm.yolo11_stub(tmp_path / "yolo11.axmodel", size=320)
    depth = sm.depth_stub(tmp_path / "da2.axmodel", size=98)
    with RosGraph(threads=6) as g:
        common = [Parameter("backend", value="axcl"), Parameter("input_qos", value="reliable"),
                  Parameter("diagnostics_period", value=0.2)]
        det = g.add(DetectorNode("flt_det", context=g.context, parameter_overrides=common + [
            Parameter("model_path", value=str(yolo)), Parameter("image_topics", value=[TOPIC]),
            Parameter("publish_annotated", value=False)]))
        dep = g.add(DepthNode("flt_depth", context=g.context, parameter_overrides=common + [
            Parameter("model_path", value=str(depth)), Parameter("image_topic", value=TOPIC)]))
        test = g.node("flt_test")
        r = types.SimpleNamespace(graph=g, det=det, dep=dep, test=test, lc=LifecycleClient(g, test), dets=[],
                                  depths=[], diags={}, stub=stub, yolo=yolo, depth=depth)
        test.create_subscription(DetectionArray, "/flt/detections", r.dets.append, QOS)
        test.create_subscription(Image, "/flt/inverse_depth_relative", r.depths.append, QOS)
        test.create_subscription(DiagnosticArray, "/diagnostics",
                                 lambda m: r.diags.update({s.name: s for s in m.status}), QOS)
        r.pub = test.create_publisher(Image, TOPIC, QOS)
        bgr = np.random.default_rng(2).integers(0, 255, (120, 160, 3), dtype=np.uint8)
        r.frame = Image(**array_to_image_fields(bgr, "bgr8", data_as="array"))
        r.frame.header.frame_id = "cam"
        r.sent = [0]
        r.stop = threading.Event()

        def camera():
            while not r.stop.is_set():
                r.sent[0] += 1
                r.frame.header.stamp.sec = r.sent[0]
                r.pub.publish(r.frame)
                time.sleep(0.05)

        r.camera = threading.Thread(target=camera, name="flt-camera", daemon=True)
        yield r
        r.stop.set()
        if r.camera.is_alive():
            r.camera.join(5)
        for name in NODES:
            if r.lc.state(name, timeout=10) == "active":
                r.lc.change(name, "deactivate", timeout=10)
            if r.lc.state(name, timeout=10) == "inactive":
                r.lc.change(name, "cleanup", timeout=10)


def _change(r, name, transition, timeout=10.0):
    """A transition that must answer within ``timeout`` seconds (no hang); returns success."""
    t0 = time.monotonic()
    ok = r.lc.change(name, transition, timeout=timeout)
    assert time.monotonic() - t0 < timeout
    return ok


def _bring_up(r):
    for name, node in zip(NODES, (r.det, r.dep)):
        assert _change(r, name, "configure"), node.last_error
        assert _change(r, name, "activate")
    r.graph.wait_for(lambda: r.pub.get_subscription_count() >= 2, 10, "both nodes subscribed")


def _served(r, timeout=20.0):
    """Both nodes publish outputs for frames sent from now on."""
    mark = r.sent[0]
    r.graph.wait_for(lambda: any(m.header.stamp.sec > mark for m in r.dets[-3:])
                     and any(m.header.stamp.sec > mark for m in r.depths[-3:]), timeout, "outputs of new frames")


def _error_diagnostic(r, node):
    key = f"axcl_ros: {node.get_fully_qualified_name()}"
    r.graph.wait_for(lambda: key in r.diags and r.diags[key].level == DiagnosticStatus.ERROR, 10,
                     f"an ERROR diagnostic from {key}")
    return r.diags[key].message


def _recover(r, device_alive=True):
    """deactivate → cleanup (device memory freed, when the device answers) → configure → activate."""
    for name in NODES:
        assert _change(r, name, "deactivate")
        assert _change(r, name, "cleanup")
    assert r.det.model is None and r.dep.model is None
    c = r.stub.ctl.counters()
    if device_alive:
        assert c["outstanding_allocs"] == 0 and c["loaded_models"] == 0 and c["outstanding_ios"] == 0, c
    _bring_up(r)


def test_load_failure_is_a_clear_configure_failure_then_recovers(rig, monkeypatch):
    r = rig
    monkeypatch.setenv("AXCL_STUB_FAIL_LOAD", "1")
    for name, node, file in zip(NODES, (r.det, r.dep), ("yolo11.axmodel", "da2.axmodel")):
        assert not _change(r, name, "configure")
        assert r.lc.state(name) == "unconfigured"
        assert file in node.last_error and "axclrtEngineLoadFromFile" in node.last_error, node.last_error
        assert node.model is None
    assert r.stub.ctl.counters()["outstanding_allocs"] == 0
    monkeypatch.delenv("AXCL_STUB_FAIL_LOAD")
    _bring_up(r)
    r.camera.start()
    _served(r)


def test_execute_failure_mid_stream_reported_and_recovered(rig, monkeypatch):
    r = rig
    _bring_up(r)
    r.camera.start()
    _served(r)
    monkeypatch.setenv("AXCL_STUB_FAIL_EXECUTE_AFTER", "0")  # every later execute of every loaded model fails
    r.graph.wait_for(lambda: r.det.counters["inference_errors"] >= 3 and r.dep.counters["inference_errors"] >= 3,
                     20, "execute failures reported by both nodes")
    for node in (r.det, r.dep):
        assert "axclrtEngineExecute" in node.last_error, node.last_error
        assert "axclrtEngineExecute" in _error_diagnostic(r, node)
    n_det, n_dep = len(r.dets), len(r.depths)
    time.sleep(0.5)
    assert len(r.dets) == n_det and len(r.depths) == n_dep  # nothing published from failed runs
    assert all(r.lc.state(name, timeout=5) == "active" for name in NODES)  # services answer during the fault
    monkeypatch.delenv("AXCL_STUB_FAIL_EXECUTE_AFTER")
    _recover(r)
    _served(r)
    for node in (r.det, r.dep):
        assert node.last_error == ""
    assert get_runtime().restarts == 0  # an execute failure does not need a runtime restart


def test_device_lost_mid_stream_reported_and_recovered(rig, monkeypatch):
    r = rig
    _bring_up(r)
    r.camera.start()
    _served(r)
    contexts = r.stub.ctl.counters()["live_contexts"]
    calls = r.stub.ctl.counters()["calls_since_init"]
    monkeypatch.setenv("AXCL_STUB_DEVICE_LOST_AFTER", str(calls + 20))
    r.graph.wait_for(lambda: r.stub.ctl.counters()["device_lost"] == 1, 20, "the device to be lost")
    r.graph.wait_for(lambda: r.det.counters["inference_errors"] >= 2 and r.dep.counters["inference_errors"] >= 2,
                     20, "failures reported by both nodes")
    for node in (r.det, r.dep):
        assert "unexpected response" in node.last_error or "device" in node.last_error, node.last_error
        _error_diagnostic(r, node)
    monkeypatch.delenv("AXCL_STUB_DEVICE_LOST_AFTER")  # the card comes back: cleanup + configure restarts AXCL
    _recover(r, device_alive=False)  # a lost device cannot free; the restart (axclFinalize) reclaims it all
    _served(r)
    c = r.stub.ctl.counters()
    assert get_runtime().restarts == 1 and c["device_lost"] == 0 and c["reclaimed_at_teardown"] > 0, c
    assert c["loaded_models"] == 2 and c["live_contexts"] == contexts, c  # only the new sessions' objects
    for node in (r.det, r.dep):
        assert node.last_error == ""


def _own_threads():
    """Live threads other than the rclpy executor's worker pool (it starts its bounded workers lazily, as
    concurrency demands, so their number depends on the machine's load, not on leaks)."""
    return [t.name for t in threading.enumerate() if not t.name.startswith("ThreadPoolExecutor-")]


def test_repeated_faults_leave_no_threads_behind(rig, monkeypatch):
    """Three execute-failure/recovery rounds: thread count and device memory come back to the start."""
    r = rig
    _bring_up(r)
    r.camera.start()
    _served(r)
    threads = _own_threads()
    contexts = r.stub.ctl.counters()["live_contexts"]
    for _ in range(3):
        monkeypatch.setenv("AXCL_STUB_FAIL_EXECUTE_AFTER", "0")
        errors = r.det.counters["inference_errors"]
        r.graph.wait_for(lambda errors=errors: r.det.counters["inference_errors"] > errors, 20, "a failure")
        monkeypatch.delenv("AXCL_STUB_FAIL_EXECUTE_AFTER")
        _recover(r)
        _served(r)
    now = _own_threads()
    assert len(now) <= len(threads) + 1, sorted(set(now) - set(threads))
    c = r.stub.ctl.counters()
    assert c["loaded_models"] == 2 and c["live_contexts"] == contexts and c["outstanding_ios"] == 2, c
