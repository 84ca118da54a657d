"""ByteTrack multi-object tracking (Zhang et al., ECCV 2022) on detector boxes, in numpy.

Per frame (:meth:`ByteTracker.update`):

1. every track is moved by its Kalman filter (:mod:`.kalman`); lost tracks keep their position, not their growth;
2. **first association**: high-score detections (``score >= high_threshold``) against the confirmed tracks, tracked
   and lost, with cost ``1 - IoU·score`` (score fusion), matched by ``scipy.optimize.linear_sum_assignment`` and kept
   when the cost is at most ``match_threshold``; a matched lost track comes back with its identity;
3. **second association**: the low-score detections (``low_threshold <= score < high_threshold``, typically occluded
   objects) against the tracked tracks still unmatched, IoU at least ``1 - low_match_threshold``; the tracks still
   unmatched become *lost*;
4. unconfirmed tracks (seen in one frame only) against the high-score detections left; unmatched ones are dropped;
5. a high-score detection still unmatched with ``score >= new_track_threshold`` starts an unconfirmed track, confirmed
   (given an id) when matched again in the next frame (immediately in the first frame after a reset);
6. lost tracks older than ``track_buffer`` frames are removed, and a lost track that overlaps a tracked one
   (IoU > 0.85) is dropped, keeping the longer-lived one.

Association is class-agnostic, as in ByteTrack (a class flicker does not break a track). State is kept as arrays
(structure of arrays), so a frame with tens of tracks costs a fixed number of numpy calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import kalman

__all__ = ["ByteTracker", "TrackerConfig", "TrackerConfigError", "iou_matrix"]

_TRACKED, _LOST = 1, 2
_DUPLICATE_IOU = 0.85


class TrackerConfigError(ValueError):
    """A :class:`TrackerConfig` value is out of range."""


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack settings (defaults: ByteTrack's published ones; ``match_threshold`` is a cost, ``1 - IoU·score``)."""

    high_threshold: float = 0.5
    low_threshold: float = 0.1
    new_track_threshold: float = 0.6
    match_threshold: float = 0.8
    low_match_threshold: float = 0.5
    unconfirmed_match_threshold: float = 0.7
    track_buffer: int = 30
    fuse_score: bool = True

    def __post_init__(self) -> None:
        for name in ("high_threshold", "low_threshold", "new_track_threshold", "match_threshold",
                     "low_match_threshold", "unconfirmed_match_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise TrackerConfigError(f"{name} must be a number in [0, 1], got {value!r}")
        if self.low_threshold > self.high_threshold:
            raise TrackerConfigError(f"low_threshold ({self.low_threshold}) must not exceed high_threshold "
                                     f"({self.high_threshold})")
        if isinstance(self.track_buffer, bool) or not isinstance(self.track_buffer, int) or self.track_buffer < 0:
            raise TrackerConfigError(f"track_buffer must be an integer >= 0 (frames), got {self.track_buffer!r}")


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N×4 xyxy) with every box in ``b`` (M×4 xyxy): N×M float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    at, bt = a.T, b.T  # ufunc.outer on 1-D columns: several times faster than 3-D broadcasting at these sizes
    w = np.minimum.outer(at[2], bt[2]) - np.maximum.outer(at[0], bt[0])
    h = np.minimum.outer(at[3], bt[3]) - np.maximum.outer(at[1], bt[1])
    np.maximum(w, 0.0, out=w)
    np.maximum(h, 0.0, out=h)
    inter = w * h
    union = np.add.outer((at[2] - at[0]) * (at[3] - at[1]), (bt[2] - bt[0]) * (bt[3] - bt[1])) - inter
    return inter / np.maximum(union, 1e-12)


def _without(indices: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``indices`` minus the entries at ``positions``."""
    if positions.size == 0:
        return indices
    drop = np.zeros(indices.shape[0], bool)
    drop[positions] = True
    return indices[~drop]


_NONE = np.zeros(0, np.intp)
_solver = None  # scipy.optimize.linear_sum_assignment once loaded


def load_solver():
    """Import the assignment solver (``scipy.optimize.linear_sum_assignment``) now and return it.

    Importing ``scipy.optimize`` costs ~50 MiB resident and 0.3-2 s of start-up with the GIL held, so a process that
    never tracks never pays it, and one that tracks pays it at configure (call this then) rather than on the first
    contested match in the middle of a stream, where it would stall every thread of the node."""
    global _solver
    if _solver is None:
        from scipy.optimize import linear_sum_assignment

        _solver = linear_sum_assignment
    return _solver


def _cost(iou: np.ndarray, tracks: np.ndarray, dets: np.ndarray, scores: Optional[np.ndarray] = None) -> np.ndarray:
    """``1 - IoU`` of ``tracks`` × ``dets``, the IoU weighted by the detections' ``scores`` when given (score
    fusion)."""
    sim = iou[tracks[:, None], dets]
    if scores is not None:
        sim = sim * scores[dets][None, :]
    return 1.0 - sim


def _match(cost: np.ndarray, threshold: float):
    """Optimal assignment among the pairs with cost <= threshold → (rows, cols).

    The matching maximises the total ``threshold - cost`` over admissible pairs (ByteTrack's ``lapjv`` with
    ``cost_limit``): a row whose admissible pairs all conflict may stay unmatched rather than force a poor pair.
    When every row's best admissible column is a different column the answer is just those pairs (each row gets
    its best: nothing can do better), so the solver only runs on real conflicts.
    """
    if cost.size == 0:
        return _NONE, _NONE
    admissible = cost <= threshold
    rows = admissible.any(axis=1).nonzero()[0]
    if rows.size == 0:
        return _NONE, _NONE
    best = (cost if rows.size == cost.shape[0] else cost[rows]).argmin(axis=1)
    if len(set(best.tolist())) == best.size:
        return rows, best
    cols = admissible[rows].any(axis=0).nonzero()[0]
    sub = np.minimum(cost[np.ix_(rows, cols)] - threshold, 0.0)
    r, c = load_solver()(sub)
    keep = sub[r, c] < 0.0
    keep |= cost[rows[r], cols[c]] <= threshold
    return rows[r[keep]], cols[c[keep]]


class ByteTracker:
    """One camera's tracker. Not thread-safe: call :meth:`update` from one thread (the node's completion thread)."""

    def __init__(self, config: Optional[TrackerConfig] = None) -> None:
        self.config = config or TrackerConfig()
        self._next_id = 1
        self.reset()

    def reset(self) -> None:
        """Forget every track (stream jump, cleanup). Identities keep counting up, so an id is never reused."""
        self.frame = 0
        self._mean = np.zeros((0, 8))
        self._cov = np.zeros((0, 3, 4))                # per-coordinate 2x2 blocks (kalman.py)
        self._ids = np.zeros(0, np.int64)          # 0 = unconfirmed
        self._state = np.zeros(0, np.int8)
        self._start = np.zeros(0, np.int64)
        self._last = np.zeros(0, np.int64)

    @property
    def num_tracks(self) -> int:
        """Tracks alive (tracked, lost or unconfirmed)."""
        return int(self._ids.shape[0])

    def tracked_boxes(self) -> np.ndarray:
        """K×4 xyxy Kalman boxes of the confirmed tracks in the tracked state, with their ids: (boxes, ids)."""
        keep = (self._state == _TRACKED) & (self._ids > 0)
        return kalman.xyah_to_xyxy(self._mean[keep, :4]), self._ids[keep].copy()

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Feed one frame's detections (K×4 xyxy pixels, K scores); returns K track ids (-1 = not tracked)."""
        cfg = self.config
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if boxes.shape[0] != scores.shape[0]:
            raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores")
        self.frame += 1
        out = np.full(boxes.shape[0], -1, np.int64)
        n_tracks = self._ids.shape[0]
        if n_tracks:
            self._mean[self._state != _TRACKED, 7] = 0.0  # a lost track keeps its place, not its growth
            self._mean, self._cov = kalman.predict(self._mean, self._cov)
        iou = iou_matrix(kalman.xyah_to_xyxy(self._mean[:, :4]), boxes)

        high = (scores >= cfg.high_threshold).nonzero()[0]
        low = ((scores >= cfg.low_threshold) & (scores < cfg.high_threshold)).nonzero()[0]
        confirmed = self._ids > 0
        pool = confirmed.nonzero()[0]                     # tracked + lost confirmed tracks
        matched_t, matched_d = [], []

        # 1. high-score detections against every confirmed track
        fused = scores if cfg.fuse_score else None
        r, c = _match(_cost(iou, pool, high, fused), cfg.match_threshold)
        matched_t.append(pool[r])
        matched_d.append(high[c])
        rest_tracks = _without(pool, r)
        rest_high = _without(high, c)

        # 2. low-score detections against the tracked (not lost) tracks left
        rest_tracked = rest_tracks[self._state[rest_tracks] == _TRACKED]
        newly_lost = rest_tracked
        if rest_tracked.size and low.size:
            r2, c2 = _match(_cost(iou, rest_tracked, low), cfg.low_match_threshold)
            matched_t.append(rest_tracked[r2])
            matched_d.append(low[c2])
            newly_lost = _without(rest_tracked, r2)

        # 3. unconfirmed tracks against the high-score detections left
        unconfirmed = (~confirmed).nonzero()[0]
        dead_unconfirmed, new_dets = unconfirmed, rest_high
        if unconfirmed.size and rest_high.size:
            r3, c3 = _match(_cost(iou, unconfirmed, rest_high, fused), cfg.unconfirmed_match_threshold)
            matched_t.append(unconfirmed[r3])
            matched_d.append(rest_high[c3])
            dead_unconfirmed = _without(unconfirmed, r3)
            new_dets = _without(rest_high, c3)
        new_dets = new_dets[scores[new_dets] >= cfg.new_track_threshold]

        t_idx = np.concatenate(matched_t).astype(np.intp)
        d_idx = np.concatenate(matched_d).astype(np.intp)
        if t_idx.size:
            meas = kalman.xyxy_to_xyah(boxes[d_idx])
            self._mean[t_idx], self._cov[t_idx] = kalman.update(self._mean[t_idx], self._cov[t_idx], meas)
            self._state[t_idx] = _TRACKED
            self._last[t_idx] = self.frame
            fresh = t_idx[self._ids[t_idx] == 0]
            self._ids[fresh] = self._allocate(fresh.size)
        self._state[newly_lost] = _LOST

        keep = np.zeros(n_tracks, bool)
        keep[dead_unconfirmed] = True
        np.logical_not(keep, out=keep)
        keep &= ~((self._state == _LOST) & (self.frame - self._last > cfg.track_buffer))
        keep &= self._not_duplicate()
        out[d_idx] = np.where(keep[t_idx], self._ids[t_idx], -1)
        self._compact(keep)

        if new_dets.size:  # 5. new tracks (confirmed at once in the first frame after a reset)
            mean, cov = kalman.initiate(kalman.xyxy_to_xyah(boxes[new_dets]))
            ids = self._allocate(new_dets.size) if self.frame == 1 else np.zeros(new_dets.size, np.int64)
            self._append(mean, cov, ids)
            out[new_dets] = np.where(ids > 0, ids, -1)
        return out

    # -- bookkeeping -------------------------------------------------------------------------------------------------
    def _allocate(self, n: int) -> np.ndarray:
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        return ids

    def _not_duplicate(self) -> np.ndarray:
        """False for the shorter-lived of a tracked/lost pair that overlaps (IoU > 0.85)."""
        keep = np.ones(self._ids.shape[0], bool)
        lost = (self._state == _LOST).nonzero()[0]
        if lost.size == 0:
            return keep
        tracked = ((self._state == _TRACKED) & (self._ids > 0)).nonzero()[0]
        if tracked.size == 0:
            return keep
        boxes = kalman.xyah_to_xyxy(self._mean[:, :4])
        ti, li = (iou_matrix(boxes[tracked], boxes[lost]) > _DUPLICATE_IOU).nonzero()
        if ti.size:
            t, lo = tracked[ti], lost[li]
            age = self._last - self._start
            lost_younger = age[t] > age[lo]
            keep[lo[lost_younger]] = False
            keep[t[~lost_younger]] = False
        return keep

    def _compact(self, keep: np.ndarray) -> None:
        if keep.all():
            return
        self._mean, self._cov = self._mean[keep], self._cov[keep]
        self._ids, self._state = self._ids[keep], self._state[keep]
        self._start, self._last = self._start[keep], self._last[keep]

    def _append(self, mean: np.ndarray, cov: np.ndarray, ids: np.ndarray) -> None:
        n = ids.shape[0]
        self._mean = np.concatenate([self._mean, mean])
        self._cov = np.concatenate([self._cov, cov])
        self._ids = np.concatenate([self._ids, ids])
        self._state = np.concatenate([self._state, np.full(n, _TRACKED, np.int8)])
        self._start = np.concatenate([self._start, np.full(n, self.frame, np.int64)])
        self._last = np.concatenate([self._last, np.full(n, self.frame, np.int64)])
