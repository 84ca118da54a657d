"""Segmentation and pose host post-processing per frame against detection-only post-processing, same run.

A 640×480 frame letterboxed to 640×640; the raw outputs of a segmentation model with 10 planted instances (and of a
pose model with 10 persons) are made once by ``axcl_ros_testing.yolo_task_models`` in both layouts (Ultralytics
``[1,116,8400]`` + ``[1,32,160,160]``; AXERA 3 DFL heads + 3 coefficient heads + ``[1,32,160,160]``, as AXERA's
compiled yolo11-seg reports them). Measured,
block by block alternately: the detector's ``postprocess`` on the detection part of the same outputs (baseline),
and the task adapter's ``postprocess`` (the same detection decode + each kept detection's row + 10 masks or
keypoints). The baseline is the one the task path runs itself: the same decoder, the same arrays (for Ultralytics
a view of the first 4+nc rows of the seg output, as the adapter passes it), hence the same candidates and NMS.
Goal (issue #15): segmentation host post-processing ≤ 2× the detection-only host time (the host-time rows below);
these rows give the stricter post-processing-only ratio. Each row also gives the same comparison in CPU time of
the calling thread (a second interleaved pass): on a loaded machine a block of the slower call is preempted more
often than a block of the faster one, which inflates the wall-clock ratio; the CPU-time ratio leaves that out.

Per segmentation layout and load, a host-time row compares whole frames: the task adapter's ``preprocess`` +
``postprocess`` against the detector's ``preprocess`` + ``postprocess`` (the detection-only host time per frame, the
figure issue #16 calls host time), with the segmentation post-processing alone against the same baseline in its note
(wall clock and CPU time).

A third, quiet row per segmentation layout times only the products of each kept detection's 32 coefficients with
the prototype cells under its box (one matmul per box, as ``yolo_seg`` does): the part of the masks that any method
reading each box's prototype cells once has to pay, against the same baseline.
"""

from __future__ import annotations

import time
from functools import partial
from typing import List

import numpy as np
from bench_common import Row, busy_core, ratio, time_interleaved

TOPIC = "seg/pose post-processing"
#: candidates per object above the confidence threshold in the "like a real model" rows (a real YOLO fires on
#: several neighbouring anchors per object; NMS keeps one)
CANDIDATES = 9


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


def _add_candidates(outs, layout: str, per_instance: int):
    """Like a real model, each object also fires on neighbouring anchors/cells (slightly worse boxes and scores):
    ``per_instance - 1`` extra candidates per planted instance, all suppressed by NMS, with their own rows."""
    outs = {k: v.copy() for k, v in outs.items()}
    if per_instance <= 1:
        return outs
    if layout == "ultralytics":
        out = outs["output0"]
        planted = np.flatnonzero(out[0, 4:84].max(axis=0) > 0.01)
        free = np.setdiff1d(np.arange(out.shape[2]), planted)[::7]
        j = 0
        for a in planted:
            for k in range(1, per_instance):
                col = out[0, :, a].copy()
                col[:4] += [(-1) ** k * k, (k % 3) - 1, 0.5 * k, -0.5 * k]  # a box a few pixels off
                col[4:84] *= 0.95 ** k
                out[0, :, free[j]] = col
                j += 1
        return outs
    for name in [n for n in outs if n.startswith("det")]:
        head, extra = outs[name][0], outs["mask" + name[3:]][0]
        cells = np.argwhere(head[..., 64:].max(axis=-1) > -10)
        for r, c in cells:
            neighbours = [(r + dr, c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]
            for k, (rr, cc) in enumerate(neighbours[:per_instance - 1], start=1):
                if 0 <= rr < head.shape[0] and 0 <= cc < head.shape[1]:
                    head[rr, cc] = head[r, c]
                    head[rr, cc, 64:] -= 0.2 * k  # a lower score; the same distances from a shifted cell
                    extra[rr, cc] = extra[r, c]
    return outs


def _products(adapter, outs, meta):
    """The prototype products alone of the frame's kept detections (the floor row): a callable."""
    from axcl_ros.models.yolo import LAYOUT_AXERA
    from axcl_ros.models.yolo_seg import _extents

    dets = adapter.postprocess(outs, meta, with_masks=False).detections
    protos = outs[adapter.protos_spec.name][0]
    hwc = adapter.protos_channels_last
    if adapter.layout == LAYOUT_AXERA:
        heads, cells = adapter._axera_cells(outs, dets.source)
        coefficients = adapter._axera_rows(outs, heads, cells)
    else:
        coefficients = outs[adapter.detector.output_names[0]][0, adapter._det_rows:, dets.source].astype(np.float32)
    ph, pw = protos.shape[:2] if hwc else protos.shape[1:]
    _, _, _, c0, c1 = _extents(dets.boxes, meta, (pw, ph), meta.size[0] / ph)
    crops = list(zip(*c0, *c1))  # (x0, y0, x1, y1) in prototype cells

    def products():
        for c, (x0, y0, x1, y1) in zip(coefficients, crops):
            if hwc:
                protos[y0:y1, x0:x1, :] @ c
            else:
                c @ protos[:, y0:y1, x0:x1].transpose(1, 0, 2)
    return products


def _host_row(frame, adapter, outs, det, det_outs, meta, layout: str, load: str, blocks: int, per_block: int) -> Row:
    """Whole-frame host time of segmentation (preprocess + post-processing) against detection only, same frame."""
    def det_frame():
        _, m = det.preprocess(frame)
        det.postprocess(det_outs, m)

    def seg_frame():
        _, m = adapter.preprocess(frame)
        adapter.postprocess(outs, m)

    fns = {"det": det_frame, "seg": seg_frame, "seg_post": partial(adapter.postprocess, outs, meta)}
    t = time_interleaved(fns, blocks=blocks, per_block=per_block)
    cpu = time_interleaved(fns, blocks=blocks, per_block=per_block, clock=time.thread_time)
    w = {k: v.median_ms for k, v in t.items()}
    c = {k: v.median_ms for k, v in cpu.items()}
    return Row(TOPIC, f"segment host time per frame (preprocess + post-processing), 640x480, 10 instances x "
                      f"{CANDIDATES} candidates, {layout} layout, {load}",
               w["seg"], "ms/frame", w["det"], "detection-only host time (preprocess + post-processing)",
               ratio(w["seg"], w["det"]),
               note=f"post-processing alone {w['seg_post']:.3f} ms = {w['seg_post'] / w['det']:.2f}x the "
                    f"detection-only host time (goal <= 2x); CPU time: frame {c['seg'] / c['det']:.2f}x, "
                    f"post-processing alone {c['seg_post'] / c['det']:.2f}x "
                    f"({c['seg']:.3f} / {c['seg_post']:.3f} / {c['det']:.3f} ms)")


def run(quick: bool = False) -> List[Row]:
    from axcl_ros.models.yolo_tasks import YoloTaskAdapter
    from axcl_ros.runtime.base import TensorSpec
    from axcl_ros_testing.yolo_task_models import pose_outputs, seg_outputs

    boxes = _boxes()
    frame = np.full((480, 640, 3), 100, np.uint8)
    blocks, per_block = (5, 5) if quick else (15, 20)
    kpts = np.zeros((10, 17, 3), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        kpts[i, :, 0] = np.linspace(x1, x2, 17)
        kpts[i, :, 1] = np.linspace(y1, y2, 17)
        kpts[i, :, 2] = 0.8
    cases = []  # (task, layout, candidates per instance, adapter, outputs, meta, detection-only outputs)
    for task, candidates in (("segment", 1), ("segment", CANDIDATES), ("pose", 1)):
        for layout in ("ultralytics", "axera"):
            if task == "segment":
                outs = _add_candidates(seg_outputs(boxes, [i % 80 for i in range(10)],
                                                   [0.9 - 0.02 * i for i in range(10)], layout=layout),
                                       layout, candidates)
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
            assert len(res.detections) == 10, len(res.detections)
            cases.append((task, layout, candidates, adapter, outs, meta, det, det_outs))
    rows = []
    for load in ("quiet", "one core busy"):
        with busy_core(load != "quiet"):
            for task, layout, candidates, adapter, outs, meta, det, det_outs in cases:
                if task == "segment" and candidates == CANDIDATES:
                    rows.append(_host_row(frame, adapter, outs, det, det_outs, meta, layout, load, blocks, per_block))
                fns = {"det": partial(det.postprocess, det_outs, meta),
                       "task": partial(adapter.postprocess, outs, meta)}
                t = time_interleaved(fns, blocks=blocks, per_block=per_block)
                cpu = time_interleaved(fns, blocks=blocks, per_block=per_block, clock=time.thread_time)
                goal = "post vs post, stricter than the goal" if task == "segment" else "no goal set"
                rows.append(Row(TOPIC, f"{task} post-processing, 640x480, 10 instances x {candidates} candidates, "
                                       f"{layout} layout, {load}",
                                t["task"].median_ms, "ms/frame", t["det"].median_ms, "detection-only postprocess",
                                ratio(t["task"].median_ms, t["det"].median_ms),
                                note=f"{goal}; p10-p90 {t['task'].p10_ms:.3f}-{t['task'].p90_ms:.3f}; CPU time "
                                     f"{cpu['task'].median_ms:.3f} / {cpu['det'].median_ms:.3f} ms = "
                                     f"{cpu['task'].median_ms / cpu['det'].median_ms:.2f}x"))
    for task, layout, candidates, adapter, outs, meta, det, det_outs in cases:
        if task == "segment" and candidates == 1:
            t = time_interleaved({"det": partial(det.postprocess, det_outs, meta),
                                  "products": _products(adapter, outs, meta)}, blocks=blocks, per_block=per_block)
            rows.append(Row(TOPIC, f"segment: the 10 boxes' coefficient x prototype products alone, {layout} layout, "
                                   f"quiet", t["products"].median_ms, "ms/frame", t["det"].median_ms,
                            "detection-only postprocess", ratio(t["products"].median_ms, t["det"].median_ms),
                            note="the floor of the masks part; p10-p90 "
                                 f"{t['products'].p10_ms:.3f}-{t['products'].p90_ms:.3f}"))
    return rows
