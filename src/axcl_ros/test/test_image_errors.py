"""io.image: malformed messages and arrays raise ImageConversionError naming the field and the values."""

from types import SimpleNamespace

import numpy as np
import pytest

from axcl_ros.io.compressed_image import (
    array_to_compressed,
    compressed_to_array,
)
from axcl_ros.io.image import (
    ImageConversionError,
    array_to_image_fields,
    image_msg_to_array,
    to_bgr8,
)


def image(**over):
    fields = dict(height=4, width=6, encoding="bgr8", is_bigendian=0, step=18, data=bytes(4 * 18))
    fields.update(over)
    return SimpleNamespace(**fields)


class NoEncoding:
    height, width, step, is_bigendian, data = 2, 2, 6, 0, bytes(12)


JPEG = array_to_compressed(np.zeros((8, 8, 3), np.uint8), "jpeg")["data"]

IMAGE_CASES = [
    # (id, message, field, text that must appear in the message)
    ("unknown encoding", image(encoding="bgr9"), "encoding", "'bgr9'"),
    ("encoding not a string", image(encoding=None), "encoding", "None"),
    ("missing field", NoEncoding(), "encoding", "no field 'encoding'"),
    ("data shorter than step*height", image(data=bytes(4 * 18 - 1)), "data", "71 bytes"),
    ("step < width*bpp", image(step=17), "step", "17"),
    ("step < width*bpp 16-bit", image(encoding="mono16", step=11, data=bytes(44)), "step", "6 × 2 = 12"),
    ("zero width", image(width=0), "width", "0"),
    ("zero height", image(height=0), "height", "0"),
    ("negative height", image(height=-3), "height", "-3"),
    ("float width", image(width=6.0), "width", "6.0"),
    ("odd width yuv422", image(encoding="yuv422", width=5, step=10, data=bytes(40)), "width", "5"),
    ("odd width yuyv", image(encoding="yuv422_yuy2", width=7, step=14, data=bytes(56)), "width", "7"),
    ("odd height nv12", image(encoding="nv12", height=3, width=6, step=6, data=bytes(60)), "height", "6x3"),
    ("nv12 data misses chroma", image(encoding="nv12", height=4, width=6, step=6, data=bytes(24)), "data",
     "step × rows = 6 × 6 = 36"),
    ("data of wrong type", image(data="not bytes"), "data", "str"),
    ("array.array of wrong typecode", image(data=__import__("array").array("H", bytes(72))), "data", "'H'"),
    ("step not an int", image(step="18"), "step", "'18'"),
]


@pytest.mark.parametrize("case", IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_bad_image_messages(case):
    _, msg, field, text = case
    with pytest.raises(ImageConversionError) as info:
        image_msg_to_array(msg)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert text in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ImageConversionError):
        to_bgr8(msg)


COMPRESSED_CASES = [
    ("corrupt jpeg", SimpleNamespace(format="jpeg", data=b"\xff\xd8" + b"garbage" * 20), "data", "jpeg"),
    ("truncated header", SimpleNamespace(format="png", data=b"\x89PNG\r\n"), "data", "png"),
    ("empty jpeg", SimpleNamespace(format="jpeg", data=b""), "data", "empty"),
    ("unsupported format", SimpleNamespace(format="tiff", data=JPEG), "format", "'tiff'"),
    ("unsupported transport format", SimpleNamespace(format="rgb8; webp compressed rgb8", data=JPEG), "format",
     "webp"),
    ("sniffing finds nothing", SimpleNamespace(format="", data=b"BM" + bytes(50)), "data", "neither JPEG nor PNG"),
    ("format not a string", SimpleNamespace(format=3, data=JPEG), "format", "int"),
    ("32FC1 compressedDepth", SimpleNamespace(format="32FC1; compressedDepth png", data=JPEG), "format", "32FC1"),
    ("compressedDepth without png", SimpleNamespace(format="16UC1; compressedDepth png", data=JPEG), "data",
     "PNG signature"),
]


@pytest.mark.parametrize("case", COMPRESSED_CASES, ids=[c[0] for c in COMPRESSED_CASES])
def test_bad_compressed_messages(case):
    _, msg, field, text = case
    with pytest.raises(ImageConversionError) as info:
        compressed_to_array(msg)
    assert info.value.field == field
    assert text in str(info.value)


ARRAY_CASES = [
    ("bgr8 needs 3 channels", lambda: array_to_image_fields(np.zeros((4, 4)), "bgr8"), "array", "float64[4, 4]"),
    ("dtype mismatch", lambda: array_to_image_fields(np.zeros((4, 4), np.float32), "mono16"), "array", "uint16"),
    ("unknown encoding", lambda: array_to_image_fields(np.zeros((4, 4), np.uint8), "mono9"), "encoding", "mono9"),
    ("empty array", lambda: array_to_image_fields(np.zeros((0, 4), np.uint8), "mono8"), "array", "[0, 4]"),
    ("not an array", lambda: array_to_image_fields([[1, 2]], "mono8"), "array", "list"),
    ("odd yuv422 width", lambda: array_to_image_fields(np.zeros((2, 3, 2), np.uint8), "yuv422"), "array", "3"),
    ("nv12 rows", lambda: array_to_image_fields(np.zeros((5, 4), np.uint8), "nv12"), "array", "[5, 4]"),
    ("data_as", lambda: array_to_image_fields(np.zeros((2, 2), np.uint8), "mono8", data_as="list"), "data_as",
     "'list'"),
    ("jpeg of 16-bit", lambda: array_to_compressed(np.zeros((4, 4), np.uint16), "jpeg"), "array", "uint16"),
    ("compressed format", lambda: array_to_compressed(np.zeros((4, 4), np.uint8), "bmp"), "format", "'bmp'"),
    ("jpeg quality", lambda: array_to_compressed(np.zeros((4, 4), np.uint8), "jpeg", quality=0), "quality", "0"),
    ("no colour conversion", lambda: to_bgr8(SimpleNamespace(**array_to_image_fields(
        np.zeros((2, 2, 2), np.int32), "32SC2"))), "encoding", "32SC2"),
    ("bad value_range", lambda: to_bgr8(SimpleNamespace(**array_to_image_fields(
        np.ones((2, 2), np.uint16), "16UC1")), value_range=(5, 5)), "value_range", "(5, 5)"),
]


@pytest.mark.parametrize("case", ARRAY_CASES, ids=[c[0] for c in ARRAY_CASES])
def test_bad_arrays(case):
    _, call, field, text = case
    with pytest.raises(ImageConversionError) as info:
        call()
    assert info.value.field == field
    assert text in str(info.value)
