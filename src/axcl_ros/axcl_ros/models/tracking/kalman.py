"""Batched constant-velocity Kalman filter on boxes ``(cx, cy, a, h)`` (a = w / h), the motion model of SORT/ByteTrack.

State per track: ``cx, cy, a, h, vcx, vcy, va, vh``. Every operation works on stacks of tracks at once
(``mean`` K×8, ``cov`` K×8×8), so a frame with dozens of tracks costs a few numpy calls, not a Python loop.
Noise is proportional to the box height (weights 1/20 for position, 1/160 for velocity), as in ByteTrack.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

STD_POSITION = 1.0 / 20.0
STD_VELOCITY = 1.0 / 160.0

_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_FT = np.ascontiguousarray(_F.T)


# per-component standard deviations: weight · h for positions/velocities, constants for the aspect ratio
_P = STD_POSITION
_V = STD_VELOCITY
_INIT_H = np.array([2 * _P, 2 * _P, 0, 2 * _P, 10 * _V, 10 * _V, 0, 10 * _V]) ** 2
_INIT_C = np.array([0, 0, 1e-2, 0, 0, 0, 1e-5, 0]) ** 2
_PRED_H = np.array([_P, _P, 0, _P, _V, _V, 0, _V]) ** 2
_PRED_C = np.array([0, 0, 1e-2, 0, 0, 0, 1e-5, 0]) ** 2
_MEAS_H = np.array([_P, _P, 0, _P]) ** 2
_MEAS_C = np.array([0, 0, 1e-1, 0]) ** 2
_I8 = np.arange(8)
_I4 = np.arange(4)


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """K×4 ``x1, y1, x2, y2`` → K×4 ``cx, cy, w/h, h`` (float64)."""
    b = np.asarray(boxes, dtype=np.float64)
    out = np.empty((b.shape[0], 4))
    out[:, 3] = np.maximum(b[:, 3] - b[:, 1], 1e-6)
    out[:, 2] = (b[:, 2] - b[:, 0]) / out[:, 3]
    out[:, :2] = (b[:, :2] + b[:, 2:]) * 0.5
    return out


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """K×4 ``cx, cy, w/h, h`` → K×4 ``x1, y1, x2, y2``."""
    half = xyah[:, 2:4] * 0.5
    half[:, 0] *= xyah[:, 3]
    out = np.empty((xyah.shape[0], 4))
    out[:, :2] = xyah[:, :2] - half
    out[:, 2:] = xyah[:, :2] + half
    return out


def initiate(xyah: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """New tracks from K measurements: zero velocity, uncertainty scaled by the box height."""
    k = xyah.shape[0]
    mean = np.zeros((k, 8))
    mean[:, :4] = xyah
    cov = np.zeros((k, 8, 8))
    cov[:, _I8, _I8] = np.outer(xyah[:, 3] ** 2, _INIT_H) + _INIT_C
    return mean, cov


def predict(mean: np.ndarray, cov: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """One time step for every track (new arrays)."""
    new_mean = mean @ _FT
    new_cov = _F @ cov @ _FT
    new_cov[:, _I8, _I8] += np.outer(mean[:, 3] ** 2, _PRED_H) + _PRED_C
    return new_mean, new_cov


def update(mean: np.ndarray, cov: np.ndarray, xyah: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Correct K tracks with their K measurements (new arrays)."""
    s = cov[:, :4, :4].copy()
    s[:, _I4, _I4] += np.outer(mean[:, 3] ** 2, _MEAS_H) + _MEAS_C
    # gain K = P H^T S^-1; S is symmetric, so K^T = S^-1 (H P)
    gain_t = np.linalg.solve(s, cov[:, :4, :])
    gain = gain_t.transpose(0, 2, 1)
    new_mean = mean + (gain @ (xyah - mean[:, :4])[:, :, None])[:, :, 0]
    new_cov = cov - gain @ s @ gain_t
    return new_mean, new_cov
