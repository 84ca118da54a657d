"""io.image: every encoding decodes (zero-copy where possible), round-trips, and converts like cv2.cvtColor."""

import array
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from axcl_ros.io.compressed_image import (
    array_to_compressed,
    compressed_to_array,
    compressed_to_bgr8,
)
from axcl_ros.io.image import (
    DecodedImage,
    array_to_image_fields,
    image_msg_to_array,
    to_bgr8,
    to_rgb8,
)

H, W = 6, 10


def msg(**fields):
    return SimpleNamespace(**fields)


@pytest.fixture(scope="module")
def bgr():
    """A smooth colour image (gradients) so chroma subsampling / demosaicing errors stay small."""
    yy, xx = np.mgrid[0:48, 0:64].astype(np.float32)
    return np.dstack([40 + 2 * xx, 60 + 2 * yy, 200 - xx - yy]).clip(0, 255).astype(np.uint8)


def _arrays():
    rng = np.random.default_rng(0)
    return {
        "rgb8": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "bgr8": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "rgba8": rng.integers(0, 256, (H, W, 4), dtype=np.uint8),
        "bgra8": rng.integers(0, 256, (H, W, 4), dtype=np.uint8),
        "mono8": rng.integers(0, 256, (H, W), dtype=np.uint8),
        "mono16": rng.integers(0, 65536, (H, W), dtype=np.uint16),
        "16UC1": rng.integers(0, 65536, (H, W), dtype=np.uint16),
        "32FC1": rng.normal(size=(H, W)).astype(np.float32),
        "yuv422": rng.integers(0, 256, (H, W, 2), dtype=np.uint8),
        "yuv422_yuy2": rng.integers(0, 256, (H, W, 2), dtype=np.uint8),
        "nv12": rng.integers(0, 256, (H * 3 // 2, W), dtype=np.uint8),
        "nv21": rng.integers(0, 256, (H * 3 // 2, W), dtype=np.uint8),
        "bayer_rggb8": rng.integers(0, 256, (H, W), dtype=np.uint8),
        "bayer_bggr8": rng.integers(0, 256, (H, W), dtype=np.uint8),
        "bayer_gbrg8": rng.integers(0, 256, (H, W), dtype=np.uint8),
        "bayer_grbg8": rng.integers(0, 256, (H, W), dtype=np.uint8),
        "8UC3": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "16SC1": rng.integers(-30000, 30000, (H, W), dtype=np.int16),
    }


@pytest.mark.parametrize("encoding,arr", list(_arrays().items()), ids=list(_arrays()))
def test_round_trip_every_encoding(encoding, arr):
    fields = array_to_image_fields(arr, encoding)
    assert (fields["height"], fields["width"]) == (H, W)
    assert fields["step"] * (H * 3 // 2 if encoding.startswith("nv") else H) == len(fields["data"])
    assert isinstance(fields["data"], bytes)
    out = image_msg_to_array(msg(**fields))
    assert isinstance(out, DecodedImage)
    assert out.encoding == encoding
    assert (out.height, out.width) == (H, W)
    np.testing.assert_array_equal(out.array, arr)
    assert out.array.dtype == arr.dtype


@pytest.mark.parametrize("data_type", ["bytes", "bytearray", "array", "memoryview", "list", "ndarray"])
def test_step_padding_is_honoured_without_copy(data_type):
    arr = np.arange(H * W * 3, dtype=np.uint8).reshape(H, W, 3)
    step = W * 3 + 7
    raw = np.full((H, step), 0xEE, np.uint8)  # garbage in the padding
    raw[:, :W * 3] = arr.reshape(H, -1)
    data = {"bytes": raw.tobytes(), "bytearray": bytearray(raw.tobytes()),
            "array": array.array("B", raw.tobytes()), "memoryview": memoryview(raw.tobytes()),
            "list": list(raw.tobytes()), "ndarray": raw.reshape(-1)}[data_type]
    m = msg(height=H, width=W, encoding="rgb8", is_bigendian=0, step=step, data=data)
    out = image_msg_to_array(m)
    np.testing.assert_array_equal(out.array, arr)
    base = None if data_type == "list" else data if data_type == "ndarray" else np.frombuffer(data, np.uint8)
    if base is not None:
        assert np.shares_memory(out.array, base)  # a view of msg.data, not a copy
    # the BGR conversion of rgb8 is a real swap; bgr8 comes back as the view itself
    np.testing.assert_array_equal(to_bgr8(m), arr[..., ::-1])
    m.encoding = "bgr8"
    np.testing.assert_array_equal(to_bgr8(m), arr)
    if base is not None:
        assert np.shares_memory(to_bgr8(m), base)

def test_extra_trailing_bytes_are_ignored():
    arr = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    m = msg(height=H, width=W, encoding="mono8", is_bigendian=0, step=W, data=arr.tobytes() + b"xyz")
    np.testing.assert_array_equal(image_msg_to_array(m).array, arr)


@pytest.mark.parametrize("encoding,dtype", [("mono16", ">u2"), ("16UC1", ">u2"), ("32FC1", ">f4"),
                                            ("mono16", "<u2"), ("32FC1", "<f4")])
def test_endianness_is_honoured(encoding, dtype):
    rng = np.random.default_rng(1)
    arr = (rng.integers(0, 65536, (H, W)) if dtype[1] == "u" else rng.normal(size=(H, W))).astype(dtype)
    step = W * 2 * arr.itemsize // 2 + 4  # padded too
    raw = np.zeros((H, step), np.uint8)
    raw[:, :W * arr.itemsize] = np.frombuffer(arr.tobytes(), np.uint8).reshape(H, -1)
    m = msg(height=H, width=W, encoding=encoding, is_bigendian=int(dtype[0] == ">"), step=step, data=raw.tobytes())
    out = image_msg_to_array(m).array
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr.astype(arr.dtype.newbyteorder("=")))


def test_encoding_names_are_case_tolerant():
    arr = np.ones((H, W), np.uint16)
    fields = array_to_image_fields(arr, "16uc1")
    assert image_msg_to_array(msg(**fields)).encoding == "16UC1"
    fields = array_to_image_fields(np.ones((H, W, 3), np.uint8), "BGR8")
    assert image_msg_to_array(msg(**fields)).encoding == "bgr8"


def test_array_data_for_rclpy():
    fields = array_to_image_fields(np.ones((H, W, 3), np.uint8), "bgr8", data_as="array")
    assert isinstance(fields["data"], array.array) and fields["data"].typecode == "B"
    assert len(fields["data"]) == H * W * 3


# ------------------------------------------------------------------------------------- colour conversions
@pytest.mark.parametrize("encoding,code", [("rgb8", cv2.COLOR_RGB2BGR), ("rgba8", cv2.COLOR_RGBA2BGR),
                                           ("bgra8", cv2.COLOR_BGRA2BGR), ("mono8", cv2.COLOR_GRAY2BGR)])
def test_simple_colour_conversions(encoding, code):
    arr = _arrays()[encoding]
    m = msg(**array_to_image_fields(arr, encoding))
    want = cv2.cvtColor(arr, code)
    np.testing.assert_array_equal(to_bgr8(m), want)
    np.testing.assert_array_equal(to_rgb8(m), want[..., ::-1])


@pytest.mark.parametrize("encoding,enc_code,dec_code", [
    ("yuv422", cv2.COLOR_BGR2YUV_UYVY, cv2.COLOR_YUV2BGR_UYVY),
    ("uyvy", cv2.COLOR_BGR2YUV_UYVY, cv2.COLOR_YUV2BGR_UYVY),
    ("yuv422_yuy2", cv2.COLOR_BGR2YUV_YUY2, cv2.COLOR_YUV2BGR_YUY2),
    ("yuyv", cv2.COLOR_BGR2YUV_YUY2, cv2.COLOR_YUV2BGR_YUY2),
])
def test_yuv422_matches_cvtcolor_on_same_bytes(bgr, encoding, enc_code, dec_code):
    packed = cv2.cvtColor(bgr, enc_code)  # H×W×2
    h, w = bgr.shape[:2]
    step = w * 2 + 6
    raw = np.zeros((h, step), np.uint8)
    raw[:, :w * 2] = packed.reshape(h, -1)
    m = msg(height=h, width=w, encoding=encoding, is_bigendian=0, step=step, data=raw.tobytes())
    got = to_bgr8(m)
    np.testing.assert_array_equal(got, cv2.cvtColor(packed, dec_code))
    np.testing.assert_array_equal(to_rgb8(m), got[..., ::-1])
    # and it is a faithful image: close to the source (4:2:2 chroma on a smooth gradient)
    assert np.abs(got.astype(int) - bgr).mean() < 3


def _nv(bgr, vu=False):
    h, w = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    y = i420[:h * w].reshape(h, w)
    u = i420[h * w:h * w + h * w // 4].reshape(h // 2, w // 2)
    v = i420[h * w + h * w // 4:].reshape(h // 2, w // 2)
    uv = np.dstack([v, u] if vu else [u, v]).reshape(h // 2, w)
    return np.vstack([y, uv])


@pytest.mark.parametrize("encoding,code", [("nv12", cv2.COLOR_YUV2BGR_NV12), ("nv21", cv2.COLOR_YUV2BGR_NV21)])
def test_nv12_nv21_match_cvtcolor_with_padding(bgr, encoding, code):
    planes = _nv(bgr, vu=encoding == "nv21")
    h, w = bgr.shape[:2]
    step = w + 16
    raw = np.full((planes.shape[0], step), 7, np.uint8)
    raw[:, :w] = planes
    m = msg(height=h, width=w, encoding=encoding, is_bigendian=0, step=step, data=raw.tobytes())
    dec = image_msg_to_array(m)
    assert dec.array.shape == (h * 3 // 2, w) and (dec.height, dec.width) == (h, w)
    got = to_bgr8(m)
    np.testing.assert_array_equal(got, cv2.cvtColor(planes, code))
    assert np.abs(got.astype(int) - bgr).mean() < 3
    # swapping the chroma order must visibly change the colours (the encodings are really distinguished)
    m.encoding = "nv21" if encoding == "nv12" else "nv12"
    assert np.abs(to_bgr8(m).astype(int) - bgr).mean() > 10


BAYER = {  # ROS name -> (offset of R, offset of B) in the 2x2 cell, as (row, col)
    "bayer_rggb8": ((0, 0), (1, 1)),
    "bayer_bggr8": ((1, 1), (0, 0)),
    "bayer_gbrg8": ((1, 0), (0, 1)),
    "bayer_grbg8": ((0, 1), (1, 0)),
}
BAYER_CODES = {"bayer_rggb8": cv2.COLOR_BayerRGGB2BGR, "bayer_bggr8": cv2.COLOR_BayerBGGR2BGR,
               "bayer_gbrg8": cv2.COLOR_BayerGBRG2BGR, "bayer_grbg8": cv2.COLOR_BayerGRBG2BGR}


def _mosaic(bgr, encoding):
    (rr, rc), (br, bc) = BAYER[encoding]
    m = bgr[..., 1].copy()
    m[rr::2, rc::2] = bgr[rr::2, rc::2, 2]
    m[br::2, bc::2] = bgr[br::2, bc::2, 0]
    return m


@pytest.mark.parametrize("encoding", list(BAYER))
def test_bayer_demosaic(bgr, encoding):
    # a flat colour must come back exactly (independent check of the ROS pattern -> OpenCV code mapping)
    flat = np.empty((16, 16, 3), np.uint8)
    flat[:] = (30, 120, 220)
    m = msg(**array_to_image_fields(_mosaic(flat, encoding), encoding))
    out = to_bgr8(m)
    np.testing.assert_array_equal(out[2:-2, 2:-2], flat[2:-2, 2:-2])
    np.testing.assert_array_equal(to_rgb8(m)[2:-2, 2:-2], flat[2:-2, 2:-2, ::-1])
    # a real image: identical to cvtColor on the same bytes, and close to the source
    mosaic = _mosaic(bgr, encoding)
    m = msg(**array_to_image_fields(mosaic, encoding))
    got = to_bgr8(m)
    np.testing.assert_array_equal(got, cv2.cvtColor(mosaic, BAYER_CODES[encoding]))
    assert np.abs(got[2:-2, 2:-2].astype(int) - bgr[2:-2, 2:-2]).mean() < 3


def test_mono16_scaling_is_full_range():
    arr = np.array([[0, 257, 65535, 32896]], np.uint16)
    out = to_bgr8(msg(**array_to_image_fields(arr, "mono16")))
    assert out.shape == (1, 4, 3)
    assert out[0, :, 0].tolist() == [0, 1, 255, 128]
    assert (out[..., 0] == out[..., 2]).all()


def test_depth_16uc1_min_max_over_valid_pixels_and_fixed_range():
    arr = np.array([[0, 1000, 2000, 3000]], np.uint16)
    m = msg(**array_to_image_fields(arr, "16UC1"))
    np.testing.assert_allclose(to_bgr8(m)[0, :, 0], [0, 0, 127.5, 255], atol=0.5)  # 0 = invalid stays black
    np.testing.assert_allclose(to_bgr8(m, value_range=(0, 4000))[0, :, 0], [0, 63.75, 127.5, 191.25], atol=0.5)
    assert to_bgr8(msg(**array_to_image_fields(np.zeros((2, 2), np.uint16), "16UC1"))).max() == 0


def test_depth_32fc1_with_nan_and_inf():
    arr = np.array([[np.nan, 1.0, 2.0, 3.0, np.inf, 0.0]], np.float32)
    out = to_rgb8(msg(**array_to_image_fields(arr, "32FC1")))[0, :, 0]
    np.testing.assert_allclose(out, [0, 0, 127.5, 255, 0, 0], atol=0.5)
    fixed = to_bgr8(msg(**array_to_image_fields(arr, "32FC1")), value_range=(0.0, 4.0))[0, :, 0]
    np.testing.assert_allclose(fixed, [0, 63.75, 127.5, 191.25, 255, 0], atol=0.5)


# --------------------------------------------------------------------------------------------- compressed
def test_jpeg_round_trip_and_format_strings(bgr):
    fields = array_to_compressed(bgr, "jpeg", quality=95)
    assert fields["format"] == "bgr8; jpeg compressed bgr8"
    assert fields["data"][:2] == b"\xff\xd8"
    for fmt in ("jpeg", "jpg", "rgb8; jpeg compressed bgr8", "bgr8; jpeg compressed bgr8", ""):
        dec = compressed_to_array(msg(format=fmt, data=fields["data"]))
        assert dec.encoding == "bgr8" and dec.array.shape == bgr.shape
        assert np.abs(dec.array.astype(int) - bgr).mean() < 2
    tagged = array_to_compressed(bgr, "jpeg", encoding="rgb8")
    assert tagged["format"] == "rgb8; jpeg compressed bgr8"
    # data as rclpy gives (and wants) it
    as_array = array_to_compressed(bgr, "jpeg", quality=95, data_as="array")["data"]
    assert isinstance(as_array, array.array) and as_array.tobytes() == fields["data"]
    dec = compressed_to_array(msg(format="jpeg", data=as_array))
    assert dec.array.shape == bgr.shape


def test_jpeg_quality_changes_size(bgr):
    noisy = (bgr.astype(int) + np.random.default_rng(0).integers(-30, 30, bgr.shape)).clip(0, 255).astype(np.uint8)
    assert len(array_to_compressed(noisy, "jpeg", 20)["data"]) < len(array_to_compressed(noisy, "jpeg", 95)["data"])


@pytest.mark.parametrize("arr,enc", [
    (np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8), "bgr8"),
    (np.random.default_rng(1).integers(0, 256, (9, 11), dtype=np.uint8), "mono8"),
    (np.random.default_rng(2).integers(0, 256, (9, 11, 4), dtype=np.uint8), "bgra8"),
    (np.random.default_rng(3).integers(0, 65536, (9, 11), dtype=np.uint16), "mono16"),
    (np.random.default_rng(4).integers(0, 65536, (9, 11, 3), dtype=np.uint16), "bgr16"),
])
def test_png_is_lossless(arr, enc):
    fields = array_to_compressed(arr, "png")
    assert fields["format"] == f"{enc}; png compressed {enc}"
    dec = compressed_to_array(msg(format=fields["format"], data=fields["data"]))
    assert dec.encoding == enc
    np.testing.assert_array_equal(dec.array, arr)
    bgr8 = compressed_to_bgr8(msg(format="png", data=fields["data"]))
    assert bgr8.shape == arr.shape[:2] + (3,) and bgr8.dtype == np.uint8


def test_grayscale_jpeg_and_compressed_depth():
    gray = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    dec = compressed_to_array(msg(format="mono8; jpeg compressed mono8",
                                  data=array_to_compressed(gray, "jpeg", 100)["data"]))
    assert dec.encoding == "mono8" and dec.array.shape == gray.shape
    assert np.abs(dec.array.astype(int) - gray).max() <= 2
    depth = np.arange(8 * 12, dtype=np.uint16).reshape(8, 12) * 100
    payload = b"\x00" * 12 + array_to_compressed(depth, "png")["data"]  # 12-byte compressedDepth header
    dec = compressed_to_array(msg(format="16UC1; compressedDepth png", data=payload))
    assert dec.encoding == "16UC1"
    np.testing.assert_array_equal(dec.array, depth)
