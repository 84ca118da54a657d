"""models.yolo: layout detection from TensorSpecs, rejected models, labels and DetectorConfig validation."""

import dataclasses

import numpy as np
import pytest

from axcl_ros.models.labels import COCO80, LabelsError, load_labels, resolve_labels
from axcl_ros.models.yolo import (
    DetectorConfig,
    DetectorConfigError,
    ModelLayoutError,
    YoloAdapter,
)
from axcl_ros.runtime.base import TensorSpec
from axcl_ros_testing import yolo_models as ym

U8, F32 = np.dtype(np.uint8), np.dtype(np.float32)


def spec(name, shape, dtype=F32):
    return TensorSpec(name, tuple(shape), np.dtype(dtype))


AXERA_IN = [spec("images", (1, 640, 640, 3), U8)]
AXERA_OUT = [spec(f"h{i}", (1, 640 // s, 640 // s, 144)) for i, s in enumerate((8, 16, 32))]
ULTRA_IN = [spec("images", (1, 3, 640, 640))]
ULTRA_OUT = [spec("output0", (1, 84, 8400))]


def test_classifier_onnx_is_rejected_with_what_was_found(tmp_path):
    ym.classifier_model(tmp_path / "cls.onnx")
    inputs, outputs = ym.ort_specs(ym.ort_session(tmp_path / "cls.onnx"))
    with pytest.raises(ModelLayoutError) as info:
        YoloAdapter.from_specs(inputs, outputs)
    text = str(info.value)
    assert "input float32[1,3,224,224]" in text and "logits float32[1,1000]" in text
    assert "AXERA" in text and "Ultralytics" in text
    assert isinstance(info.value, ValueError)


NEITHER = [
    ("two inputs", AXERA_IN + ULTRA_IN, AXERA_OUT, "found inputs"),
    ("no outputs", AXERA_IN, [], "outputs []"),
    ("float NHWC input", [spec("images", (1, 640, 640, 3))], AXERA_OUT, "neither uint8[1,H,W,3]"),
    ("uint8 NCHW input", [spec("images", (1, 3, 640, 640), U8)], ULTRA_OUT, "neither"),
    ("batch 4", [spec("images", (4, 3, 640, 640))], ULTRA_OUT, "images float32[4,3,640,640]"),
    ("rank-3 input", [spec("images", (3, 640, 640))], ULTRA_OUT, "not a YOLO detector"),
    ("AXERA input, Ultralytics output", AXERA_IN, ULTRA_OUT, "not float[1,h,w,64+nc]"),
    ("Ultralytics input, AXERA heads", ULTRA_IN, AXERA_OUT, "not one float[1,4+nc,N]"),
    ("heads disagree on channels", AXERA_IN, AXERA_OUT[:2] + [spec("h2", (1, 20, 20, 100))], "[100, 144]"),
    ("head of no integer stride", AXERA_IN, AXERA_OUT[:2] + [spec("h2", (1, 30, 30, 144))], "h2 float32[1,30,30,144]"),
    ("two heads of one stride", AXERA_IN, AXERA_OUT[:2] + [spec("h2", (1, 40, 40, 144))], "share a stride"),
    ("head without class channels", AXERA_IN, [spec("h", (1, 80, 80, 64))], "h float32[1,80,80,64]"),
    ("int output", ULTRA_IN, [spec("output0", (1, 84, 8400), np.int32)], "int32"),
    ("output with N of another size", ULTRA_IN, [spec("output0", (1, 84, 2100))], "2100 boxes"),
    ("output without classes", ULTRA_IN, [spec("output0", (1, 4, 8400))], "float32[1,4,8400]"),
    ("dynamic class count", ULTRA_IN, [spec("output0", (1, None, 8400))], "output0 float32[1,?,8400]"),
]


@pytest.mark.parametrize("case", NEITHER, ids=[c[0] for c in NEITHER])
def test_models_matching_neither_layout_are_rejected(case):
    _, inputs, outputs, text = case
    with pytest.raises(ModelLayoutError) as info:
        YoloAdapter.from_specs(inputs, outputs)
    assert text in str(info.value)


def test_input_size_rules():
    dyn_in = [spec("images", (None, 3, None, None))]
    dyn_out = [spec("output0", (None, 22, None))]
    assert YoloAdapter.from_specs(dyn_in, dyn_out).input_size == (640, 640)
    assert YoloAdapter.from_specs(dyn_in, dyn_out, input_size=(320, 480)).input_size == (320, 480)
    for bad in (300, (320, 0), (-32, 32)):
        with pytest.raises(ModelLayoutError, match="multiples of 32"):
            YoloAdapter.from_specs(dyn_in, dyn_out, input_size=bad)
    with pytest.raises(ModelLayoutError, match="input_size must be"):
        YoloAdapter.from_specs(dyn_in, dyn_out, input_size="big")
    with pytest.raises(ModelLayoutError, match="conflicts"):
        YoloAdapter.from_specs(AXERA_IN, AXERA_OUT, input_size=320)
    assert YoloAdapter.from_specs(AXERA_IN, AXERA_OUT, input_size=640).input_size == (640, 640)
    # non-square fixed AXERA model: strides still found from H/h == W/w
    rect = YoloAdapter.from_specs([spec("i", (1, 384, 640, 3), U8)],
                                  [spec(f"h{s}", (1, 384 // s, 640 // s, 65)) for s in (32, 8, 16)])
    assert rect.strides == (8, 16, 32) and rect.num_classes == 1 and rect.output_names == ("h8", "h16", "h32")
    half = YoloAdapter.from_specs([spec("images", (1, 3, 640, 640), np.float16)], ULTRA_OUT)
    feeds, _ = half.preprocess(np.zeros((64, 64, 3), np.uint8))
    assert feeds["images"].dtype == np.float16


def test_labels_default_and_given():
    assert YoloAdapter.from_specs(AXERA_IN, AXERA_OUT).labels == COCO80
    three = [spec(f"h{s}", (1, 640 // s, 640 // s, 67)) for s in (8, 16, 32)]
    assert YoloAdapter.from_specs(AXERA_IN, three).labels == ("class_0", "class_1", "class_2")
    assert YoloAdapter.from_specs(AXERA_IN, three, ["a", "b", "c"]).labels == ("a", "b", "c")
    assert YoloAdapter.from_specs(AXERA_IN, three, {2: "c", 0: "a", 1: "b"}).labels == ("a", "b", "c")
    with pytest.raises(LabelsError, match="4 names but the model .* outputs 3 classes"):
        YoloAdapter.from_specs(AXERA_IN, three, ["a", "b", "c", "d"])
    with pytest.raises(LabelsError, match="80 classes"):
        YoloAdapter.from_specs(ULTRA_IN, ULTRA_OUT, COCO80[:79])


def test_label_files(tmp_path):
    (tmp_path / "a.txt").write_text("# my classes\nperson\n\n  car \nfork lift\n")
    assert load_labels(tmp_path / "a.txt") == ("person", "car", "fork lift")
    (tmp_path / "b.yaml").write_text("- person\n- car\n")
    assert load_labels(tmp_path / "b.yaml") == ("person", "car")
    (tmp_path / "c.yaml").write_text("1: car\n0: person\n")
    assert load_labels(tmp_path / "c.yaml") == ("person", "car")
    (tmp_path / "d.yaml").write_text("path: ../data\nnames:\n  0: person\n  1: car\n  2: dog\n")
    assert resolve_labels(str(tmp_path / "d.yaml"), 3) == ("person", "car", "dog")
    (tmp_path / "e.json").write_text('["x", "y"]')
    assert load_labels(tmp_path / "e.json") == ("x", "y")
    bad = {
        "gap.yaml": ("0: a\n2: c\n", "without gaps"),
        "keys.yaml": ("a: x\nb: y\n", "integer class ids"),
        "scalar.yaml": ("just text", "got str"),
        "broken.yaml": ("[a, b", "not valid YAML"),
        "empty.txt": ("\n# nothing\n", "holds no names"),
    }
    for name, (text, message) in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(LabelsError, match=message):
            load_labels(tmp_path / name)
    with pytest.raises(LabelsError, match="cannot read"):
        load_labels(tmp_path / "missing.txt")
    with pytest.raises(LabelsError, match="has 3 names but the model outputs 2"):
        resolve_labels(tmp_path / "a.txt", 2)


def test_class_ids_by_name():
    adapter = YoloAdapter.from_specs(ULTRA_IN, ULTRA_OUT)
    assert adapter.class_ids(["person", "car"]) == frozenset({0, 2})
    with pytest.raises(LabelsError, match="'unicorn'"):
        adapter.class_ids(["person", "unicorn"])


BAD_CONFIGS = [
    (dict(conf_threshold=1.5), "conf_threshold must be in \\[0, 1\\], got 1.5"),
    (dict(conf_threshold=-0.01), "conf_threshold"),
    (dict(conf_threshold=float("nan")), "conf_threshold"),
    (dict(conf_threshold="0.5"), "str"),
    (dict(iou_threshold=True), "iou_threshold"),
    (dict(iou_threshold=2), "iou_threshold must be in"),
    (dict(max_detections=0), "max_detections must be an integer >= 1, got 0"),
    (dict(max_detections=2.5), "max_detections"),
    (dict(max_candidates=-1), "max_candidates"),
    (dict(agnostic_nms="yes"), "agnostic_nms"),
    (dict(classes={-1, 2}), "non-negative"),
    (dict(classes="person"), "set of class ids"),
    (dict(classes=[1.5]), "1.5"),
]


@pytest.mark.parametrize("kwargs,message", BAD_CONFIGS, ids=[str(c[0]) for c in BAD_CONFIGS])
def test_config_validation(kwargs, message):
    with pytest.raises(DetectorConfigError, match=message):
        DetectorConfig(**kwargs)


def test_config_is_immutable_and_replaceable():
    cfg = DetectorConfig(classes=[3, 1], conf_threshold=0)
    assert cfg.classes == frozenset({1, 3}) and cfg.conf_threshold == 0.0
    assert DetectorConfig(classes=[]).classes is None  # empty filter = all classes
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.conf_threshold = 0.5
    assert cfg.replace(iou_threshold=0.6).iou_threshold == 0.6
    with pytest.raises(DetectorConfigError):
        cfg.replace(iou_threshold=7)
    adapter = YoloAdapter.from_specs(ULTRA_IN, ULTRA_OUT, config=cfg)
    assert adapter.config is cfg
    with pytest.raises(DetectorConfigError, match=r"class ids \[80, 99\] out of range: the model has 80"):
        adapter.update_config(classes={99, 80, 1})
    assert adapter.config is cfg  # unchanged after a rejected update
    with pytest.raises(DetectorConfigError, match="DetectorConfig"):
        adapter.config = {"conf_threshold": 0.3}
    with pytest.raises(DetectorConfigError, match="out of range"):
        YoloAdapter.from_specs(ULTRA_IN, ULTRA_OUT, config=DetectorConfig(classes={80}))
