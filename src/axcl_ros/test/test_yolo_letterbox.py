"""models.letterbox: AXERA-style centred letterbox geometry and the inverse box mapping."""

import cv2
import numpy as np
import pytest

from axcl_ros.models.letterbox import LetterboxInfo, letterbox, unletterbox_boxes


def _img(h, w, c=3, seed=0):
    shape = (h, w) if c is None else (h, w, c)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("shape,size,scale,resized,top,left", [
    ((480, 640), (640, 640), 1.0, (480, 640), 80, 0),
    ((1080, 1920), (640, 640), 1 / 3, (360, 640), 140, 0),
    ((100, 37), (64, 96), 0.64, (64, 24), 0, 36),
    ((512, 512), (320, 320), 0.625, (320, 320), 0, 0),
    ((333, 500), (320, 320), 0.64, (213, 320), 53, 0),  # odd padding: 107 rows split 53 / 54
])
def test_geometry_and_content(shape, size, scale, resized, top, left):
    img = _img(*shape)
    out, info = letterbox(img, size, 114)
    assert out.shape == size + (3,) and out.dtype == np.uint8
    assert info.scale == pytest.approx(scale)
    assert (info.pad_top, info.pad_left) == (top, left)
    assert info.resized_size == resized and info.image_size == shape and info.size == size
    rh, rw = resized
    # AXERA split: top = (H - rh) // 2, the odd row goes to the bottom
    assert size[0] - rh - top >= top
    centre = out[top:top + rh, left:left + rw]
    np.testing.assert_array_equal(centre, cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR))
    mask = np.ones(size, bool)
    mask[top:top + rh, left:left + rw] = False
    assert (out[mask] == 114).all()


def test_int_size_gray_and_per_channel_pad():
    out, info = letterbox(_img(20, 40, None), 32, 0)
    assert out.shape == (32, 32) and info.pad_top == 8 and (out[:8] == 0).all()
    out, _ = letterbox(_img(20, 40), 32, (1, 2, 3))
    assert out[0, 0].tolist() == [1, 2, 3] and out[-1, -1].tolist() == [1, 2, 3]


def test_reuses_out_buffer_and_overwrites_old_padding():
    buf = np.full((64, 64, 3), 77, np.uint8)
    img = _img(32, 64)
    out, info = letterbox(img, (64, 64), 0, out=buf)
    assert out is buf
    assert (out[:16] == 0).all() and (out[48:] == 0).all()
    np.testing.assert_array_equal(out[16:48], img)  # same width: copied, not resampled
    other, _ = letterbox(img, (64, 64), 0, out=np.zeros((10, 10, 3), np.uint8))  # wrong shape: ignored
    assert other.shape == (64, 64, 3)


def test_unletterbox_inverts_the_forward_mapping_and_clips():
    img_h, img_w = 1080, 1920
    _, info = letterbox(np.zeros((img_h, img_w, 3), np.uint8), (640, 640), 0)
    boxes = np.array([[100.0, 200.0, 500.0, 900.0], [0.0, 0.0, 1920.0, 1080.0]], np.float32)
    forward = boxes * info.scale + np.array([info.pad_left, info.pad_top] * 2, np.float32)
    np.testing.assert_allclose(unletterbox_boxes(forward, info), boxes, atol=1e-3)
    outside = np.array([[-10.0, 100.0, 700.0, 600.0]], np.float32)  # beyond the letterbox on 3 sides
    clipped = unletterbox_boxes(outside, info)
    assert clipped.tolist() == [[0.0, 0.0, 1920.0, 1080.0]]
    unclipped = unletterbox_boxes(outside, info, clip=False)
    np.testing.assert_allclose(unclipped, [[-30.0, -120.0, 2100.0, 1380.0]], atol=1e-3)
    assert unletterbox_boxes(np.zeros((0, 4)), info).shape == (0, 4)


def test_bad_inputs():
    with pytest.raises(ValueError, match="positive"):
        letterbox(_img(4, 4), (0, 10))
    with pytest.raises(ValueError, match=r"\[0, 4, 3\]"):
        letterbox(np.zeros((0, 4, 3), np.uint8), 8)
    with pytest.raises(ValueError, match="N×4"):
        unletterbox_boxes(np.zeros((3, 5)), LetterboxInfo(1.0, 0, 0, (4, 4), (4, 4)))


@pytest.mark.parametrize("shape", [(480, 640), (1080, 1920), (640, 640), (333, 500), (100, 37)])
def test_letterbox_nchw_equals_letterbox_then_blob(shape):
    """The fused letterbox → 1×3×H×W float tensor equals letterbox + cv2.dnn.blobFromImage(1/255, swapRB)."""
    from axcl_ros.models.letterbox import letterbox_nchw

    img = _img(*shape)
    boxed, info = letterbox(img, (640, 640), 114)
    ref = cv2.dnn.blobFromImage(boxed, scalefactor=1 / 255.0, swapRB=True)
    out, info2 = letterbox_nchw(img, (640, 640), 114)
    assert info2 == info and out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-6, rtol=0)
    again, _ = letterbox_nchw(img, (640, 640), 114)
    assert again is not out  # a fresh tensor per frame: the previous one may still be queued for inference
    bgr, _ = letterbox_nchw(img, (640, 640), 114, swap_rb=False)  # channels in the image's own order
    np.testing.assert_allclose(bgr, cv2.dnn.blobFromImage(boxed, scalefactor=1 / 255.0), atol=1e-6, rtol=0)
    half, _ = letterbox_nchw(img, (640, 640), 114, dtype=np.float16)  # float16 models
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float32), ref, atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        letterbox_nchw(_img(10, 10, None), (64, 64))
