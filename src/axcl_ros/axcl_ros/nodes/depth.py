"""``depth``: Depth Anything V2 monocular depth from one camera topic (lifecycle node).

Subscribes: ``image_topic`` ``T`` (sensor_msgs/Image), or ``T/compressed`` (sensor_msgs/CompressedImage) with
``input_transport: compressed``; ``camera_info_topic`` (sensor_msgs/CameraInfo, default the sibling
``camera_info`` of ``T``; only the latest valid message is kept, no time synchronisation).

What the output values mean is declared by ``output_mode`` (the model file cannot say) and shows in the topic name:

* ``inverse_relative`` (DA-V2 relative checkpoints, AXERA's axmodel): relative, affine-invariant **inverse** depth,
  larger = nearer, no unit. Published on ``<ns>/inverse_depth_relative`` - never on a topic called ``depth``,
  because it is not metres.
* ``metric`` (DA-V2 metric indoor/outdoor checkpoints): metres along the optical axis (REP 118), optional
  ``max_depth`` clip. Published on ``<ns>/depth``.
* ``scale_shift``: metres from a calibration of relative inverse depth, ``depth = 1 / (scale * inv + shift)``
  (NaN where undefined or beyond ``max_depth``; ``fit_scale_shift`` in ``models/depth_anything.py`` computes
  ``scale``/``shift`` from a few known depths). Published on ``<ns>/depth``.

Publishes, in the image topic's namespace (``/cam0/image_raw`` -> ``/cam0/...``), every message with the input header
copied exactly; ``<suffix>`` is ``depth`` or ``inverse_depth_relative`` as above:

* ``<suffix>`` (32FC1) at the input resolution, or ``output_width`` x ``output_height``;
* ``<suffix>/camera_info``: the latest CameraInfo with the image header, scaled to the output size (ROI/binning
  applied and zeroed), so ``depth_image_proc`` and RViz DepthCloud can use ``<suffix>`` directly. Skipped (counter
  ``missing_camera_info``) until a valid CameraInfo has arrived;
* ``<suffix>/colored`` (bgr8 OpenCV ``colormap``, 2-98 percentile range, near = hot), only built while subscribed;
* ``points`` (sensor_msgs/PointCloud2, x y z [+ rgb with ``publish_rgb_points``], camera optical frame, every
  ``point_stride``-th pixel) in the metric modes, only built while subscribed and a CameraInfo is known. Relative
  inverse depth is not a metric cloud, so in ``inverse_relative`` mode there is no point cloud unless
  ``relative_points: true``; then it goes to ``points_relative`` with ``z = 1 / inverse_depth`` (unitless, the shape
  only up to an unknown scale and shift - for visualisation, never for measuring);
* ``<suffix>/timing`` (axcl_msgs/InferenceTiming), only while subscribed; timing and counters also on /diagnostics.

The model runs on the process-wide executor with a keep-latest slot: a frame arriving while the previous one still
waits replaces it (counted as ``dropped``). A malformed image or CameraInfo is rejected with a throttled error and a
counter; the next frame is served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import cv2
import numpy as np
from axcl_msgs.msg import InferenceTiming
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from ..io.camera_info import CameraInfoError, CameraModel, camera_model, scaled_camera_info
from ..io.image import ImageConversionError, array_to_image_fields
from ..io.pointcloud import pointcloud_msg
from ..models.depth_anything import (
    MODE_INVERSE_RELATIVE,
    MODE_METRIC,
    MODE_SCALE_SHIFT,
    MODES,
    PATCH,
    DepthAnythingAdapter,
    DepthConfigError,
    DepthInputError,
)
from ..models.depth_geometry import colorize, depth_to_points, scale_camera_info
from ..runtime.registry import BACKEND_CHOICES
from .camera_input import INPUT_QOS_PARAMS, CameraInputs, CameraStream
from .common import AxclLifecycleNode, sibling_topic
from .frame_pipeline import FramePipeline, FrameTimes
from .node_model import NodeModel
from .parameters import ParamSpec
from .process import run_main
from .qos import OUTPUT_QOS
from .transport_input import TransportInput

#: the depth image's topic (in the camera's namespace) per output_mode: "depth" only for metres (REP 118)
OUTPUT_TOPICS = {MODE_INVERSE_RELATIVE: "inverse_depth_relative", MODE_METRIC: "depth", MODE_SCALE_SHIFT: "depth"}
#: OpenCV colormaps by lower-case name (``turbo``, ``inferno``, ``viridis`` ...).
COLORMAPS = {n[len("COLORMAP_"):].lower(): int(getattr(cv2, n)) for n in dir(cv2) if n.startswith("COLORMAP_")}


@dataclass
class _Outputs:
    """Publishers of one configuration (identity tells in-flight results whether they are stale)."""

    depth: Any
    camera_info: Any
    colored: Any
    timing: Any
    points: Any  # None when this mode publishes no cloud


class DepthNode(AxclLifecycleNode):
    """Lifecycle node wrapping :class:`~axcl_ros.models.depth_anything.DepthAnythingAdapter` (see module doc)."""

    TAKES_IMAGES = True  # declares max_image_pixels (nodes/common.py)
    PARAMS = (
        ParamSpec("model_path", "", "Depth Anything V2 model: AXERA .axmodel (card) or .onnx export (CPU/CUDA)."),
        ParamSpec("backend", "auto", "Inference backend; auto = axcl for .axmodel files, else onnxruntime.",
                  choices=BACKEND_CHOICES),
        ParamSpec("device", "", "Backend device: '' or 'cpu', 'cuda:0' (onnxruntime), card index '0' (axcl)."),
        ParamSpec("image_topic", "image", "Camera image topic; outputs go to its namespace."),
        ParamSpec("camera_info_topic", "", "CameraInfo topic; '' = the sibling 'camera_info' of image_topic."),
        ParamSpec("input_transport", "raw", "raw = sensor_msgs/Image on T; compressed = CompressedImage on "
                                            "T/compressed.", choices=("raw", "compressed")),
        *INPUT_QOS_PARAMS,
        ParamSpec("output_mode", MODE_INVERSE_RELATIVE,
                  "Meaning of the model output: inverse_relative (unitless, topic inverse_depth_relative), metric "
                  "(metres, metric checkpoint, topic depth) or scale_shift (metres = 1/(scale*inv+shift), topic "
                  "depth).", choices=MODES),
        ParamSpec("scale", 0.0, "scale_shift mode: calibrated scale (non-zero)."),
        ParamSpec("shift", 0.0, "scale_shift mode: calibrated shift."),
        ParamSpec("max_depth", 0.0, "Metric modes: clip (metric) or NaN (scale_shift) beyond this many metres; "
                                    "0 = none.", min=0.0, max=1e6),
        ParamSpec("input_size", 518, "Network input size for models with dynamic H/W (multiple of 14).",
                  min=PATCH, max=4096),
        ParamSpec("output_width", 0, "Output width in pixels; 0 (with output_height 0) = input resolution.",
                  min=0, max=16384),
        ParamSpec("output_height", 0, "Output height in pixels; 0 (with output_width 0) = input resolution.",
                  min=0, max=16384),
        ParamSpec("colormap", "turbo", "OpenCV colormap of <suffix>/colored.", choices=tuple(sorted(COLORMAPS)),
                  dynamic=True),
        ParamSpec("point_stride", 2, "Use every n-th row and column for the point cloud.", min=1, max=64,
                  dynamic=True),
        ParamSpec("publish_rgb_points", False, "Add the image colour (rgb field) to the point cloud.", dynamic=True),
        ParamSpec("relative_points", False, "inverse_relative mode only: publish points_relative with z = 1/inv "
                                            "(unitless shape, not metres)."),
    )

    def __init__(self, node_name: str = "depth", **kwargs) -> None:
        self.model: Optional[NodeModel] = None
        self.adapter: Optional[DepthAnythingAdapter] = None
        self.cameras: Optional[CameraInputs] = None
        self.pipeline: Optional[FramePipeline] = None
        self.outputs: Optional[_Outputs] = None
        self.camera: Optional[CameraModel] = None
        self.camera_info_topic = ""
        self.output_topic = ""
        self.points_topic = ""
        self._info_sub = None
        self._output_hw: Optional[Tuple[int, int]] = None
        self._last_timing: dict = {}
        super().__init__(node_name, **kwargs)

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def configure(self) -> None:
        mode = self.param("output_mode")
        ow, oh = int(self.param("output_width")), int(self.param("output_height"))
        if (ow == 0) != (oh == 0):
            raise DepthConfigError(f"set both output_width and output_height (or both 0 for the input size), got "
                                   f"{ow}x{oh}")
        self._output_hw = (oh, ow) if ow else None
        if mode != MODE_INVERSE_RELATIVE and self.param("relative_points"):
            self.get_logger().warning("relative_points only applies to output_mode inverse_relative; ignored")
        self.model = NodeModel.load(self, self.param("model_path"), self.param("backend"), self.param("device"))
        handle = self.model.handle
        scale = shift = None
        if mode == MODE_SCALE_SHIFT:
            scale, shift = float(self.param("scale")), float(self.param("shift"))
        max_depth = float(self.param("max_depth")) or None
        try:
            self.adapter = DepthAnythingAdapter.from_specs(
                handle.inputs, handle.outputs, input_size=None if handle.inputs[0].is_static
                else int(self.param("input_size")), mode=mode, max_depth=max_depth, scale=scale, shift=shift)
        except DepthConfigError as exc:
            hint = (" (output_mode scale_shift needs parameters scale and shift from a calibration)"
                    if mode == MODE_SCALE_SHIFT else "")
            raise DepthConfigError(f"{exc}{hint}") from exc
        image_topic = str(self.param("image_topic"))
        self.pipeline = FramePipeline(self, self.model, self.param("input_transport"), self._prepare,
                                      self._publish_frame, input_errors=(ImageConversionError, DepthInputError))
        self.cameras = CameraInputs(self, [image_topic], self.param("input_transport"), self.param("input_qos"),
                                    self.pipeline.on_frame, depth=int(self.param("input_depth")))
        info = self.adapter.info
        suffix = OUTPUT_TOPICS[mode]
        self.output_topic = sibling_topic(image_topic, suffix)
        self.camera_info_topic = str(self.param("camera_info_topic")) or sibling_topic(image_topic, "camera_info")
        points = None
        self.points_topic = ""
        if info.is_metric:
            self.points_topic = sibling_topic(image_topic, "points")
        elif self.param("relative_points"):
            self.points_topic = sibling_topic(image_topic, "points_relative")
        if self.points_topic:
            points = self.create_lifecycle_publisher(PointCloud2, self.points_topic, OUTPUT_QOS)
        self.outputs = _Outputs(
            depth=self.create_lifecycle_publisher(Image, self.output_topic, OUTPUT_QOS),
            camera_info=self.create_lifecycle_publisher(CameraInfo, f"{self.output_topic}/camera_info", OUTPUT_QOS),
            colored=self.create_lifecycle_publisher(Image, f"{self.output_topic}/colored", OUTPUT_QOS),
            timing=self.create_lifecycle_publisher(InferenceTiming, f"{self.output_topic}/timing", OUTPUT_QOS),
            points=points)
        self.get_logger().info(
            f"configured {self.model.describe()}; {self.adapter.layout} layout, input {self.adapter.input_hw}; "
            f"{self.output_topic}: {info.description}; points: {self.points_topic or 'off'}")

    def activate(self) -> None:
        self.cameras.start()
        self._info_sub = TransportInput(self, CameraInfo, self.camera_info_topic, self._on_camera_info,
                                        self.param("input_qos"), 1)
        self._info_sub.start()

    def deactivate(self) -> None:
        if self.cameras is not None:
            self.cameras.stop()
        if self._info_sub is not None:
            self._info_sub.stop()
            self._info_sub = None

    def cleanup(self) -> None:
        self.deactivate()
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None
        self.cameras = None
        outputs, self.outputs = self.outputs, None
        if outputs is not None:
            for pub in (outputs.depth, outputs.camera_info, outputs.colored, outputs.timing, outputs.points):
                if pub is not None:
                    self.destroy_lifecycle_publisher(pub)
        if self.model is not None:
            self.model.release()
            self.model = None
        self.adapter = None
        self.camera = None

    # -- parameters --------------------------------------------------------------------------------------------------
    def validate_parameter(self, name: str, value: Any) -> Optional[str]:
        if name == "input_size" and int(value) % PATCH:
            return f"input_size={value} must be a multiple of {PATCH}"
        return None

    def apply_dynamic_parameter(self, name: str, value: Any) -> None:
        self.get_logger().info(f"{name} set to {value!r}")

    # -- data path ---------------------------------------------------------------------------------------------------
    def _on_camera_info(self, msg) -> None:
        self.counters["camera_info_received"] += 1
        try:
            self.camera = camera_model(msg)
        except CameraInfoError as exc:
            self.bad_inputs.report(f"camera_info on {self.camera_info_topic}", exc)

    def _prepare(self, cam: CameraStream, bgr):
        outputs = self.outputs
        feeds = self.adapter.preprocess(bgr)
        want_rgb = (bool(self.param("publish_rgb_points")) and outputs.points is not None
                    and outputs.points.get_subscription_count() > 0)
        return feeds, (outputs, self.adapter, self.model, bgr.shape[:2], bgr if want_rgb else None)

    def _publish_frame(self, cam: CameraStream, header, context, result, times: FrameTimes) -> InferenceTiming:
        outputs, adapter, model, image_hw, bgr = context
        self._publish(outputs, adapter, header, image_hw, bgr, result)
        timing = times.timing(model, result)
        self._last_timing = {k: round(float(getattr(timing, k)), 2) for k in
                             ("preprocess_ms", "queue_ms", "inference_ms", "postprocess_ms", "total_ms")}
        if outputs.timing.get_subscription_count() > 0:  # InvalidHandle once cleanup destroyed it
            outputs.timing.publish(timing)
        return timing

    def _publish(self, outputs: _Outputs, adapter: DepthAnythingAdapter, header, image_hw, bgr, result) -> None:
        """Build and publish every output of one frame (lazy ones only while subscribed)."""
        out_hw = self._output_hw or tuple(image_hw)
        depth = adapter.postprocess(result.outputs, out_size=out_hw)
        img = Image(**array_to_image_fields(depth, "32FC1", data_as="array"))
        img.header = header
        outputs.depth.publish(img)

        camera = self._camera_for(image_hw)
        if camera is not None:
            outputs.camera_info.publish(scaled_camera_info(camera, header, out_hw[1], out_hw[0]))

        if outputs.colored.get_subscription_count() > 0:
            info = adapter.info
            bgr8 = colorize(depth, COLORMAPS[self.param("colormap")], invert=not info.near_is_large)
            col = Image(**array_to_image_fields(bgr8, "bgr8", data_as="array"))
            col.header = header
            outputs.colored.publish(col)

        if outputs.points is not None and camera is not None and outputs.points.get_subscription_count() > 0:
            k = scale_camera_info(camera.K, camera.P, camera.width, camera.height, out_hw[1], out_hw[0]).K
            z = depth
            if not adapter.info.is_metric:
                with np.errstate(divide="ignore", invalid="ignore"):
                    z = np.reciprocal(depth)  # unitless pseudo-depth of relative inverse depth (points_relative)
            rgb = None
            if bgr is not None:
                if bgr.shape[:2] != out_hw:
                    bgr = cv2.resize(bgr, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_AREA)
                rgb = bgr[..., ::-1]
            xyz, colours = depth_to_points(z, k, int(self.param("point_stride")), rgb)
            outputs.points.publish(pointcloud_msg(header, xyz, colours))
            self.counters["points_published"] += 1

    def _camera_for(self, image_hw) -> Optional[CameraModel]:
        """The latest valid CameraInfo if it describes an image of ``image_hw``; counts why not otherwise."""
        camera = self.camera
        if camera is None:
            self.counters["missing_camera_info"] += 1
            return None
        if (camera.height, camera.width) != tuple(image_hw):
            self.bad_inputs.report(
                f"camera_info on {self.camera_info_topic}",
                CameraInfoError(f"camera_info describes {camera.width}x{camera.height} (after ROI/binning) but the "
                                f"image is {image_hw[1]}x{image_hw[0]}; camera_info and points skipped"))
            return None
        return camera

    def diagnostic_values(self) -> dict:
        values: dict = {}
        if self.model is not None:
            values.update(self.model.stats())
        if self.cameras is not None:
            values.update(self.cameras.stats())
        if self.adapter is not None:
            values.update({"output_mode": self.adapter.mode, "output_topic": self.output_topic,
                           "unit": self.adapter.info.unit, "points_topic": self.points_topic or "off",
                           "camera_info": "ok" if self.camera is not None else "none yet"})
        values.update({f"timing.{k}": v for k, v in self._last_timing.items()})
        return values


def main(args=None) -> int:
    """Run the depth node alone (``ros2 run axcl_ros depth``)."""
    return run_main(DepthNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
