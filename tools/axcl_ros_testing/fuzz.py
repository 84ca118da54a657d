"""Seeded generators of malformed (and odd-but-legal) sensor messages for the fuzz suite (issue #18).

Each case carries the message ``fields`` (usable as ``Image(**fields)`` or as a duck-typed namespace through ``msg``)
and ``bad``: whether the mutation applied makes it invalid *by construction*, an oracle independent of the code under
test. Good cases deliberately include legal oddities: row padding not a multiple of the element size, big-endian data,
minimal sizes. The same seed gives the same cases on every machine.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Dict, Iterator, Optional

import numpy as np

from axcl_ros.io.compressed_image import array_to_compressed
from axcl_ros.io.image import DEFAULT_MAX_PIXELS

# encodings to_bgr8 converts (written out here, not imported, so the oracle does not follow the code under test)
CONVERTIBLE = {  # encoding: (element bytes, channels, kind)
    "rgb8": (1, 3, ""), "bgr8": (1, 3, ""), "rgba8": (1, 4, ""), "bgra8": (1, 4, ""), "mono8": (1, 1, ""),
    "8UC1": (1, 1, ""), "8UC3": (1, 3, ""), "8UC4": (1, 4, ""), "mono16": (2, 1, ""), "16UC1": (2, 1, ""),
    "16SC1": (2, 1, ""), "32SC1": (4, 1, ""), "32FC1": (4, 1, ""), "64FC1": (8, 1, ""), "bgr16": (2, 3, ""),
    "rgb16": (2, 3, ""), "16UC3": (2, 3, ""), "bayer_rggb8": (1, 1, ""), "bayer_bggr8": (1, 1, ""),
    "bayer_gbrg8": (1, 1, ""), "bayer_grbg8": (1, 1, ""), "yuv422": (1, 2, "even_w"), "uyvy": (1, 2, "even_w"),
    "yuv422_yuy2": (1, 2, "even_w"), "yuyv": (1, 2, "even_w"), "nv12": (1, 1, "nv"), "nv21": (1, 1, "nv"),
}
# known to the ROS world but not convertible to BGR, or not encodings at all
UNCONVERTIBLE = ("8SC1", "16UC2", "32FC3", "64FC4", "8UC2", "bgr9", "", "bgr 8", "jpeg", "mono12", "\u00e9", "16UC5")

IMAGE_MUTATIONS = ("none", "none", "none", "encoding", "step_short", "data_short", "zero_width", "zero_height",
                   "odd_size", "over_cap")


@dataclass
class FuzzCase:
    """One generated message: ``fields`` for the ROS message constructor, ``bad`` by construction."""

    kind: str
    fields: Dict[str, Any]
    bad: bool
    mutation: str
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def msg(self) -> SimpleNamespace:
        """The fields as a duck-typed message."""
        return SimpleNamespace(**self.fields)

    @property
    def describe(self) -> str:
        """Short text for assertion messages (no data bytes)."""
        shown = {k: v for k, v in self.fields.items() if k != "data"}
        return f"{self.kind}/{self.mutation} {shown} data={len(self.fields.get('data', b''))}B"


def image_cases(seed: int, count: int, *, max_side: int = 9, cap: Optional[int] = None) -> Iterator[FuzzCase]:
    """``count`` raw Image cases: every convertible encoding × sizes × padding × byte order × one mutation.

    ``cap``: the receiver's fixed pixel cap (``max_image_pixels``; must exceed ``max_side²``): ``over_cap`` cases then
    grow the height past it; without it each ``over_cap`` case carries its own ``max_pixels`` just below its size.
    """
    rng = np.random.default_rng(seed)
    encodings = sorted(CONVERTIBLE)
    for i in range(count):
        mutation = IMAGE_MUTATIONS[int(rng.integers(len(IMAGE_MUTATIONS)))]
        enc = encodings[i % len(encodings)]
        size, channels, rule = CONVERTIBLE[enc]
        height, width = int(rng.integers(1, max_side + 1)), int(rng.integers(1, max_side + 1))
        if rule == "even_w":
            width += width % 2
        if rule == "nv":
            width, height = width + width % 2, height + height % 2
        pad = int(rng.choice([0, 0, 1, 3, size + 1]))
        step = width * size * channels + pad
        big = int(rng.integers(2))
        max_pixels = DEFAULT_MAX_PIXELS
        if mutation == "encoding":
            enc = UNCONVERTIBLE[int(rng.integers(len(UNCONVERTIBLE)))]
        elif mutation == "step_short":
            step = int(rng.integers(0, width * size * channels))
        elif mutation == "zero_width":
            width = 0
        elif mutation == "zero_height":
            height = 0
        elif mutation == "odd_size":
            if rule == "":
                mutation = "none"
            elif rule == "even_w" or rng.integers(2):
                width += 1
            else:
                height += 1
        elif mutation == "over_cap" and cap is None:
            max_pixels = width * height - 1
        elif mutation == "over_cap":
            height = cap // width + 1
            height += height % 2 if rule == "nv" else 0
        if cap is not None:
            max_pixels = cap
        rows = height * 3 // 2 if rule == "nv" else height
        length = step * rows
        if mutation == "data_short":
            length = int(rng.integers(0, max(1, length)))
        elif rng.integers(4) == 0:
            length += int(rng.integers(1, 64))  # trailing bytes are legal
        data = rng.integers(0, 256, max(0, length), dtype=np.uint8).tobytes()
        fields = dict(height=height, width=width, encoding=enc, is_bigendian=big, step=step, data=data)
        yield FuzzCase("Image", fields, mutation != "none", mutation, max_pixels)


def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


COMPRESSED_MUTATIONS = ("none", "none", "none", "empty", "truncated_header", "random_bytes", "openexr", "tiff",
                        "huge_png_header", "zero_png_header", "bad_format")


def compressed_cases(seed: int, count: int) -> Iterator[FuzzCase]:
    """``count`` CompressedImage cases: JPEG/PNG of several layouts and format strings, one mutation each."""
    rng = np.random.default_rng(seed)
    layouts = [("jpeg", np.uint8, 3), ("jpeg", np.uint8, 1), ("png", np.uint8, 3), ("png", np.uint8, 1),
               ("png", np.uint8, 4), ("png", np.uint16, 1), ("png", np.uint16, 3)]
    for i in range(count):
        mutation = COMPRESSED_MUTATIONS[int(rng.integers(len(COMPRESSED_MUTATIONS)))]
        kind, dtype, channels = layouts[i % len(layouts)]
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        shape = (h, w) if channels == 1 else (h, w, channels)
        top = 256 if dtype == np.uint8 else 65536
        arr = rng.integers(0, top, shape).astype(dtype)
        fields = array_to_compressed(arr, kind)
        fmt = [fields["format"], kind, ""][int(rng.integers(3))]
        data = fields["data"]
        if mutation == "empty":
            data = b""
        elif mutation == "truncated_header":
            data = data[: int(rng.integers(1, 20))]
        elif mutation == "random_bytes":
            data = b"\x00" + rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8).tobytes()
        elif mutation == "openexr":
            data = b"\x76\x2f\x31\x01" + data
        elif mutation == "tiff":
            data = b"II*\x00" + data
        elif mutation in ("huge_png_header", "zero_png_header"):
            side = 65535 if mutation == "huge_png_header" else 0
            data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                    + _png_chunk(b"IDAT", zlib.compress(bytes(64))) + _png_chunk(b"IEND", b""))
            fmt = "png"
        elif mutation == "bad_format":
            fmt = ["tiff", "bmp", "exr", "webp", "raw"][int(rng.integers(5))]
        yield FuzzCase("CompressedImage", {"format": fmt, "data": bytes(data)}, mutation != "none", mutation)


CAMERA_INFO_MUTATIONS = ("none", "none", "none", "zero_width", "zero_height", "fx", "fy", "k_nan", "k_inf",
                         "k_last_row", "p_nan", "r_inf", "roi_outside", "binning")


def camera_info_cases(seed: int, count: int) -> Iterator[FuzzCase]:
    """``count`` CameraInfo cases: calibrated pinholes with ROI/binning/distortion variations, one mutation each."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        mutation = CAMERA_INFO_MUTATIONS[int(rng.integers(len(CAMERA_INFO_MUTATIONS)))]
        width, height = int(rng.integers(8, 2000)), int(rng.integers(8, 2000))
        fx, fy = float(rng.uniform(10, 2000)), float(rng.uniform(10, 2000))
        cx, cy = float(rng.uniform(0, width)), float(rng.uniform(0, height))
        k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
        p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0] if rng.integers(4) else [0.0] * 12
        r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        roi = dict(x_offset=0, y_offset=0, width=0, height=0, do_rectify=False)
        if rng.integers(3) == 0:
            rw, rh = int(rng.integers(1, width + 1)), int(rng.integers(1, height + 1))
            roi.update(x_offset=int(rng.integers(0, width - rw + 1)), y_offset=int(rng.integers(0, height - rh + 1)),
                       width=rw, height=rh)
        limit_w = roi["width"] or width
        limit_h = roi["height"] or height
        binning_x, binning_y = int(rng.integers(0, min(4, limit_w) + 1)), int(rng.integers(0, min(4, limit_h) + 1))
        d = [float(v) for v in rng.normal(0, 0.1, int(rng.choice([0, 4, 5, 8, 14])))]
        model = ["plumb_bob", "rational_polynomial", "equidistant", "", "unknown_model"][int(rng.integers(5))]
        if mutation == "zero_width":
            width = 0
        elif mutation == "zero_height":
            height = 0
        elif mutation == "fx":
            k[0] = float(rng.choice([0.0, -fx]))
        elif mutation == "fy":
            k[4] = float(rng.choice([0.0, -fy]))
        elif mutation == "k_nan":
            k[int(rng.integers(9))] = float("nan")
        elif mutation == "k_inf":
            k[int(rng.integers(9))] = float(rng.choice([np.inf, -np.inf]))
        elif mutation == "k_last_row":
            k[6 + int(rng.integers(3))] += 0.5
        elif mutation == "p_nan":
            p[int(rng.integers(12))] = float("nan")
        elif mutation == "r_inf":
            r[int(rng.integers(9))] = float("inf")
        elif mutation == "roi_outside":
            rw, rh = int(rng.integers(1, width + 1)), int(rng.integers(1, height + 1))
            roi.update(x_offset=width - rw + int(rng.integers(1, 50)), y_offset=0, width=rw, height=rh)
        elif mutation == "binning":
            binning_x = limit_w + int(rng.integers(1, 10))
        fields = dict(width=width, height=height, k=k, p=p, r=r, d=d, distortion_model=model,
                      binning_x=binning_x, binning_y=binning_y)
        yield FuzzCase("CameraInfo", fields, mutation != "none", mutation, extra={"roi": roi})


AUDIO_MUTATIONS = ("none", "none", "none", "rate_zero", "rate_low", "rate_high", "rate_odd", "channels_zero",
                   "format", "empty", "partial_frame", "nonfinite")
STANDARD_RATES = (8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000)


def audio_cases(seed: int, count: int) -> Iterator[FuzzCase]:
    """``count`` AudioChunk cases (S16LE/F32LE, 1-4 channels, standard rates), one mutation each."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        mutation = AUDIO_MUTATIONS[int(rng.integers(len(AUDIO_MUTATIONS)))]
        rate = int(rng.choice(STANDARD_RATES))
        channels = int(rng.integers(1, 5))
        fmt = int(rng.integers(2))
        frames = int(rng.integers(1, rate // 10 + 1))
        if fmt == 0:
            data = rng.integers(-32768, 32768, frames * channels).astype("<i2").tobytes()
        else:
            data = rng.uniform(-1.5, 1.5, frames * channels).astype("<f4").tobytes()
        if mutation == "rate_zero":
            rate = 0
        elif mutation == "rate_low":
            rate = int(rng.integers(1, 1000))
        elif mutation == "rate_high":
            rate = int(rng.integers(384001, 2**32))
        elif mutation == "rate_odd":
            rate = int(rng.choice([383999, 383993, 7999, 44101]))
        elif mutation == "channels_zero":
            channels = 0
        elif mutation == "format":
            fmt = int(rng.integers(2, 256))
        elif mutation == "empty":
            data = b""
        elif mutation == "partial_frame":
            data = data + bytes(int(rng.integers(1, (2 if fmt == 0 else 4) * channels)))
        elif mutation == "nonfinite":
            fmt = 1
            samples = rng.uniform(-1, 1, frames * channels).astype("<f4")
            samples[int(rng.integers(samples.size))] = float(rng.choice([np.nan, np.inf, -np.inf]))
            data = samples.tobytes()
        fields = dict(sample_rate=rate, channels=channels, sample_format=fmt, data=data)
        yield FuzzCase("AudioChunk", fields, mutation != "none", mutation)


#: pixel cap the DDS fuzz receiver is configured with (over_cap image cases exceed it, all others fit)
DDS_IMAGE_CAP = 100
GENERATORS = {"image": lambda seed, count: image_cases(seed, count, cap=DDS_IMAGE_CAP),
              "compressed": compressed_cases, "camera_info": camera_info_cases, "audio": audio_cases}


def sequence(kind: str, seed: int, count: int) -> list:
    """The cases of ``kind`` with a known-good case of the same kind after every bad one (what the sender sends)."""
    cases = list(GENERATORS[kind](seed, count))
    good = [c for c in cases if not c.bad]
    out = []
    for i, case in enumerate(cases):
        out.append(case)
        if case.bad and good:
            out.append(good[i % len(good)])
    return out
