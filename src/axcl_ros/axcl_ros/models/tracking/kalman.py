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


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """K×4 ``x1, y1, x2, y2`` → K×4 ``cx, cy, w/h, h`` (float64)."""
    b = np.asarray(boxes, dtype=np.float64)
    w = b[:, 2] - b[:, 0]
    h = np.maximum(b[:, 3] - b[:, 1], 1e-6)
    return np.column_stack([b[:, 0] + w / 2, b[:, 1] + h / 2, w / h, h])


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """K×4 ``cx, cy, w/h, h`` → K×4 ``x1, y1, x2, y2``."""
    w = xyah[:, 2] * xyah[:, 3]
    h = xyah[:, 3]
    return np.column_stack([xyah[:, 0] - w / 2, xyah[:, 1] - h / 2, xyah[:, 0] + w / 2, xyah[:, 1] + h / 2])


def initiate(xyah: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """New tracks from K measurements: zero velocity, uncertainty scaled by the box height."""
    k = xyah.shape[0]
    mean = np.zeros((k, 8))
    mean[:, :4] = xyah
    h = xyah[:, 3]
    std = np.column_stack([2 * STD_POSITION * h, 2 * STD_POSITION * h, np.full(k, 1e-2), 2 * STD_POSITION * h,
                           10 * STD_VELOCITY * h, 10 * STD_VELOCITY * h, np.full(k, 1e-5), 10 * STD_VELOCITY * h])
    cov = np.zeros((k, 8, 8))
    idx = np.arange(8)
    cov[:, idx, idx] = std ** 2
    return mean, cov


def predict(mean: np.ndarray, cov: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """One time step for every track (new arrays)."""
    h = mean[:, 3]
    k = mean.shape[0]
    std = np.column_stack([STD_POSITION * h, STD_POSITION * h, np.full(k, 1e-2), STD_POSITION * h,
                           STD_VELOCITY * h, STD_VELOCITY * h, np.full(k, 1e-5), STD_VELOCITY * h])
    new_mean = mean @ _FT
    new_cov = _F @ cov @ _FT
    idx = np.arange(8)
    new_cov[:, idx, idx] += std ** 2
    return new_mean, new_cov


def update(mean: np.ndarray, cov: np.ndarray, xyah: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Correct K tracks with their K measurements (new arrays)."""
    h = mean[:, 3]
    k = mean.shape[0]
    std = np.column_stack([STD_POSITION * h, STD_POSITION * h, np.full(k, 1e-1), STD_POSITION * h])
    s = cov[:, :4, :4].copy()
    idx = np.arange(4)
    s[:, idx, idx] += std ** 2
    # gain K = P H^T S^-1; S is symmetric, so K^T = S^-1 (H P)
    gain = np.linalg.solve(s, cov[:, :4, :]).transpose(0, 2, 1)
    innovation = xyah - mean[:, :4]
    new_mean = mean + np.einsum("kij,kj->ki", gain, innovation)
    new_cov = cov - gain @ s @ gain.transpose(0, 2, 1)
    return new_mean, new_cov
