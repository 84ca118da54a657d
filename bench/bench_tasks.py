"""Segmentation and pose host post-processing per frame against detection-only post-processing, same run.

A 640×480 frame letterboxed to 640×640; the raw outputs of a segmentation model with 10 planted instances (and of a
pose model with 10 persons) are made once by ``axcl_ros_testing.yolo_task_models`` in both layouts (Ultralytics
``[1,116,8400]`` + ``[1,32,160,160]``; AXERA 3 DFL heads + 3 coefficient heads + ``[1,160,160,32]``). Measured,
block by block alternately: the detector's ``postprocess`` on the detection part of the same outputs (baseline),
and the task adapter's ``postprocess`` (the same detection decode + matching + 10 masks or keypoints).
Goal (issue #15): segmentation ≤ 2× the detection-only time.
"""

from __future__ import annotations

from functools import partial
from typing import List

import numpy as np
from bench_common import Row, ratio, time_interleaved

TOPIC = "seg/pose post-processing"


def _boxes(n: int = 10):
    rng = np.random.default_rng(1)
    boxes = []
    while len(boxes) < n:  # non-overlapping-centre boxes inside the frame area (rows 80..560 of the letterbox)
        w, h = rng.uniform(40, 150), rng.uniform(60, 200)
        x, y = rng.uniform(10, 630 - w), rng.uniform(90, 550 - h)
        b = [x, y, x + w, y + h]
        if all(abs((b[0] + b[2]) - (c[0] + c[2])) > 40 or abs((b[1] + b[3]) - (c[1] + c[3])) > 40 for c in boxes):
            boxes.append(b)
    return boxes


def run(quick: bool = False) -> List[Row]:
    from axcl_ros.models.yolo_tasks import YoloTaskAdapter
    from axcl_ros.runtime.base import TensorSpec
    from axcl_ros_testing.yolo_task_models import pose_outputs, seg_outputs

    boxes = _boxes()
    frame = np.full((480, 640, 3), 100, np.uint8)
    blocks, per_block = (5, 5) if quick else (15, 20)
    rows = []
    kpts = np.zeros((10, 17, 3), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        kpts[i, :, 0] = np.linspace(x1, x2, 17)
        kpts[i, :, 1] = np.linspace(y1, y2, 17)
        kpts[i, :, 2] = 0.8
    for task in ("segment", "pose"):
        for layout in ("ultralytics", "axera"):
            if task == "segment":
                outs = seg_outputs(boxes, [i % 80 for i in range(10)], [0.9 - 0.02 * i for i in range(10)],
                                   layout=layout)
            else:
                outs = pose_outputs(boxes, [0.9 - 0.02 * i for i in range(10)], kpts, layout=layout)
            if layout == "ultralytics":
                inp = TensorSpec("images", (1, 3, 640, 640), np.dtype(np.float32))
            else:
                inp = TensorSpec("images", (1, 640, 640, 3), np.dtype(np.uint8))
            specs = [TensorSpec(n, a.shape, np.dtype(np.float32)) for n, a in outs.items()]
            adapter = YoloTaskAdapter.from_specs([inp], specs)
            assert adapter.task == task, adapter.task
            _, meta = adapter.preprocess(frame)
            det = adapter.detector
            if layout == "ultralytics":
                det_outs = {det.output_names[0]: outs["output0"][:, :adapter._det_rows]}
            else:
                det_outs = {s.name: outs[s.name] for s in det.output_specs}
            res = adapter.postprocess(outs, meta)
            assert len(res.detections) == 10
            t = time_interleaved({"det": partial(det.postprocess, det_outs, meta),
                                  "task": partial(adapter.postprocess, outs, meta)}, blocks=blocks,
                                 per_block=per_block)
            goal = "goal <= 2x" if task == "segment" else "no goal set"
            rows.append(Row(TOPIC, f"{task} post-processing, 640x480, 10 instances, {layout} layout",
                            t["task"].median_ms, "ms/frame", t["det"].median_ms, "detection-only postprocess",
                            ratio(t["task"].median_ms, t["det"].median_ms), note=goal))
    return rows
