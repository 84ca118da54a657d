"""Depth node through real DDS: probe models with the DA-V2 signatures (known per-pixel output), camera_info scaling,
point-cloud geometry through a known pinhole, lazy outputs, lifecycle services and malformed inputs."""

import array
import time

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS tests need the workspace: run through `make test`")
pytest.importorskip("axcl_msgs.msg", reason="axcl_msgs not built: run through `make test`")

from axcl_msgs.msg import InferenceTiming  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2  # noqa: E402

from axcl_ros.io.compressed_image import array_to_compressed  # noqa: E402
from axcl_ros.io.image import array_to_image_fields  # noqa: E402
from axcl_ros.models.depth_geometry import PointFieldSpec, pointcloud2_dtype  # noqa: E402
from axcl_ros.nodes import depth as depth_module  # noqa: E402
from axcl_ros.nodes.depth import DepthNode  # noqa: E402
from axcl_ros_testing.depth_models import build_axera_probe, build_onnx_probe  # noqa: E402
from axcl_ros_testing.lifecycle_client import LifecycleClient  # noqa: E402
from axcl_ros_testing.ros_graph import RosGraph  # noqa: E402

pytestmark = [pytest.mark.ros]

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
H, W = 48, 64  # input image size of most tests
K_IN = np.array([[58.0, 0.0, 31.2], [0.0, 61.0, 24.6], [0.0, 0.0, 1.0]])  # a pinhole for the 64x48 image


# ------------------------------------------------------------------------------------------------------ helpers
def _ramps(h=H, w=W):
    """bgr8: R = horizontal integer ramp 20 + 2u, G = vertical ramp, B = noise (distinct channels)."""
    u = np.arange(w)
    v = np.arange(h)
    r = np.broadcast_to(20 + 2 * u[None, :], (h, w))
    g = np.broadcast_to(40 + 3 * v[:, None], (h, w))
    b = np.random.default_rng(3).integers(0, 256, (h, w))
    return np.stack([b, g, r], axis=2).astype(np.uint8)


def _image_msg(bgr, sec, frame="cam_optical"):
    msg = Image(**array_to_image_fields(bgr, "bgr8", data_as="array"))
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = sec, 250, frame
    return msg


def _info_msg(k=K_IN, w=W, h=H, frame="cam_optical"):
    msg = CameraInfo()
    msg.header.frame_id, msg.width, msg.height = frame, w, h
    msg.distortion_model, msg.d = "plumb_bob", [0.0] * 5
    msg.k = np.asarray(k, float).ravel().tolist()
    msg.r = np.eye(3).ravel().tolist()
    msg.p = np.hstack([np.asarray(k, float), np.zeros((3, 1))]).ravel().tolist()
    return msg


def _depth_array(msg):
    assert msg.encoding == "32FC1" and msg.step == msg.width * 4 and not msg.is_bigendian
    return np.frombuffer(bytes(msg.data), np.float32).reshape(msg.height, msg.width)


def _cloud(msg):
    """PointCloud2 -> (xyz float64 [N,3], rgb uint8 [N,3] or None)."""
    assert msg.height == 1 and not msg.is_bigendian and msg.row_step == msg.point_step * msg.width
    specs = [PointFieldSpec(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    pts = np.frombuffer(bytes(msg.data), pointcloud2_dtype(specs, msg.point_step))
    xyz = np.stack([pts["x"], pts["y"], pts["z"]], axis=1).astype(np.float64)
    rgb = None
    if "rgb" in pts.dtype.names:
        packed = np.ascontiguousarray(pts["rgb"]).view(np.uint32)
        rgb = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).astype(np.uint8)
    return xyz, rgb


def _same_header(a, b):
    return (a.stamp.sec, a.stamp.nanosec, a.frame_id) == (b.stamp.sec, b.stamp.nanosec, b.frame_id)


def _scaled_k(k, sx, sy):
    """Independent half-pixel scaling of K (u' = (u + 0.5) * s - 0.5)."""
    a = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])
    return a @ k


@pytest.fixture()
def graph():
    with RosGraph() as g:
        yield g


def _make(graph, name, model, **params):
    overrides = [Parameter("model_path", value=str(model)), Parameter("input_qos", value="reliable"),
                 Parameter("diagnostics_period", value=0.0)]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    return graph.add(DepthNode(name, context=graph.context, parameter_overrides=overrides))


class _Probe:
    """A test node that subscribes to some of the depth node's outputs and publishes its inputs."""

    def __init__(self, graph, name, ns, suffix, transport="raw"):
        self.graph, self.node = graph, graph.node(name)
        self.got = {}
        self.subs = {}
        self.ns, self.suffix = ns, suffix
        img_type = CompressedImage if transport == "compressed" else Image
        img_topic = f"{ns}/image_raw" + ("/compressed" if transport == "compressed" else "")
        self.image = self.node.create_publisher(img_type, img_topic, QOS)
        self.info = self.node.create_publisher(CameraInfo, f"{ns}/camera_info", QOS)

    def listen(self, key, msg_type, topic):
        self.got[key] = []
        self.subs[key] = self.node.create_subscription(msg_type, topic, self.got[key].append, QOS)

    def listen_all(self, points="points"):
        s = f"{self.ns}/{self.suffix}"
        self.listen("depth", Image, s)
        self.listen("info", CameraInfo, f"{s}/camera_info")
        self.listen("colored", Image, f"{s}/colored")
        self.listen("timing", InferenceTiming, f"{s}/timing")
        self.listen("points", PointCloud2, f"{self.ns}/{points}")

    def wait_matched(self, node, keys):
        self.graph.wait_for(lambda: self.image.get_subscription_count() > 0
                            and self.info.get_subscription_count() > 0, 10, "depth node subscriptions")
        pubs = node.outputs
        for key in keys:
            pub = {"depth": pubs.depth, "info": pubs.camera_info, "colored": pubs.colored, "timing": pubs.timing,
                   "points": pubs.points}[key]
            self.graph.wait_for(lambda pub=pub: pub.get_subscription_count() > 0, 10, f"{key} subscriber")

    def send_info(self, node, msg):
        n = node.counters["camera_info_received"]
        self.info.publish(msg)
        self.graph.wait_for(lambda: node.counters["camera_info_received"] > n, 10, "camera_info received")

    def clear(self):
        for v in self.got.values():
            v.clear()


def _start(graph, node, name):
    lc = LifecycleClient(graph, graph.node(f"{name}_lc"))
    assert lc.change(f"/{name}", "configure"), node.last_error
    assert lc.change(f"/{name}", "activate")
    return lc


# ------------------------------------------------------------------------------------------- outputs per layout
def _expected_axera(bgr, model_hw):
    """AXERA probe (weights R): RGB plain bilinear resize to the model size, R channel, bilinear back."""
    small = cv2.resize(bgr, (model_hw[1], model_hw[0]), interpolation=cv2.INTER_LINEAR)[..., 2].astype(np.float32)
    return cv2.resize(small, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_LINEAR)


def _expected_onnx(bgr, size, out_wh):
    """ONNX probe (weights G, 2x2 average pool): bicubic resize to size x size, G channel, pool, bilinear to out."""
    g = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_CUBIC)[..., 1].astype(np.float32)
    pooled = g.reshape(size // 2, 2, size // 2, 2).mean(axis=(1, 3))
    return cv2.resize(pooled, out_wh, interpolation=cv2.INTER_LINEAR)


def test_axera_layout_relative_outputs_with_matching_headers(graph, tmp_path):
    model = build_axera_probe(tmp_path / "da_axera.onnx", 56, 70, weights=(1.0, 0.0, 0.0))
    node = _make(graph, "depth_ax", model, image_topic="/cam_ax/image_raw", relative_points=True,
                 publish_rgb_points=True, point_stride=2)
    probe = _Probe(graph, "depth_ax_test", "/cam_ax", "inverse_depth_relative")
    probe.listen_all(points="points_relative")
    _start(graph, node, "depth_ax")
    # relative inverse depth is never published on a topic called depth, nor as a metric cloud
    assert probe.node.count_publishers("/cam_ax/depth") == 0 and probe.node.count_publishers("/cam_ax/points") == 0
    probe.wait_matched(node, ["depth", "info", "colored", "timing", "points"])
    bgr = _ramps()
    probe.send_info(node, _info_msg())
    image = _image_msg(bgr, 42)
    probe.image.publish(image)
    graph.wait_for(lambda: all(probe.got[k] for k in ("depth", "info", "colored", "timing", "points")), 20,
                   "all outputs")

    d = probe.got["depth"][0]
    assert _same_header(d.header, image.header) and (d.width, d.height) == (W, H)
    inv = _depth_array(d)
    np.testing.assert_allclose(inv, _expected_axera(bgr, (56, 70)), atol=1e-3)

    info = probe.got["info"][0]
    assert _same_header(info.header, image.header) and (info.width, info.height) == (W, H)
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), K_IN, atol=1e-9)  # same size: K unchanged

    col = probe.got["colored"][0]
    assert _same_header(col.header, image.header) and col.encoding == "bgr8" and (col.width, col.height) == (W, H)
    colored = np.frombuffer(bytes(col.data), np.uint8).reshape(H, W, 3)
    # turbo over a robust (percentile) range, near (= large inverse depth = right, R ramp) is hot: the outermost
    # columns lie beyond the percentiles, so they get the two ends of the colormap
    ends = cv2.applyColorMap(np.array([[0], [255]], np.uint8), cv2.COLORMAP_TURBO)[:, 0]
    assert (colored[:, 0] == ends[0]).all() and (colored[:, -1] == ends[1]).all(), (colored[0, 0], colored[0, -1])

    pc = probe.got["points"][0]
    assert _same_header(pc.header, image.header)
    xyz, rgb = _cloud(pc)
    vv, uu = np.mgrid[0:H:2, 0:W:2]
    assert xyz.shape == (uu.size, 3)
    z = 1.0 / inv[vv, uu].ravel()  # points_relative: unitless z = 1 / inverse depth
    np.testing.assert_allclose(xyz[:, 2], z, rtol=1e-5)
    np.testing.assert_allclose(xyz[:, 0], (uu.ravel() - K_IN[0, 2]) / K_IN[0, 0] * z, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(xyz[:, 1], (vv.ravel() - K_IN[1, 2]) / K_IN[1, 1] * z, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(rgb, bgr[vv, uu][..., ::-1].reshape(-1, 3))

    t = probe.got["timing"][0]
    assert t.backend == "onnxruntime" and t.inference_ms > 0 and t.total_ms >= t.inference_ms
    assert node.cameras.streams[0].published == 1
    _stop(graph, "depth_ax")


def test_onnx_layout_metric_output_resized_with_scaled_camera_info(graph, tmp_path):
    model = build_onnx_probe(tmp_path / "da_dyn.onnx", None, None, weights=(0.0, 1.0, 0.0), downsample=2)
    out_w, out_h = 40, 30
    node = _make(graph, "depth_onnx", model, image_topic="/cam_on/image_raw", output_mode="metric",
                 input_size=42, output_width=out_w, output_height=out_h, point_stride=3, colormap="inferno")
    probe = _Probe(graph, "depth_onnx_test", "/cam_on", "depth")
    probe.listen_all()
    _start(graph, node, "depth_onnx")
    assert node.adapter.input_hw == (42, 42)
    assert probe.node.count_publishers("/cam_on/inverse_depth_relative") == 0
    probe.wait_matched(node, ["depth", "info", "colored", "points"])
    bgr = _ramps()
    probe.send_info(node, _info_msg())
    image = _image_msg(bgr, 7, frame="onnx_cam")
    probe.image.publish(image)
    graph.wait_for(lambda: all(probe.got[k] for k in ("depth", "info", "colored", "points")), 20, "all outputs")

    d = probe.got["depth"][0]
    assert _same_header(d.header, image.header) and (d.width, d.height) == (out_w, out_h)
    metres = _depth_array(d)
    np.testing.assert_allclose(metres, _expected_onnx(bgr, 42, (out_w, out_h)), atol=2e-3)

    info = probe.got["info"][0]
    assert _same_header(info.header, image.header) and (info.width, info.height) == (out_w, out_h)
    k_out = _scaled_k(K_IN, out_w / W, out_h / H)
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), k_out, atol=1e-9)
    np.testing.assert_allclose(np.reshape(info.p, (3, 4))[:, :3], k_out, atol=1e-9)

    col = probe.got["colored"][0]
    assert _same_header(col.header, image.header) and (col.width, col.height) == (out_w, out_h)

    pc = probe.got["points"][0]
    assert _same_header(pc.header, image.header) and [f.name for f in pc.fields] == ["x", "y", "z"]
    xyz, rgb = _cloud(pc)
    vv, uu = np.mgrid[0:out_h:3, 0:out_w:3]
    z = metres[vv, uu].ravel()
    assert rgb is None and xyz.shape == (uu.size, 3)
    np.testing.assert_allclose(xyz[:, 2], z, rtol=1e-6)
    np.testing.assert_allclose(xyz[:, 0], (uu.ravel() - k_out[0, 2]) / k_out[0, 0] * z, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(xyz[:, 1], (vv.ravel() - k_out[1, 2]) / k_out[1, 1] * z, rtol=1e-4, atol=1e-6)
    _stop(graph, "depth_onnx")


def _stop(graph, name):
    lc = LifecycleClient(graph, graph.node(f"{name}_stop"))
    assert lc.change(f"/{name}", "deactivate") and lc.change(f"/{name}", "cleanup")


# ------------------------------------------------------------------------------------------------- geometry
PLANE_K = np.array([[70.0, 0.0, 41.3], [0.0, 65.0, 28.7], [0.0, 0.0, 1.0]])  # pinhole of the 80x60 image


@pytest.mark.parametrize("case", ["metric_constant", "scale_shift_tilted"])
def test_plane_comes_out_through_the_known_pinhole(graph, tmp_path, case):
    """80x60 image, depth published at 40x30: points re-projected through the *original* K must land on the
    half-pixel grid of the output, and lie on the known plane."""
    h, w, out_w, out_h = 60, 80, 40, 30
    if case == "metric_constant":
        model = build_axera_probe(tmp_path / "flat.onnx", h, w, weights=(0.0, 0.0, 0.0), bias=2.5)
        params = dict(output_mode="metric")
    else:  # inverse depth = R = 20 + 2u (exact, no input resize) -> 1/Z = s * (20 + 2u) + t: a tilted plane
        model = build_axera_probe(tmp_path / "tilt.onnx", h, w, weights=(1.0, 0.0, 0.0))
        params = dict(output_mode="scale_shift", scale=0.01, shift=0.1)
    name = f"depth_{case}"
    node = _make(graph, name, model, image_topic=f"/{case}/image_raw", output_width=out_w, output_height=out_h,
                 point_stride=1, **params)
    probe = _Probe(graph, f"{name}_test", f"/{case}", "depth")
    probe.listen("points", PointCloud2, f"/{case}/points")
    _start(graph, node, name)
    probe.wait_matched(node, ["points"])
    probe.send_info(node, _info_msg(PLANE_K, w, h))
    probe.image.publish(_image_msg(_ramps(h, w), 5))
    graph.wait_for(lambda: probe.got["points"], 20, "point cloud")
    xyz, _ = _cloud(probe.got["points"][0])
    assert xyz.shape == (out_w * out_h, 3)
    x, y, z = xyz.T
    u = PLANE_K[0, 0] * x / z + PLANE_K[0, 2]  # projection through the original 80x60 camera
    v = PLANE_K[1, 1] * y / z + PLANE_K[1, 2]
    vv, uu = np.mgrid[0:out_h, 0:out_w]
    np.testing.assert_allclose(u, (uu.ravel() + 0.5) * (w / out_w) - 0.5, atol=1e-3)
    np.testing.assert_allclose(v, (vv.ravel() + 0.5) * (h / out_h) - 0.5, atol=1e-3)
    if case == "metric_constant":
        np.testing.assert_allclose(z, 2.5, rtol=1e-6)  # fronto-parallel plane Z = 2.5 m
    else:
        s, t = 0.01, 0.1
        # 1/Z = s (20 + 2 (fx X/Z + cx)) + t  <=>  (s (20 + 2 cx) + t) Z + 2 s fx X = 1
        plane = (s * (20 + 2 * PLANE_K[0, 2]) + t) * z + 2 * s * PLANE_K[0, 0] * x
        np.testing.assert_allclose(plane, 1.0, atol=1e-4)
        assert np.ptp(z) > 1.0  # really tilted
    _stop(graph, name)


# ------------------------------------------------------------------------------------------------ lazy outputs
def test_lazy_outputs_are_not_built_without_subscribers(graph, tmp_path, monkeypatch):
    calls = {"colorize": 0, "points": 0}
    real_colorize, real_points = depth_module.colorize, depth_module.depth_to_points

    def spy_colorize(*a, **k):
        calls["colorize"] += 1
        return real_colorize(*a, **k)

    def spy_points(*a, **k):
        calls["points"] += 1
        return real_points(*a, **k)

    monkeypatch.setattr(depth_module, "colorize", spy_colorize)
    monkeypatch.setattr(depth_module, "depth_to_points", spy_points)
    model = build_axera_probe(tmp_path / "lazy.onnx", 28, 28, weights=(0.0, 0.0, 0.0), bias=1.5)
    node = _make(graph, "depth_lazy", model, image_topic="/cam_lz/image_raw", output_mode="metric")
    probe = _Probe(graph, "depth_lazy_test", "/cam_lz", "depth")
    probe.listen("depth", Image, "/cam_lz/depth")
    _start(graph, node, "depth_lazy")
    probe.wait_matched(node, ["depth"])
    probe.send_info(node, _info_msg())
    probe.image.publish(_image_msg(_ramps(), 1))
    graph.wait_for(lambda: probe.got["depth"], 20, "depth")
    assert calls == {"colorize": 0, "points": 0} and node.counters["points_published"] == 0

    probe.listen("colored", Image, "/cam_lz/depth/colored")
    probe.listen("points", PointCloud2, "/cam_lz/points")
    probe.wait_matched(node, ["colored", "points"])
    probe.image.publish(_image_msg(_ramps(), 2))
    graph.wait_for(lambda: probe.got["colored"] and probe.got["points"], 20, "lazy outputs once subscribed")
    assert calls == {"colorize": 1, "points": 1}
    _stop(graph, "depth_lazy")


# ------------------------------------------------------------------------------------------------- lifecycle
def test_lifecycle_through_standard_services(graph, tmp_path):
    model = build_axera_probe(tmp_path / "lc.onnx", 28, 28)
    node = _make(graph, "depth_lc", tmp_path / "missing.onnx", image_topic="/cam_lc/image_raw")
    test = graph.node("depth_lc_test")
    lc = LifecycleClient(graph, test)
    assert not lc.change("/depth_lc", "configure") and lc.state("/depth_lc") == "unconfigured"
    assert "model_path" in node.last_error and "missing.onnx" in node.last_error
    assert "does not exist" in node.last_error

    node.set_parameters([Parameter("model_path", value=str(model)), Parameter("output_mode", value="scale_shift")])
    assert not lc.change("/depth_lc", "configure")
    assert "scale" in node.last_error and "calibration" in node.last_error and node.model is None
    node.set_parameters([Parameter("output_mode", value="inverse_relative")])
    assert not node.set_parameters([Parameter("input_size", value=100)])[0].successful  # not a multiple of 14

    assert lc.change("/depth_lc", "configure") and lc.state("/depth_lc") == "inactive"
    # relative mode without the opt-in: no point cloud topic at all
    assert test.count_publishers("/cam_lc/points") == 0 and test.count_publishers("/cam_lc/points_relative") == 0
    assert test.count_publishers("/cam_lc/inverse_depth_relative") == 1
    got = []
    test.create_subscription(Image, "/cam_lc/inverse_depth_relative", got.append, QOS)
    pub = test.create_publisher(Image, "/cam_lc/image_raw", QOS)
    pub.publish(_image_msg(_ramps(), 1))  # inactive: nothing subscribes, nothing comes out
    time.sleep(0.3)
    assert got == []

    assert lc.change("/depth_lc", "activate") and lc.state("/depth_lc") == "active"
    graph.wait_for(lambda: pub.get_subscription_count() > 0, 10, "image subscription")
    pub.publish(_image_msg(_ramps(), 2))
    graph.wait_for(lambda: got, 20, "depth while active")
    assert got[0].header.stamp.sec == 2
    assert node.counters["missing_camera_info"] == 1  # no camera_info yet: its output is skipped and counted
    values = node.diagnostic_values()
    assert values["output_topic"] == "/cam_lc/inverse_depth_relative" and values["camera_info"] == "none yet"

    assert lc.change("/depth_lc", "deactivate") and lc.state("/depth_lc") == "inactive"
    got.clear()
    pub.publish(_image_msg(_ramps(), 3))
    time.sleep(0.3)
    assert got == [] and pub.get_subscription_count() == 0

    executor, name = node.model.executor, node.model.handle.name
    assert name in executor.stats()["models"]
    assert lc.change("/depth_lc", "cleanup") and lc.state("/depth_lc") == "unconfigured"
    assert node.model is None and node.adapter is None and name not in executor.stats()["models"]
    assert lc.change("/depth_lc", "shutdown") and lc.state("/depth_lc") == "finalized"


# ------------------------------------------------------------------------------------------- malformed inputs
BAD_IMAGES = [
    ("unknown encoding", dict(encoding="weird9")),
    ("zero width", dict(width=0)),
    ("data truncated", dict(data=array.array("B", bytes(100)))),
    ("step too small", dict(step=10)),
]


def _bad_infos():
    zeros = _info_msg(np.zeros((3, 3)))
    nan = _info_msg(np.array([[np.nan, 0, 31.0], [0, 61.0, 24.0], [0, 0, 1.0]]))
    no_size = _info_msg()
    no_size.width = 0
    roi = _info_msg()
    roi.roi.x_offset, roi.roi.width, roi.roi.height = 40, 40, 20  # 40 + 40 > 64
    short_k = _info_msg()
    short_k.k = [58.0, 0.0, 31.2, 0.0, 61.0, 24.6, 0.0, 0.0]  # 8 numbers: padded with 0 on the wire, last row bad
    return [("K all zeros", zeros), ("K with NaN", nan), ("width 0", no_size), ("roi outside", roi),
            ("K with 8 numbers", short_k)]


def test_malformed_raw_inputs_rejected_and_node_keeps_serving(graph, tmp_path):
    model = build_axera_probe(tmp_path / "bad.onnx", 28, 28, weights=(0.0, 0.0, 0.0), bias=3.0)
    node = _make(graph, "depth_bad", model, image_topic="/cam_bad/image_raw", output_mode="metric")
    probe = _Probe(graph, "depth_bad_test", "/cam_bad", "depth")
    probe.listen("depth", Image, "/cam_bad/depth")
    probe.listen("info", CameraInfo, "/cam_bad/depth/camera_info")
    _start(graph, node, "depth_bad")
    probe.wait_matched(node, ["depth", "info"])
    probe.send_info(node, _info_msg())  # a valid one first: rejected ones must not replace it
    rejected = 0
    for case, changes in BAD_IMAGES:
        msg = _image_msg(_ramps(), 100)
        for k, v in changes.items():
            setattr(msg, k, v)
        probe.image.publish(msg)  # keep-last-1 input: wait for each to be handled
        rejected += 1
        graph.wait_for(lambda r=rejected: node.bad_inputs.total == r, 10, f"rejection of {case}")
    for case, msg in _bad_infos():
        probe.send_info(node, msg)
        rejected += 1
        assert node.bad_inputs.total == rejected, case
    assert probe.got["depth"] == [] and node.counters["camera_info_received"] == 1 + len(_bad_infos())

    probe.image.publish(_image_msg(_ramps(), 7))  # served, with the last *valid* camera_info
    graph.wait_for(lambda: probe.got["depth"] and probe.got["info"], 20, "outputs after the bad inputs")
    assert probe.got["depth"][-1].header.stamp.sec == 7
    np.testing.assert_allclose(np.reshape(probe.got["info"][-1].k, (3, 3)), K_IN)
    np.testing.assert_allclose(_depth_array(probe.got["depth"][-1]), 3.0)

    # a valid camera_info for another size: depth still served, camera_info skipped and counted
    probe.clear()
    probe.send_info(node, _info_msg(K_IN * [[2], [2], [1]], 2 * W, 2 * H))
    probe.image.publish(_image_msg(_ramps(), 8))
    graph.wait_for(lambda: probe.got["depth"], 20, "depth with mismatching camera_info")
    assert node.bad_inputs.total == rejected + 1 and probe.got["info"] == []
    assert "camera_info on /cam_bad/camera_info" in node.bad_inputs.counts
    stream = node.cameras.streams[0]
    assert stream.errors == len(BAD_IMAGES) and stream.published == 2
    _stop(graph, "depth_bad")


def test_malformed_compressed_inputs_rejected_and_node_keeps_serving(graph, tmp_path):
    model = build_axera_probe(tmp_path / "badc.onnx", 28, 28, weights=(1.0, 0.0, 0.0))
    node = _make(graph, "depth_badc", model, image_topic="/cam_c/image_raw", input_transport="compressed")
    probe = _Probe(graph, "depth_badc_test", "/cam_c", "inverse_depth_relative", transport="compressed")
    probe.listen("depth", Image, "/cam_c/inverse_depth_relative")
    _start(graph, node, "depth_badc")
    probe.wait_matched(node, ["depth"])
    good = array_to_compressed(_ramps(), "jpeg", 95)
    cases = [("corrupt JPEG", dict(format="jpeg", data=b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)),
             ("empty data", dict(format="jpeg", data=b"")),
             ("unsupported format", dict(format="webp", data=good["data"]))]
    for i, (case, fields) in enumerate(cases):
        msg = CompressedImage(**fields)
        msg.header.stamp.sec = 200 + i
        probe.image.publish(msg)
        graph.wait_for(lambda i=i: node.bad_inputs.total == i + 1, 10, f"rejection of {case}")
    msg = CompressedImage(**good)
    msg.header.stamp.sec, msg.header.frame_id = 9, "jpeg_cam"
    probe.image.publish(msg)
    graph.wait_for(lambda: probe.got["depth"], 20, "a good JPEG after the bad ones")
    out = probe.got["depth"][-1]
    assert out.header.stamp.sec == 9 and out.header.frame_id == "jpeg_cam" and len(probe.got["depth"]) == 1
    decoded = cv2.imdecode(np.frombuffer(good["data"], np.uint8), cv2.IMREAD_COLOR)  # JPEG is lossy
    np.testing.assert_allclose(_depth_array(out), _expected_axera(decoded, (28, 28)), atol=1e-3)
    _stop(graph, "depth_badc")
