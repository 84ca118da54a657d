"""Host time per frame for everything except model execution, against the floor measured in the same run.

Our path is what the detector node does per frame around ``session.run``: ``sensor_msgs/Image`` → BGR view
(conversion), letterbox + tensor (pre-processing), the executor's copy of the outputs, decode + NMS + box mapping
(post-processing) and the ``axcl_msgs/DetectionArray`` (+ ``vision_msgs`` when installed) build. The model outputs
are real: NudeNet's YOLOv8n (``320n.onnx``, run once per frame size at 640×640, both the Ultralytics layout and the
AXERA layout made from it) on scikit-image's astronaut scaled to 640×480 and 1920×1080.

Against the plain node of ``bench_ros_node.py`` (``plain_detect``: straightforward numpy pre/post, the baseline of
the ROS detector bench) at 0 boxes (grey frame) and 300 boxes (photo, confidence 1e-4); our pre+post alone (letterbox
to the float tensor + decode + NMS + box mapping: the stages Ultralytics' own speed figures count; the message
build is reported beside it) against twice the floor plus one pass over the model output; and our NMS
(onnxruntime's NonMaxSuppression operator) against ``cv2.dnn.NMSBoxesBatched`` on the same candidates.

The floor is the least any implementation must do: one copy of the frame (what receiving it costs) plus one
``cv2.resize`` to the letterboxed size. The depth node's host path (AXERA layout, 518×518 output resized back to the
frame and packed as 32FC1) is measured against the same floor.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import List

import cv2
import numpy as np
from bench_common import Row, ratio, ros_available, time_interleaved

TOPIC = "host path"
SIZES = {"640x480": (480, 640), "1920x1080": (1080, 1920)}


def _frames():
    from axcl_ros_testing.sample_inputs import skimage_image

    rgb = skimage_image("astronaut")
    square = np.ascontiguousarray(rgb[:, :, ::-1])
    out = {}
    for name, (h, w) in SIZES.items():
        # the 512x512 picture centred on a grey canvas of the target size, scaled to the canvas height
        canvas = np.full((h, w, 3), 96, np.uint8)
        side = h
        img = cv2.resize(square, (side, side), interpolation=cv2.INTER_LINEAR)
        x0 = (w - side) // 2
        canvas[:, x0:x0 + side] = img
        out[name] = canvas
    return out


def _detector_pipeline(adapter, outputs_for, msg_for, with_vision):
    """The per-frame host work of the detector's FramePipeline (prepare + publish; model run replaced by stored
    outputs)."""
    from axcl_msgs.msg import Detection, DetectionArray, InferenceTiming

    from axcl_ros.io.detection_messages import fill_detection_array, to_vision_detections
    from axcl_ros.io.image_transport import decode_bgr8

    def run(name):
        msg = msg_for[name]
        t0 = time.perf_counter()
        bgr = decode_bgr8(msg, "raw")
        feeds, meta = adapter.preprocess(bgr)
        outputs = {k: np.array(v, copy=True) for k, v in outputs_for[name].items()}  # the executor's copy
        dets = adapter.postprocess(outputs, meta)
        out = DetectionArray()
        h, w = meta.image_size
        fill_detection_array(out, Detection, msg.header, dets.boxes, dets.scores, dets.class_ids, dets.names, w, h)
        now = time.perf_counter()
        out.timing = InferenceTiming(model="m", backend="b", device="d", preprocess_ms=(now - t0) * 1e3,
                                     queue_ms=0.0, inference_ms=0.0, postprocess_ms=0.0, total_ms=0.0)
        if with_vision is not None:
            to_vision_detections(with_vision, msg.header, dets.boxes, dets.scores, dets.class_ids)
        return out, feeds

    return run


def _stages(adapter, outputs, msg, vision):
    """Per-stage medians (ms) of the detector host path for one frame: where the time goes."""
    from axcl_msgs.msg import Detection, DetectionArray

    from axcl_ros.io.detection_messages import fill_detection_array, to_vision_detections
    from axcl_ros.io.image_transport import decode_bgr8

    bgr = decode_bgr8(msg, "raw")
    feeds, meta = adapter.preprocess(bgr)
    dets = adapter.postprocess(outputs, meta)

    def message():
        out = DetectionArray()
        fill_detection_array(out, Detection, msg.header, dets.boxes, dets.scores, dets.class_ids, dets.names,
                             meta.image_size[1], meta.image_size[0])
        if vision is not None:
            to_vision_detections(vision, msg.header, dets.boxes, dets.scores, dets.class_ids)

    fns = {"convert": lambda: decode_bgr8(msg, "raw"), "letterbox": lambda: adapter.preprocess(bgr),
           "copy": lambda: {k: np.array(v, copy=True) for k, v in outputs.items()},
           "decode+NMS": lambda: adapter.postprocess(outputs, meta), "msg": message}
    return {k: v.median_ms for k, v in time_interleaved(fns, blocks=7, per_block=5).items()}


#: the two scenarios of bench_ros_detector.py: (confidence, IoU, max detections)
PLAIN_CASES = {"0 boxes (grey frame)": (0.25, 0.45, 300), "300 boxes (photo)": (1e-4, 0.7, 300)}


def _vs_plain(ultra, photo, photo_msg, grey_case, blocks, per_block) -> List[Row]:
    """Our whole host path vs the plain node's (bench_ros_node.plain_detect), and our NMS vs OpenCV's batched NMS,
    at 0 and 300 boxes on 640×480 (Ultralytics layout, stored real outputs)."""
    from axcl_msgs.msg import Detection, DetectionArray
    from bench_ros_node import plain_detect
    from sensor_msgs.msg import Image

    from axcl_ros.io.detection_messages import fill_detection_array
    from axcl_ros.io.image import array_to_image_fields
    from axcl_ros.io.image_transport import decode_bgr8
    from axcl_ros.models.nms import greedy_nms
    from axcl_ros.models.yolo import DetectorConfig

    adapter, outputs = ultra
    grey, grey_out = grey_case
    grey_msg = Image(**array_to_image_fields(grey, "bgr8", data_as="array"))
    cases = {"0 boxes (grey frame)": (grey_msg, grey_out), "300 boxes (photo)": (photo_msg, outputs["640x480"])}
    rows = []
    for what, (msg, out) in cases.items():
        conf, iou, max_det = PLAIN_CASES[what]
        config = DetectorConfig(conf_threshold=conf, iou_threshold=iou, max_detections=max_det)
        stored = next(iter(out.values()))

        def ours(msg=msg, out=out, config=config):
            bgr = decode_bgr8(msg, "raw")
            _, meta = adapter.preprocess(bgr)
            dets = adapter.postprocess({k: np.array(v, copy=True) for k, v in out.items()}, meta, config)
            return fill_detection_array(DetectionArray(), Detection, msg.header, dets.boxes, dets.scores,
                                        dets.class_ids, dets.names, meta.image_size[1], meta.image_size[0])

        def plain(msg=msg, stored=stored, conf=conf, iou=iou, max_det=max_det):
            img = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
            return plain_detect(lambda _x: np.array(stored, copy=True), img, msg.header, conf, iou, max_det, 640)

        bgr = decode_bgr8(msg, "raw")
        _, meta = adapter.preprocess(bgr)
        dets = adapter.postprocess(out, meta, config)

        def pre_post(bgr=bgr, out=out, config=config):  # the stages Ultralytics' own speed figures count
            _, meta = adapter.preprocess(bgr)
            return adapter.postprocess(out, meta, config)

        def message(msg=msg, dets=dets, meta=meta):
            return fill_detection_array(DetectionArray(), Detection, msg.header, dets.boxes, dets.scores,
                                        dets.class_ids, dets.names, meta.image_size[1], meta.image_size[0])

        pred = stored[0]
        floor = _floor(bgr, (640, 640))
        n_ours, n_plain = len(ours().detections), len(plain().detections)
        t = time_interleaved({"ours": ours, "plain": plain, "pre_post": pre_post, "message": message,
                              "floor": floor, "pass": lambda pred=pred: pred[4:].max(axis=0)},
                             blocks=blocks, per_block=per_block)
        rows.append(Row(TOPIC, f"detector host path 640x480, {what}", t["ours"].median_ms, "ms/frame",
                        t["plain"].median_ms, "plain node pre/post", ratio(t["ours"].median_ms, t["plain"].median_ms),
                        note=f"{n_ours} vs {n_plain} dets; convert+letterbox+copy+decode+NMS+msg"))
        bound = 2 * t["floor"].median_ms + t["pass"].median_ms
        rows.append(Row(TOPIC, f"detector pre+post 640x480, {what}", t["pre_post"].median_ms, "ms/frame", bound,
                        "2x floor + one pass over the output", ratio(t["pre_post"].median_ms, bound),
                        note=f"letterbox to the float tensor + decode + NMS + box mapping (what Ultralytics' speed "
                             f"pre+post counts); message {t['message'].median_ms:.2f} ms on top; floor (frame copy + "
                             f"letterbox resize) {t['floor'].median_ms:.3f}, one pass (max over classes of "
                             f"[{pred.shape[0]}, {pred.shape[1]}]) {t['pass'].median_ms:.3f} ms"))
        # NMS alone on this scenario's candidates
        best = pred[4:].max(axis=0)
        keep = np.flatnonzero(best > conf)
        if keep.size < 2:
            continue
        cls = pred[4:, keep].argmax(axis=0).astype(np.int32)
        cx, cy, w, h = (pred[i, keep] for i in range(4))
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
        scores = best[keep].astype(np.float32)
        xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float64)
        args = (boxes, scores, cls, iou, conf, xywh)
        tn = time_interleaved({"ours": lambda a=args: greedy_nms(a[0], a[1], a[2], a[3]),
                               "ours_stop": lambda a=args, m=max_det: greedy_nms(a[0], a[1], a[2], a[3], max_output=m),
                               "opencv": lambda a=args: cv2.dnn.NMSBoxesBatched(a[5], a[1], a[2], a[4], a[3])},
                              blocks=blocks, per_block=per_block)
        rows.append(Row(TOPIC, f"NMS over {keep.size} candidates ({what})", tn["ours"].median_ms, "ms",
                        tn["opencv"].median_ms, "cv2.dnn.NMSBoxesBatched", ratio(tn["ours"].median_ms,
                                                                                 tn["opencv"].median_ms),
                        note=f"onnxruntime NonMaxSuppression operator, no stop; with the adapter's stop at "
                             f"{max_det} per class {tn['ours_stop'].median_ms:.2f} ms"))
    return rows


def _floor(frame, size):
    th, tw = size
    h, w = frame.shape[:2]
    scale = min(th / h, tw / w)
    rw, rh = int(round(w * scale)), int(round(h * scale))

    def run():
        copy = frame.copy()
        return cv2.resize(copy, (rw, rh), interpolation=cv2.INTER_LINEAR)

    return run


def run(quick: bool = False) -> List[Row]:
    """Measure and return the rows of this topic."""
    reason = ros_available()
    if reason:
        return [Row(TOPIC, "all", None, note=f"skipped: {reason}")]
    from sensor_msgs.msg import Image

    from axcl_ros import assets
    from axcl_ros.io.detection_messages import vision_msgs_types
    from axcl_ros.io.image import array_to_image_fields
    from axcl_ros.models.depth_anything import DepthAnythingAdapter
    from axcl_ros.models.yolo import YoloAdapter
    from axcl_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from axcl_ros_testing.depth_models import build_axera_probe
    from axcl_ros_testing.yolo_models import axera_from_ultralytics_onnx

    blocks, per_block = (7, 5) if quick else (15, 10)
    frames = _frames()
    msgs = {}
    for name, bgr in frames.items():
        msg = Image(**array_to_image_fields(bgr, "bgr8", data_as="array"))
        msg.header.stamp.sec, msg.header.frame_id = 1, "camera"
        msgs[name] = msg
    vision = vision_msgs_types()
    backend = OnnxRuntimeBackend(intra_op_num_threads=2)
    rows: List[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        src = assets.nudenet_yolov8n_onnx()
        axera_path = Path(tmp) / "nudenet_axera.onnx"
        axera_from_ultralytics_onnx(src, axera_path, size=(640, 640))
        layouts = {}
        for layout, path in (("ultralytics", src), ("axera", axera_path)):
            session = backend.load(str(path))
            adapter = YoloAdapter.from_specs(session.inputs, session.outputs, labels=assets.NUDENET_LABELS,
                                             input_size=640)
            outputs = {}
            for name, bgr in frames.items():
                feeds, _ = adapter.preprocess(bgr)
                outputs[name] = {k: np.array(v) for k, v in session.run(feeds).items()}
            if layout == "ultralytics":
                grey = np.full((480, 640, 3), 96, np.uint8)
                feeds, _ = adapter.preprocess(grey)
                plain_case = (grey, {k: np.array(v) for k, v in session.run(feeds).items()})
            session.release()
            layouts[layout] = (adapter, outputs)

        probe = build_axera_probe(Path(tmp) / "da2_probe.onnx", 518, 518)
        dsession = backend.load(str(probe))
        depth = DepthAnythingAdapter.from_specs(dsession.inputs, dsession.outputs)
        depth_out = {dsession.outputs[0].name: np.random.default_rng(0).random((1, 1, 518, 518), np.float32)}
        dsession.release()

    for name, bgr in frames.items():
        h, w = bgr.shape[:2]
        fns = {"floor": _floor(bgr, (640, 640))}
        for layout, (adapter, outputs) in layouts.items():
            pipe = _detector_pipeline(adapter, outputs, msgs, vision)
            fns[layout] = (lambda pipe=pipe, name=name: pipe(name))
            out, _ = pipe(name)
            if layout == "axera":
                n_dets = len(out.detections)

        def depth_path(name=name, h=h, w=w):
            from axcl_ros.io.image_transport import decode_bgr8

            img = decode_bgr8(msgs[name], "raw")
            depth.preprocess(img)
            d = depth.postprocess({k: np.array(v, copy=True) for k, v in depth_out.items()}, out_size=(h, w))
            return Image(**array_to_image_fields(d, "32FC1", data_as="array"))

        floor518 = _floor(bgr, (518, 518))
        raw = next(iter(depth_out.values()))[0, 0]

        def depth_floor(raw=raw, h=h, w=w, floor518=floor518):
            floor518()
            return cv2.resize(raw, (w, h), interpolation=cv2.INTER_LINEAR)

        fns["depth"] = depth_path
        fns["depth_floor"] = depth_floor
        t = time_interleaved(fns, blocks=blocks, per_block=per_block)
        stages = _stages(layouts["axera"][0], layouts["axera"][1][name], msgs[name], vision)
        breakdown = ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
        floor = t["floor"].median_ms
        rows.append(Row(TOPIC, f"floor {name} (copy + letterbox resize)", floor, "ms/frame",
                        note=f"p10-p90 {t['floor'].p10_ms:.2f}-{t['floor'].p90_ms:.2f} ms"))
        for layout in ("axera", "ultralytics"):
            tm = t[layout]
            what = f"ms: {breakdown}" if layout == "axera" else "convert+letterbox+copy+decode+NMS+msg"
            rows.append(Row(TOPIC, f"detector {name}, {layout} layout", tm.median_ms, "ms/frame", floor,
                            "floor", ratio(tm.median_ms, floor),
                            note=f"{what}; {n_dets} dets{' + vision_msgs' if vision else ''}; "
                                 f"p10-p90 {tm.p10_ms:.2f}-{tm.p90_ms:.2f}"))
        dfl = t["depth_floor"].median_ms
        rows.append(Row(TOPIC, f"depth {name}, axera layout", t["depth"].median_ms, "ms/frame", dfl, "floor (518)",
                        ratio(t["depth"].median_ms, dfl),
                        note="convert+resize to 518+resize back to the frame+32FC1 msg; floor adds one resize of "
                             "the 518x518 output to the frame size"))
    rows += _vs_plain(layouts["ultralytics"], frames["640x480"], msgs["640x480"], plain_case, blocks, per_block)
    rows.append(Row(TOPIC, "Ultralytics pre/post on the same model", None,
                    note="not in this bench (torch + torchvision are no dependency of the package); measured "
                         "privately beside it, README 'Detector on the CPU'"))
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
