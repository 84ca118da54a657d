"""io.image under malformed and odd-but-legal messages: only ImageConversionError ever escapes (issue #18).

The padded-step cases are the ones that killed the detector and depth nodes (a cv2.error from a row stride that is not
a multiple of the element size); the compressed cases are headers that made cv2.imdecode raise or allocate gigabytes.
"""

import struct
import zlib
from types import SimpleNamespace

import numpy as np
import pytest

from axcl_ros.io.compressed_image import (
    array_to_compressed,
    compressed_dimensions,
    compressed_to_bgr8,
)
from axcl_ros.io.image import (
    DEFAULT_MAX_PIXELS,
    ImageConversionError,
    image_msg_to_array,
    to_bgr8,
)
from axcl_ros_testing.fuzz import compressed_cases, image_cases


def _raw(encoding, height, width, step, big=0, fill=None):
    data = bytes(step * height) if fill is None else bytes((fill * (step * height // len(fill) + 1))[: step * height])
    return SimpleNamespace(encoding=encoding, height=height, width=width, step=step, is_bigendian=big, data=data)


# (encoding, height, width, step): legal row padding that is not a multiple of the element size (issue #18 items 1, 4)
PADDED = [("mono16", 8, 8, 17), ("16UC1", 8, 8, 17), ("bgr16", 1, 120, 721), ("32SC1", 97, 8, 395),
          ("mono16", 120, 320, 647), ("64FC1", 7, 15, 125), ("rgb16", 16, 2, 17), ("32FC1", 3, 31, 129),
          ("64FC1", 2, 3, 25), ("32FC1", 240, 1, 6)]


@pytest.mark.parametrize("encoding,height,width,step", PADDED)
def test_row_padding_not_a_multiple_of_the_element_size_is_decoded(encoding, height, width, step):
    bgr = to_bgr8(_raw(encoding, height, width, step, fill=b"\x01\x02\x03\x04\x05"))
    assert bgr.shape == (height, width, 3) and bgr.dtype == np.uint8


def test_padded_rows_keep_their_values():
    width, step = 3, 7  # mono16, one pad byte per row
    rows = [struct.pack("<3H", 257 * (r + 1), 0, 65535) + b"\xee" for r in range(2)]
    decoded = image_msg_to_array(SimpleNamespace(encoding="mono16", height=2, width=width, step=step,
                                                 is_bigendian=0, data=b"".join(rows)))
    assert decoded.array.tolist() == [[257, 0, 65535], [514, 0, 65535]]


def test_misaligned_data_start_is_decoded():
    raw = bytes(1) + struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)
    decoded = image_msg_to_array(SimpleNamespace(encoding="32FC1", height=2, width=2, step=8, is_bigendian=0,
                                                 data=memoryview(raw)[1:]))
    assert decoded.array.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert to_bgr8(SimpleNamespace(encoding="32FC1", height=2, width=2, step=8, is_bigendian=0,
                                   data=memoryview(raw)[1:])).shape == (2, 2, 3)


def _png(width, height, idat=b""):
    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(idat)) + chunk(b"IEND", b""))


def test_png_header_claiming_65535_squared_is_refused_before_decoding():
    data = _png(65535, 65535)
    assert len(data) < 80
    with pytest.raises(ImageConversionError, match="65535x65535.*cap"):
        compressed_to_bgr8(SimpleNamespace(format="png", data=data))


def test_all_zero_16384_squared_png_is_refused_from_its_header():
    # the 261 kB PNG decoded to 268 Mpx and 1 GB; its header alone decides now (zlib of zeros, built small)
    data = _png(16384, 16384, b"\x00" * 4096)
    with pytest.raises(ImageConversionError, match="16384x16384"):
        compressed_to_bgr8(SimpleNamespace(format="png", data=data))


@pytest.mark.parametrize("fmt", ["jpeg", "png", "", "rgb8; jpeg compressed bgr8"])
def test_openexr_bytes_are_refused_whatever_the_format_says(fmt):
    exr = b"\x76\x2f\x31\x01" + bytes(60)
    with pytest.raises(ImageConversionError, match="data"):
        compressed_to_bgr8(SimpleNamespace(format=fmt, data=exr))


def test_cap_is_a_parameter_and_the_default_fits_8k_cameras():
    jpeg = array_to_compressed(np.zeros((48, 64, 3), np.uint8), "jpeg")["data"]
    assert compressed_dimensions(jpeg, "jpeg") == (64, 48)
    assert compressed_to_bgr8(SimpleNamespace(format="jpeg", data=jpeg)).shape == (48, 64, 3)
    with pytest.raises(ImageConversionError, match="3072 pixels, above the cap of 3000"):
        compressed_to_bgr8(SimpleNamespace(format="jpeg", data=jpeg), max_pixels=3000)
    with pytest.raises(ImageConversionError, match="cap of 100"):
        to_bgr8(_raw("bgr8", 10, 11, 33), max_pixels=100)
    assert 7680 * 4320 <= DEFAULT_MAX_PIXELS < 16384 * 16384
    assert compressed_dimensions(_png(7680, 4320), "png") == (7680, 4320)


@pytest.mark.parametrize("data", [b"\xff\xd8", b"\xff\xd8\xff\xe0\x00\x01", b"\xff\xd8\xff\xda\x00\x04abcd",
                                  b"\xff\xd8\x00\x00\x00\x00\x00\x00", b"\xff\xd8" + b"\xff\xe1\xff\xff" + bytes(10)])
def test_truncated_or_broken_jpeg_headers_are_refused(data):
    with pytest.raises(ImageConversionError):
        compressed_to_bgr8(SimpleNamespace(format="jpeg", data=data))


def test_generated_images_raise_only_image_conversion_errors():
    """Seeded sweep over every encoding × sizes × steps × byte order × data length × alignment (testing.fuzz)."""
    bad = good = 0
    for case in image_cases(seed=18, count=3000):
        try:
            to_bgr8(case.msg, max_pixels=case.max_pixels)
        except ImageConversionError:
            assert case.bad, f"good case refused: {case.describe}"
            bad += 1
        else:
            assert not case.bad, f"bad case accepted: {case.describe}"
            good += 1
    assert bad > 500 and good > 500


def test_generated_compressed_images_raise_only_image_conversion_errors():
    """Seeded sweep over JPEG/PNG layouts × format strings × header mutations (testing.fuzz)."""
    bad = good = 0
    for case in compressed_cases(seed=18, count=600):
        try:
            compressed_to_bgr8(case.msg)
        except ImageConversionError:
            assert case.bad, f"good case refused: {case.describe}"
            bad += 1
        else:
            assert not case.bad, f"bad case accepted: {case.describe}"
            good += 1
    assert bad > 200 and good > 100
