"""``detector``: YOLO11 / YOLOv8 detections from one or more camera topics (lifecycle node).

Subscribes (per camera topic ``T`` in ``image_topics``): ``T`` (sensor_msgs/Image) or ``T/compressed``
(sensor_msgs/CompressedImage) with ``input_transport: compressed``.
Publishes, in each camera's namespace (``/cam0/image_raw`` → ``/cam0/...``), every message with the input header:
``detections`` (axcl_msgs/DetectionArray with timing), ``detections_image`` (bgr8 annotated image, only built while
someone subscribes), and, when vision_msgs is installed, ``detections_vision`` (vision_msgs/Detection2DArray) plus
``label_info`` (vision_msgs/LabelInfo, transient local).
Services: ``~/detect`` (axcl_msgs/srv/Detect, one image in, detections out).
All cameras share one model instance on the process-wide executor; each camera keeps only its latest frame.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from axcl_msgs.msg import (
    Detection,
    DetectionArray,
    InferenceTiming,
    InstanceMasks,
    Keypoint,
    KeypointArray,
    KeypointSet,
)
from axcl_msgs.srv import Detect
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from ..io.annotate import draw_detections
from ..io.annotate_tasks import draw_masks, draw_skeletons
from ..io.detection_messages import fill_detection_array, to_label_info, to_vision_detections, vision_msgs_types
from ..io.image import ImageConversionError, array_to_image_fields
from ..io.image_transport import decode_bgr8
from ..io.stamps import stamp_to_seconds
from ..io.task_messages import fill_instance_masks, fill_keypoint_array
from ..models.detector_config import DetectorConfig
from ..models.labels import LabelsError
from ..models.tracking import load_solver
from ..models.yolo import probe_inputs
from ..models.yolo_tasks import TASKS, YoloTaskAdapter
from ..runtime.base import settle_dynamic_dims
from ..runtime.registry import BACKEND_CHOICES
from .camera_input import INPUT_QOS_PARAMS, CameraInputs, CameraStream
from .common import AxclLifecycleNode
from .frame_pipeline import FramePipeline, FrameTimes
from .node_model import NodeModel
from .parameters import ParamSpec
from .process import run_main
from .qos import LATCHED_QOS, OUTPUT_QOS
from .tracking_stage import NAMES as TRACKING_NAMES
from .tracking_stage import TRACKING_PARAMS, CameraTrackers, apply_track_ids, label_with_ids, tracker_config
from .tracking_stage import check_parameter as check_tracking_parameter


class DetectorNode(AxclLifecycleNode):
    """Lifecycle node wrapping :class:`~axcl_ros.models.yolo.YoloAdapter` on the shared executor."""

    TAKES_IMAGES = True  # declares max_image_pixels (nodes/common.py)
    PARAMS = (
        ParamSpec("task", "auto", "Model task; auto = read from the model's outputs (prototype tensor → segment, "
                                  "keypoint heads/rows → pose).", choices=TASKS),
        ParamSpec("model_path", "", "YOLO11/YOLOv8 model: AXERA .axmodel (card) or Ultralytics .onnx (CPU/CUDA)."),
        ParamSpec("backend", "auto", "Inference backend; auto = axcl for .axmodel files, else onnxruntime.",
                  choices=BACKEND_CHOICES),
        ParamSpec("device", "", "Backend device: '' or 'cpu', 'cuda:0' (onnxruntime), card index '0' (axcl)."),
        ParamSpec("labels", "", "Class names: a file (one per line, or YAML list/dict); '' = COCO-80 for 80-class "
                                "models, else class_<id>."),
        ParamSpec("confidence_threshold", 0.25, "Minimum class score.", min=0.0, max=1.0, dynamic=True),
        ParamSpec("iou_threshold", 0.45, "NMS IoU threshold.", min=0.0, max=1.0, dynamic=True),
        ParamSpec("agnostic_nms", False, "NMS across classes instead of per class.", dynamic=True),
        ParamSpec("max_detections", 100, "Maximum detections per image.", min=1, max=10000, dynamic=True),
        ParamSpec("class_filter", Parameter.Type.STRING_ARRAY, "Keep only these classes (ids or names); empty = all.",
                  dynamic=True),
        ParamSpec("input_size", 640, "Network input size for models with dynamic H/W (multiple of 32).",
                  min=32, max=4096),
        ParamSpec("rect_input", True, "Models with dynamic H/W: letterbox each frame into the smallest multiple-of-32 "
                                      "rectangle holding it at input_size (640x480 camera: 480x640 input, about a "
                                      "quarter less model time), as Ultralytics predicts; false = always square."),
        ParamSpec("image_topics", ["image"], "Camera image topics; outputs go to each topic's namespace."),
        ParamSpec("input_transport", "raw", "raw = sensor_msgs/Image on T; compressed = CompressedImage on "
                                            "T/compressed.", choices=("raw", "compressed")),
        *INPUT_QOS_PARAMS,
        ParamSpec("publish_annotated", True, "Publish detections_image while someone subscribes.", dynamic=True),
        ParamSpec("cpu_threads", 0, "onnxruntime intra-op threads; 0 = the measured default (2, or 1 on a "
                                    "1-core host; README 'Performance').", min=0, max=64),
        ParamSpec("cpu_spinning", False, "Let onnxruntime threads busy-wait between operators (faster only on an "
                                         "idle machine; measured slower with one core busy)."),
        ParamSpec("cpu_memory_pattern", True, "onnxruntime's memory pattern (enable_mem_pattern): one preplanned "
                                              "block per run; false keeps ~35 MiB less resident for YOLO11n at 640 "
                                              "(README 'Detector on the CPU')."),
    ) + TRACKING_PARAMS

    def __init__(self, node_name: str = "detector", **kwargs) -> None:
        self.model: Optional[NodeModel] = None
        self.adapter: Optional[YoloTaskAdapter] = None
        self.cameras: Optional[CameraInputs] = None
        self.pipeline: Optional[FramePipeline] = None
        self._vision = None
        self._detect_srv = None
        self.trackers: Optional[CameraTrackers] = None
        super().__init__(node_name, **kwargs)

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def configure(self) -> None:
        cpu = {"allow_spinning": bool(self.param("cpu_spinning")),
               "memory_pattern": bool(self.param("cpu_memory_pattern"))}
        if int(self.param("cpu_threads")) > 0:
            cpu["intra_op_num_threads"] = int(self.param("cpu_threads"))
        self.model = NodeModel.load(self, self.param("model_path"), self.param("backend"), self.param("device"),
                                   cpu_options=cpu)
        handle = self.model.handle
        size = self._input_size(handle)
        outputs = handle.outputs
        if size is not None and not all(o.is_static for o in outputs):  # fixed dims an export left symbolic
            outputs = settle_dynamic_dims(outputs, [{n: a.shape for n, a in self.model.run_now(f).outputs.items()}
                                                    for f in probe_inputs(handle.inputs[0], (size, size))])
        self.adapter = YoloTaskAdapter.from_specs(handle.inputs, outputs, labels=self.param("labels") or None,
                                                  input_size=size, task=self.param("task"),
                                                  rect=bool(self.param("rect_input")))
        self.adapter.config = self._config()
        self.trackers = CameraTrackers(tracker_config(self.param), float(self.param("tracking_max_gap")))
        if self.param("tracking"):
            load_solver()  # now, not on the first contested match mid-stream (a GIL-holding import)
        self.pipeline = FramePipeline(self, self.model, self.param("input_transport"), self._prepare, self._publish,
                                      input_errors=(ImageConversionError,))
        self.cameras = CameraInputs(self, list(self.param("image_topics")), self.param("input_transport"),
                                    self.param("input_qos"), self.pipeline.on_frame,
                                    depth=int(self.param("input_depth")))
        self._vision = vision_msgs_types()
        for cam in self.cameras.streams:
            pubs = cam.publishers
            pubs["detections"] = self.create_lifecycle_publisher(DetectionArray, cam.output("detections"), OUTPUT_QOS)
            pubs["image"] = self.create_lifecycle_publisher(Image, cam.output("detections_image"), OUTPUT_QOS)
            if self.adapter.task == "segment":
                pubs["masks"] = self.create_lifecycle_publisher(InstanceMasks, cam.output("masks"), OUTPUT_QOS)
            elif self.adapter.task == "pose":
                pubs["keypoints"] = self.create_lifecycle_publisher(KeypointArray, cam.output("keypoints"),
                                                                    OUTPUT_QOS)
            if self._vision is not None:
                pubs["vision"] = self.create_lifecycle_publisher(self._vision.Detection2DArray,
                                                                 cam.output("detections_vision"), OUTPUT_QOS)
                pubs["label_info"] = self.create_lifecycle_publisher(self._vision.LabelInfo,
                                                                     cam.output("label_info"), LATCHED_QOS)
        # its own callback group: a slow one-shot request never stalls the image callbacks or lifecycle services
        self._detect_srv = self.create_service(Detect, "~/detect", self._on_detect,
                                               callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(f"configured {self.model.describe()}; {self.adapter.layout} layout, "
                               f"{self.adapter.task} task, {self.adapter.num_classes} classes; "
                               f"cameras {[c.topic for c in self.cameras.streams]}")

    def activate(self) -> None:
        self.cameras.start()
        self._publish_label_info(float(self.param("confidence_threshold")))

    def _publish_label_info(self, threshold: float) -> None:
        """Latched vision_msgs/LabelInfo (id → name, threshold) per camera, when vision_msgs is installed."""
        if self._vision is None or self.cameras is None:
            return
        for cam in self.cameras.streams:
            info = to_label_info(self._vision, _now_header(self), self.adapter.labels, threshold)
            cam.publishers["label_info"].publish(info)

    def deactivate(self) -> None:
        if self.cameras is not None:
            self.cameras.stop()

    def cleanup(self) -> None:
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None
        if self.cameras is not None:
            self.cameras.stop()
            for cam in self.cameras.streams:
                for pub in cam.publishers.values():
                    self.destroy_lifecycle_publisher(pub)
                cam.publishers.clear()
            self.cameras = None
        if self._detect_srv is not None:
            self.destroy_service(self._detect_srv)
            self._detect_srv = None
        if self.model is not None:
            self.model.release()
            self.model = None
        self.adapter = None
        self.trackers = None

    # -- parameters --------------------------------------------------------------------------------------------------
    def _config(self) -> DetectorConfig:
        return DetectorConfig(conf_threshold=float(self.param("confidence_threshold")),
                              iou_threshold=float(self.param("iou_threshold")),
                              agnostic_nms=bool(self.param("agnostic_nms")),
                              max_detections=int(self.param("max_detections")),
                              classes=self._class_ids(self.param("class_filter")))

    def _input_size(self, handle) -> Optional[int]:
        """The configured size only matters for models with a dynamic input."""
        return None if handle.inputs[0].is_static else int(self.param("input_size"))

    def _class_ids(self, values) -> Optional[frozenset]:
        """Class filter entries (ids or names) → ids; None = all classes."""
        values = [str(v).strip() for v in (values or []) if str(v).strip()]
        if not values:
            return None
        ids = {int(v) for v in values if v.isdigit()}
        names = [v for v in values if not v.isdigit()]
        if names:
            ids |= self.adapter.class_ids(names)
        return frozenset(ids)

    def validate_parameter(self, name: str, value: Any) -> Optional[str]:
        if name == "class_filter" and self.adapter is not None:
            try:
                self.adapter.config.replace(classes=self._class_ids(value))
                ids = self._class_ids(value) or ()
            except (LabelsError, ValueError) as exc:
                return f"class_filter: {exc}"
            bad = sorted(i for i in ids if i >= self.adapter.num_classes)
            if bad:
                return f"class_filter: ids {bad} out of range (the model has {self.adapter.num_classes} classes)"
        if name == "input_size" and int(value) % 32:
            return f"input_size={value} must be a multiple of 32"
        return check_tracking_parameter(self.param, name, value)

    def apply_dynamic_parameter(self, name: str, value: Any) -> None:
        if self.adapter is None:
            return
        if name in TRACKING_NAMES and self.trackers is not None:
            if name == "tracking_max_gap":
                self.trackers.max_gap_s = float(value)
            elif name == "tracking":
                self.trackers.reset()
                if value:
                    load_solver()
            else:
                self.trackers.config = tracker_config(self.param, **{name: value})
        if name == "class_filter":
            self.adapter.update_config(classes=self._class_ids(value))
        elif name == "confidence_threshold":
            self.adapter.update_config(conf_threshold=float(value))
            self._publish_label_info(float(value))
        elif name == "iou_threshold":
            self.adapter.update_config(iou_threshold=float(value))
        elif name == "agnostic_nms":
            self.adapter.update_config(agnostic_nms=bool(value))
        elif name == "max_detections":
            self.adapter.update_config(max_detections=int(value))
        self.get_logger().info(f"{name} set to {value!r}")

    # -- data path ---------------------------------------------------------------------------------------------------
    def _prepare(self, cam: CameraStream, bgr):
        adapter = self.adapter
        feeds, meta = adapter.preprocess(bgr)
        annotate = bool(self.param("publish_annotated")) and cam.publishers["image"].get_subscription_count() > 0
        return feeds, (adapter, self.model, meta, bgr if annotate else None)

    def _publish(self, cam: CameraStream, header, context, result, times: FrameTimes) -> Optional[InferenceTiming]:
        adapter, model, meta, bgr = context
        masks_pub = cam.publishers.get("masks")  # masks only when someone takes them (or the annotated image)
        with_masks = bgr is not None or (masks_pub is not None and masks_pub.get_subscription_count() > 0)
        task = adapter.postprocess(result.outputs, meta, with_masks=with_masks)
        dets = task.detections
        trackers = self.trackers if self.param("tracking") else None
        ids = None if trackers is None else trackers.assign(cam.key, stamp_to_seconds(header.stamp), dets.boxes,
                                                            dets.scores)
        out = self._message(model, header, dets, meta, result, times)
        pubs = dict(cam.publishers)
        if not pubs or not pubs["detections"].is_activated:
            return None
        vision = None
        if "vision" in pubs:
            vision = to_vision_detections(self._vision, header, dets.boxes, dets.scores, dets.class_ids)
        if ids is not None:
            apply_track_ids(out.detections, None if vision is None else vision.detections, ids)
        pubs["detections"].publish(out)
        if vision is not None:
            pubs["vision"].publish(vision)
        if task.masks is not None and "masks" in pubs:
            pubs["masks"].publish(fill_instance_masks(InstanceMasks(), Image, header, *task.masks))
        if task.keypoints is not None and "keypoints" in pubs:
            pubs["keypoints"].publish(fill_keypoint_array(KeypointArray(), KeypointSet, Keypoint, header,
                                                          adapter.keypoint_names, adapter.skeleton,
                                                          task.keypoints, ids))
        if bgr is not None:
            if task.masks is not None:
                bgr = draw_masks(bgr, task.masks[0], task.masks[1], dets.class_ids)
            drawn = draw_detections(bgr, dets.boxes, dets.scores, dets.class_ids, label_with_ids(dets.names, ids))
            if task.keypoints is not None:
                drawn = draw_skeletons(drawn, task.keypoints, adapter.skeleton)
            img = Image(**array_to_image_fields(drawn, "bgr8", data_as="array"))
            img.header = header
            pubs["image"].publish(img)
        return out.timing

    @staticmethod
    def _message(model: NodeModel, header, dets, meta, result, times: FrameTimes) -> DetectionArray:
        out = DetectionArray()
        height, width = meta.image_size
        fill_detection_array(out, Detection, header, dets.boxes, dets.scores, dets.class_ids, dets.names,
                             width, height)
        out.timing = times.timing(model, result)
        return out

    def _on_detect(self, request, response):
        times = FrameTimes(time.perf_counter())
        adapter, model = self.adapter, self.model
        if adapter is None or model is None:
            response.success, response.message = False, "the detector is not configured"
            return response
        try:
            bgr = decode_bgr8(request.image, "raw", self.max_image_pixels)
            feeds, meta = adapter.preprocess(bgr)
            times.preprocessed = time.perf_counter()
            result = model.submit(feeds).result(timeout=30.0)
            times.postprocess_started = time.perf_counter()
            dets = adapter.postprocess(result.outputs, meta, with_masks=False).detections
        except ImageConversionError as exc:
            self.bad_inputs.report("image on ~/detect", exc)
            response.success, response.message = False, f"bad image: {exc}"
            return response
        except Exception as exc:  # noqa: BLE001 - the service answers, it never raises
            response.success, response.message = False, f"detection failed: {exc}"
            return response
        response.detections = self._message(model, request.image.header, dets, meta, result, times)
        response.success, response.message = True, f"{len(dets.scores)} detections"
        return response

    def diagnostic_values(self) -> dict:
        values = {}
        if self.model is not None:
            values.update(self.model.stats())
        if self.cameras is not None:
            values.update(self.cameras.stats())
        if self.trackers is not None:
            values.update(self.trackers.stats())
        return values


def _now_header(node):
    from std_msgs.msg import Header

    h = Header()
    h.stamp = node.get_clock().now().to_msg()
    return h


def main(args=None) -> int:
    """Run the detector node alone (``ros2 run axcl_ros detector``)."""
    return run_main(DetectorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
