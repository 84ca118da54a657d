"""Models with a dynamic input size.

* Rectangular inference (``rect``): the smallest multiple-of-32 rectangle that holds the frame, as Ultralytics'
  predict letterboxes (``LetterBox(auto=True)``), instead of the full square. Checked on real weights (NudeNet's
  YOLOv8n, dynamic input) and a real photo: the rectangle finds the same objects as the square.
* Output dimensions an export left symbolic although they are fixed (torch 2.x exports of Ultralytics models with
  ``dynamic=True``): ``settle_dynamic_dims`` learns them from runs at two input sizes.
"""

import numpy as np
import pytest

from axcl_ros import assets
from axcl_ros.models.letterbox import rect_size
from axcl_ros.models.yolo import YoloAdapter, probe_inputs
from axcl_ros.runtime.base import TensorSpec, settle_dynamic_dims
from axcl_ros_testing import yolo_models as ym
from axcl_ros_testing.sample_inputs import skimage_image


@pytest.mark.parametrize("image, size, expected", [
    ((480, 640), (640, 640), (480, 640)),     # VGA camera: no padding at all
    ((720, 1280), (640, 640), (384, 640)),    # 360 rows scaled, padded to 384
    ((1080, 1920), (640, 640), (384, 640)),
    ((640, 480), (640, 640), (640, 480)),     # portrait
    ((500, 500), (640, 640), (640, 640)),     # square image: the square
    ((100, 50), (640, 640), (640, 320)),      # upscaled
    ((481, 640), (640, 640), (512, 640)),     # one row more than a multiple: the next multiple
    ((480, 640), (320, 320), (256, 320)),
])
def test_rect_size(image, size, expected):
    got = rect_size(image, size, 32)
    assert got == expected
    assert got[0] <= size[0] and got[1] <= size[1] and got[0] % 32 == 0 and got[1] % 32 == 0


def _ultralytics_specs(hw):
    h, w = hw
    return ([TensorSpec("images", (1, 3, h, w), np.float32)],
            [TensorSpec("output0", (1, 84, None if h is None else (h // 8) * (w // 8) * 21 // 16), np.float32)])


def test_rect_applies_only_to_a_dynamic_input():
    frame = np.zeros((480, 640, 3), np.uint8)
    dynamic = YoloAdapter.from_specs(*_ultralytics_specs((None, None)), input_size=640, rect=True)
    feeds, meta = dynamic.preprocess(frame)
    assert dynamic.rect and feeds["images"].shape == (1, 3, 480, 640) and meta.size == (480, 640)
    square = YoloAdapter.from_specs(*_ultralytics_specs((None, None)), input_size=640)
    assert square.preprocess(frame)[0]["images"].shape == (1, 3, 640, 640)
    fixed = YoloAdapter.from_specs(*_ultralytics_specs((640, 640)), rect=True)
    assert not fixed.rect and fixed.preprocess(frame)[0]["images"].shape == (1, 3, 640, 640)


def _iou(a, b):
    x1, y1 = np.maximum(a[:2], b[:2])
    x2, y2 = np.minimum(a[2:], b[2:])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.realweights
def test_rect_finds_what_the_square_finds_on_real_weights():
    try:
        model = assets.nudenet_yolov8n_onnx()
    except assets.AssetNotFoundError as exc:
        pytest.skip(str(exc))
    session = ym.ort_session(model, threads=2)
    photo = np.ascontiguousarray(skimage_image("astronaut")[:384, :, ::-1])  # 384×512: a landscape frame
    results = {}
    for rect in (False, True):
        adapter = YoloAdapter.from_specs(*ym.ort_specs(session), labels=assets.NUDENET_LABELS, input_size=320,
                                         rect=rect)
        feeds, meta = adapter.preprocess(photo)
        results[rect] = (feeds["images"].shape, adapter.postprocess(
            dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds))), meta))
    assert results[False][0] == (1, 3, 320, 320) and results[True][0] == (1, 3, 256, 320)
    square, rect = results[False][1], results[True][1]
    assert len(square) >= 1
    assert len(rect) == len(square)
    for k in range(len(square)):  # the same objects, boxes in the same place (image pixels), similar scores
        j = int(np.argmax([_iou(square.boxes[k], b) for b in rect.boxes]))
        assert rect.class_ids[j] == square.class_ids[k]
        assert _iou(square.boxes[k], rect.boxes[j]) > 0.8
        assert abs(float(rect.scores[j]) - float(square.scores[k])) < 0.1


def test_settle_dynamic_dims_keeps_what_follows_the_input():
    specs = [TensorSpec("output0", (None, None, None), np.float32), TensorSpec("protos", (None, 32, None, None),
                                                                              np.float32),
             TensorSpec("fixed", (1, 4), np.float32), TensorSpec("unseen", (None, 3), np.float32)]
    seen = [{"output0": (1, 116, 8400), "protos": (1, 32, 160, 160), "fixed": (1, 4)},
            {"output0": (1, 116, 10080), "protos": (1, 32, 168, 176), "fixed": (1, 4)}]
    out = {s.name: s.shape for s in settle_dynamic_dims(specs, seen)}
    assert out == {"output0": (1, 116, None), "protos": (1, 32, None, None), "fixed": (1, 4), "unseen": (None, 3)}
    assert settle_dynamic_dims(specs[:1], [{"output0": (1, 84)}])[0].shape == (None, None, None)  # rank differs


def test_probe_inputs_differ_in_height_and_width_and_keep_fixed_dims():
    nchw = [f["images"].shape for f in probe_inputs(TensorSpec("images", (None, 3, None, None), np.float32),
                                                      (640, 640))]
    assert nchw == [(1, 3, 640, 640), (1, 3, 672, 704)]
    nhwc = [f["x"].shape for f in probe_inputs(TensorSpec("x", (1, None, 320, 3), np.uint8), (320, 320))]
    assert nhwc == [(1, 320, 320, 3), (1, 352, 320, 3)]
    assert probe_inputs(TensorSpec("x", (1, 3, None), np.float32), (320, 320)) == []
