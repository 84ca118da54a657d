"""Multi-object tracking sequences with known identities, and the identity metrics the tests and the bench report.

A sequence is a moving camera (pan + zoom) over a world in which boxes move with constant velocity, cross and occlude
one another (a fixed depth order). The detections are what a detector gives in such a scene: every visible object is
found with a box jittered by a few percent of its size, the score falls with the visible fraction (partly occluded
objects come as *low-score* detections, the case ByteTrack's second association exists for), heavily occluded
objects are missed, a few detections are missed at random and a few low-score false positives appear.

Metrics (as defined by Ristani et al. 2016 and the CLEAR MOT papers, computed here, no motmetrics):
``idf1`` = 2·IDTP / (GT boxes + predicted boxes), IDTP from the best one-to-one GT-id ↔ track-id matching over the
whole sequence (a pair counts a frame when IoU >= 0.5); ``id_switches`` = times a ground-truth object's matched
track id (per-frame optimal matching at IoU >= 0.5) differs from its previous matched id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from axcl_ros.models.tracking import iou_matrix


@dataclass
class Frame:
    """One frame: ground truth (boxes xyxy, ids) and detections (boxes, scores)."""

    gt_boxes: np.ndarray
    gt_ids: np.ndarray
    det_boxes: np.ndarray
    det_scores: np.ndarray
    det_gt: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # gt id of each detection, -1 = false


def _visible_fraction(boxes: np.ndarray, depth: np.ndarray, width: int, height: int, grid: int = 4) -> np.ndarray:
    """Fraction of each box (in frame) not hidden by a nearer box, on a grid of ``grid`` pixels."""
    gw, gh = width // grid + 1, height // grid + 1
    owner = np.full((gh, gw), -1, np.int64)
    for i in np.argsort(-depth):  # far to near: nearer ones overwrite
        x0, y0, x1, y1 = np.clip(np.round(boxes[i] / grid).astype(int), 0, [gw, gh, gw, gh])
        owner[y0:y1, x0:x1] = i
    counts = np.bincount(owner[owner >= 0].ravel(), minlength=len(boxes))
    vis = np.zeros(len(boxes))
    for i, b in enumerate(boxes):
        x0, y0, x1, y1 = np.clip(np.round(b / grid).astype(int), 0, [gw, gh, gw, gh])
        area = max((x1 - x0) * (y1 - y0), 0)
        vis[i] = counts[i] / area if area else 0.0
    return vis


def make_sequence(num_objects: int = 8, frames: int = 120, width: int = 640, height: int = 480, seed: int = 0, *,
                  pan: float = 1.5, zoom: float = 0.3, jitter: float = 0.03, miss_rate: float = 0.03,
                  false_positives: float = 0.3, crossing: bool = True, world: Tuple[float, float] = (1.6, 1.2),
                  object_scale: float = 1.0) -> List[Frame]:
    """A sequence of ``frames`` frames with ``num_objects`` objects (ids 1..n).

    ``crossing``: objects start on the left and right halves and move towards each other (every one crosses several
    others); otherwise they wander with random velocities and bounce off the world's borders.
    ``pan`` camera pixels per frame, ``zoom`` relative scale change over the sequence; ``world`` the size of the
    world in frame widths/heights (objects outside the view are not detected), ``object_scale`` scales the objects.
    """
    rng = np.random.default_rng(seed)
    world_w, world_h = width * world[0], height * world[1]
    sizes = np.column_stack([rng.uniform(40, 90, num_objects), rng.uniform(60, 160, num_objects)]) * object_scale
    if crossing:
        left = np.arange(num_objects) % 2 == 0
        x = np.where(left, rng.uniform(0.15, 0.4, num_objects), rng.uniform(0.6, 0.85, num_objects)) * world_w
        y = rng.uniform(0.3, 0.75, num_objects) * world_h
        vx = np.where(left, 1, -1) * rng.uniform(2.0, 4.5, num_objects)
        vy = rng.uniform(-0.6, 0.6, num_objects)
    else:
        x = rng.uniform(0.1, 0.9, num_objects) * world_w
        y = rng.uniform(0.1, 0.9, num_objects) * world_h
        vx = rng.uniform(-3, 3, num_objects)
        vy = rng.uniform(-2, 2, num_objects)
    depth = rng.permutation(num_objects).astype(float)
    out = []
    for f in range(frames):
        scale = 1.0 + zoom * f / max(frames - 1, 1)
        cam_x = (world_w - width / scale) / 2 + pan * (f - frames / 2) / scale
        cam_y = (world_h - height / scale) / 2
        if not crossing:
            x, y = x + vx, y + vy
            vx = np.where((x < 0) | (x > world_w), -vx, vx)
            vy = np.where((y < 0) | (y > world_h), -vy, vy)
        else:
            x, y = x + vx, y + vy
        world = np.column_stack([x - sizes[:, 0] / 2, y - sizes[:, 1] / 2, x + sizes[:, 0] / 2, y + sizes[:, 1] / 2])
        img = (world - [cam_x, cam_y, cam_x, cam_y]) * scale
        clipped = np.clip(img, 0, [width, height, width, height])
        area = (img[:, 2] - img[:, 0]) * (img[:, 3] - img[:, 1])
        in_frame = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1]) / area
        present = in_frame > 0.5
        vis = _visible_fraction(clipped, depth, width, height) * present
        gt_idx = np.flatnonzero(present)
        detected = (vis >= 0.3) & (rng.random(num_objects) >= miss_rate)
        d_idx = np.flatnonzero(detected)
        wh = (clipped[d_idx, 2:] - clipped[d_idx, :2])
        boxes = clipped[d_idx] + rng.normal(0, jitter, (d_idx.size, 4)) * np.tile(wh, 2)
        scores = np.clip(0.95 * vis[d_idx] ** 1.5 + rng.normal(0, 0.04, d_idx.size), 0.05, 0.99)
        n_fp = rng.poisson(false_positives)
        fp_xy = rng.uniform([0, 0], [width - 60, height - 80], (n_fp, 2))
        fp = np.column_stack([fp_xy, fp_xy + rng.uniform([20, 30], [60, 80], (n_fp, 2))])
        out.append(Frame(gt_boxes=clipped[gt_idx], gt_ids=gt_idx + 1,
                         det_boxes=np.concatenate([boxes, fp]).astype(np.float32),
                         det_scores=np.concatenate([scores, rng.uniform(0.1, 0.4, n_fp)]).astype(np.float32),
                         det_gt=np.concatenate([d_idx + 1, np.full(n_fp, -1)]).astype(np.int64)))
    return out


@dataclass
class IdentityMetrics:
    """Identity metrics of one tracked sequence."""

    idf1: float
    idp: float
    idr: float
    id_switches: int
    gt_boxes: int
    predicted_boxes: int
    mostly_tracked: int
    objects: int


def identity_metrics(frames: Sequence[Frame], track_ids: Sequence[np.ndarray], iou_threshold: float = 0.5
                     ) -> IdentityMetrics:
    """Metrics of ``track_ids`` (per frame, one id per detection, -1 = none) against the frames' ground truth.

    Predicted boxes are the detections that carry a track id (what the node publishes with an id).
    """
    pair_frames: Dict[Tuple[int, int], int] = {}
    gt_count: Dict[int, int] = {}
    matched_count: Dict[int, int] = {}
    last_match: Dict[int, int] = {}
    switches = n_gt = n_pred = 0
    for fr, ids in zip(frames, track_ids):
        ids = np.asarray(ids)
        keep = ids >= 0
        pb, pid = fr.det_boxes[keep], ids[keep]
        n_gt += len(fr.gt_ids)
        n_pred += len(pid)
        iou = iou_matrix(fr.gt_boxes, pb)
        # a (ground truth, track id) pair counts once per frame, even if the id sits on two boxes
        for key in {(int(fr.gt_ids[g]), int(pid[p])) for g, p in np.argwhere(iou >= iou_threshold)}:
            pair_frames[key] = pair_frames.get(key, 0) + 1
        for g in fr.gt_ids:
            gt_count[int(g)] = gt_count.get(int(g), 0) + 1
        if iou.size:
            r, c = linear_sum_assignment(-iou)
            for g, p in zip(r, c):
                if iou[g, p] < iou_threshold:
                    continue
                gid, tid = int(fr.gt_ids[g]), int(pid[p])
                matched_count[gid] = matched_count.get(gid, 0) + 1
                if gid in last_match and last_match[gid] != tid:
                    switches += 1
                last_match[gid] = tid
    gts = sorted({g for g, _ in pair_frames})
    tracks = sorted({t for _, t in pair_frames})
    idtp = 0
    if gts and tracks:
        w = np.zeros((len(gts), len(tracks)))
        gi = {g: i for i, g in enumerate(gts)}
        ti = {t: i for i, t in enumerate(tracks)}
        for (g, t), n in pair_frames.items():
            w[gi[g], ti[t]] = n
        r, c = linear_sum_assignment(-w)
        idtp = int(w[r, c].sum())
    mostly = sum(1 for g, n in gt_count.items() if matched_count.get(g, 0) >= 0.8 * n)
    return IdentityMetrics(idf1=2 * idtp / max(n_gt + n_pred, 1), idp=idtp / max(n_pred, 1), idr=idtp / max(n_gt, 1),
                           id_switches=switches, gt_boxes=n_gt, predicted_boxes=n_pred, mostly_tracked=mostly,
                           objects=len(gt_count))


#: the astronaut's FACE_FEMALE box (models.md §4.3) inside the 200x200 head crop used below
FACE_IN_CROP = np.array([53, 42, 154, 140])


def real_photo_crossing(frames: int = 34) -> List[Frame]:
    """Two copies of skimage's astronaut head cross in front of a panning skimage 'coffee' scene (the nearer one hides
    the other completely for 9 frames); detections from NudeNet's YOLOv8n (real weights, onnxruntime, 320 input),
    faces only. Ground truth: the face box inside each pasted crop, present while at most half hidden."""
    import cv2

    from axcl_ros import assets
    from axcl_ros.models.yolo import YoloAdapter

    from . import yolo_models as ym
    from .sample_inputs import skimage_image

    sess = ym.ort_session(assets.nudenet_yolov8n_onnx(), threads=2)
    adapter = YoloAdapter.from_specs(*ym.ort_specs(sess), labels=assets.NUDENET_LABELS, input_size=320)
    adapter.config = adapter.config.replace(conf_threshold=0.1)
    astronaut = np.ascontiguousarray(skimage_image("astronaut")[:, :, ::-1])
    head = astronaut[40:240, 120:320]
    scene = cv2.resize(np.ascontiguousarray(skimage_image("coffee")[:, :, ::-1]), (960, 640))
    out = []
    for k in range(frames):
        frame = scene[0:480, 4 * k:4 * k + 640].copy()        # the camera pans right over the scene
        pos = {1: (40 + 12 * k, 150), 2: (400 - 12 * k, 170)}  # face 1 moves right, face 2 (in front) left
        for fid in (1, 2):
            x, y = pos[fid]
            frame[y:y + 200, x:x + 200] = head
        gt_boxes, gt_ids = [], []
        for fid in (1, 2):
            x, y = pos[fid]
            box = FACE_IN_CROP + [x, y, x, y]
            hidden = 0.0
            if fid == 1:  # visible part of face 1 behind crop 2
                bx, by = pos[2]
                ix = max(0, min(box[2], bx + 200) - max(box[0], bx))
                iy = max(0, min(box[3], by + 200) - max(box[1], by))
                hidden = ix * iy / ((box[2] - box[0]) * (box[3] - box[1]))
            if hidden <= 0.5:
                gt_boxes.append(box)
                gt_ids.append(fid)
        feeds, meta = adapter.preprocess(frame)
        dets = adapter.postprocess(sess.run(None, feeds), meta)
        faces = np.array([n.startswith("FACE") for n in dets.names], bool)
        boxes, scores = dets.boxes[faces], dets.scores[faces]
        gt = np.array(gt_boxes, np.float64).reshape(-1, 4)
        iou = iou_matrix(gt, boxes)
        det_gt = np.full(len(scores), -1)
        for j in range(len(scores)):
            if iou.shape[0] and iou[:, j].max() >= 0.5:
                det_gt[j] = gt_ids[int(iou[:, j].argmax())]
        out.append(Frame(gt, np.array(gt_ids), boxes, scores, det_gt))
    return out
