"""Batched constant-velocity Kalman filter on boxes ``(cx, cy, a, h)`` (a = w / h), the motion model of SORT/ByteTrack.

State per track: ``cx, cy, a, h, vcx, vcy, va, vh`` (``mean`` K×8). Noise is proportional to the box height (weights
1/20 for position, 1/160 for velocity), as in ByteTrack.

With this model every noise matrix is diagonal, the transition only couples a coordinate with its own velocity and
the measurement reads the positions: the 8×8 covariance never leaves four independent 2×2 blocks (position,
velocity of cx, cy, a, h), whatever the sequence of predicts and updates. So it is kept as those blocks, ``cov``
K×3×4 = (var position, cov position·velocity, var velocity) per coordinate, and predict/update are a dozen
element-wise operations on K×4 arrays: the same numbers as the dense 8×8 filter (``dense_covariance`` rebuilds it;
the tests compare both) without any small matrix product or solve.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

STD_POSITION = 1.0 / 20.0
STD_VELOCITY = 1.0 / 160.0

# per-component variances: weight² · h² for positions/velocities, constants for the aspect ratio
_P = STD_POSITION
_V = STD_VELOCITY
_INIT_H = np.array([2 * _P, 2 * _P, 0, 2 * _P, 10 * _V, 10 * _V, 0, 10 * _V]) ** 2
_INIT_C = np.array([0, 0, 1e-2, 0, 0, 0, 1e-5, 0]) ** 2
_PRED_H = np.array([_P, _P, 0, _P, _V, _V, 0, _V]) ** 2
_PRED_C = np.array([0, 0, 1e-2, 0, 0, 0, 1e-5, 0]) ** 2
_MEAS_H = np.array([_P, _P, 0, _P]) ** 2
_MEAS_C = np.array([0, 0, 1e-1, 0]) ** 2

_XX, _XV, _VV = 0, 1, 2  # rows of a covariance block stack


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
    cov = np.zeros((k, 3, 4))
    h2 = (xyah[:, 3] ** 2)[:, None]
    cov[:, _XX] = h2 * _INIT_H[:4] + _INIT_C[:4]
    cov[:, _VV] = h2 * _INIT_H[4:] + _INIT_C[4:]
    return mean, cov


def predict(mean: np.ndarray, cov: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """One time step for every track (new arrays): x += v; P = F P Fᵀ + Q (Q from the height before the step)."""
    h2 = (mean[:, 3] ** 2)[:, None]
    new_mean = mean.copy()
    new_mean[:, :4] += mean[:, 4:]
    xx, xv, vv = cov[:, _XX], cov[:, _XV], cov[:, _VV]
    new_cov = np.empty_like(cov)
    new_cov[:, _XV] = xv + vv
    new_cov[:, _XX] = xx + xv + new_cov[:, _XV] + (h2 * _PRED_H[:4] + _PRED_C[:4])
    new_cov[:, _VV] = vv + (h2 * _PRED_H[4:] + _PRED_C[4:])
    return new_mean, new_cov


def update(mean: np.ndarray, cov: np.ndarray, xyah: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Correct K tracks with their K measurements (new arrays): gain ``(P_xx, P_xv) / S`` per coordinate."""
    xx, xv, vv = cov[:, _XX], cov[:, _XV], cov[:, _VV]
    s = xx + ((mean[:, 3] ** 2)[:, None] * _MEAS_H + _MEAS_C)
    gain_x = xx / s
    gain_v = xv / s
    innovation = xyah - mean[:, :4]
    new_mean = np.empty_like(mean)
    new_mean[:, :4] = mean[:, :4] + gain_x * innovation
    new_mean[:, 4:] = mean[:, 4:] + gain_v * innovation
    new_cov = np.empty_like(cov)
    new_cov[:, _XX] = xx - gain_x * xx
    new_cov[:, _XV] = xv - gain_x * xv
    new_cov[:, _VV] = vv - gain_v * xv
    return new_mean, new_cov


def dense_covariance(cov: np.ndarray) -> np.ndarray:
    """The K×8×8 covariance of the blocks (for inspection and tests)."""
    k = cov.shape[0]
    out = np.zeros((k, 8, 8))
    i = np.arange(4)
    out[:, i, i] = cov[:, _XX]
    out[:, i, i + 4] = cov[:, _XV]
    out[:, i + 4, i] = cov[:, _XV]
    out[:, i + 4, i + 4] = cov[:, _VV]
    return out
