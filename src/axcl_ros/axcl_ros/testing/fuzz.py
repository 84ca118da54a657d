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

from ..io.image import DEFAULT_MAX_PIXELS, array_to_compressed

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


def image_cases(seed: int, count: int, *, max_side: int = 9) -> Iterator[FuzzCase]:
    """``count`` raw Image cases: every convertible encoding × sizes × padding × byte order × one mutation."""
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
        elif mutation == "over_cap":
            max_pixels = width * height - 1
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
