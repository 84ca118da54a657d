"""Depth Anything V2 adapter: layout detection, colour order, normalisation, resize-back and output modes."""

import cv2
import numpy as np
import pytest

from axcl_ros.models.depth_anything import (
    LAYOUT_AXERA,
    LAYOUT_ONNX,
    DepthAnythingAdapter,
    DepthConfigError,
    DepthInputError,
    DepthModelSignatureError,
    depth_output_info,
    fit_scale_shift,
)
from axcl_ros.runtime.base import TensorSpec
from axcl_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend
from axcl_ros_testing.depth_models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_axera_probe,
    build_onnx_probe,
)

U8, F32 = np.dtype(np.uint8), np.dtype(np.float32)
AXERA_IN = [TensorSpec("input", (1, 518, 518, 3), U8, "NHWC")]
AXERA_OUT = [TensorSpec("output", (1, 1, 518, 518), F32)]


def _load(path):
    return OnnxRuntimeBackend(intra_op_num_threads=1).load(str(path))


def _random_bgr(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _ramps(h, w):
    """bgr8 image: R = horizontal ramp, G = vertical ramp, B = noise; also the exact (float) ramps."""
    x = np.linspace(20.0, 235.0, w)
    y = np.linspace(30.0, 220.0, h)
    r = np.broadcast_to(x[None, :], (h, w))
    g = np.broadcast_to(y[:, None], (h, w))
    b = np.random.default_rng(1).integers(0, 256, (h, w))
    bgr = np.stack([b, np.rint(g), np.rint(r)], axis=2).astype(np.uint8)
    return bgr, r, g


# --------------------------------------------------------------------------------------------- layout detection

def test_axera_layout_from_specs():
    a = DepthAnythingAdapter.from_specs(AXERA_IN, AXERA_OUT)
    assert (a.layout, a.input_name, a.output_name, a.input_hw) == (LAYOUT_AXERA, "input", "output", (518, 518))
    assert a.info.unit == "1" and not a.info.is_metric


def test_onnx_fixed_and_dynamic_sizes():
    fixed = DepthAnythingAdapter.from_specs([TensorSpec("image", (1, 3, 518, 518), F32)],
                                            [TensorSpec("depth", (1, 518, 518), F32)])
    assert (fixed.layout, fixed.input_hw) == (LAYOUT_ONNX, (518, 518))
    dyn_in = [TensorSpec("image", (None, 3, None, None), F32)]
    dyn_out = [TensorSpec("depth", (None, None, None), F32)]
    assert DepthAnythingAdapter.from_specs(dyn_in, dyn_out).input_hw == (518, 518)
    assert DepthAnythingAdapter.from_specs(dyn_in, dyn_out, input_size=364).input_hw == (364, 364)
    assert DepthAnythingAdapter.from_specs(dyn_in, dyn_out, input_size=(280, 392)).input_hw == (280, 392)
    with pytest.raises(DepthConfigError, match="multiple of 14"):
        DepthAnythingAdapter.from_specs(dyn_in, dyn_out, input_size=(480, 640))
    fixed_in = [TensorSpec("image", (1, 3, 518, 518), F32)]
    with pytest.raises(DepthConfigError, match="contradicts"):
        DepthAnythingAdapter.from_specs(fixed_in, dyn_out, input_size=364)
    assert DepthAnythingAdapter.from_specs(fixed_in, dyn_out, input_size=518).input_hw == (518, 518)
    # one dynamic axis: only that one comes from input_size
    half = [TensorSpec("image", (1, 3, 518, None), F32)]
    assert DepthAnythingAdapter.from_specs(half, dyn_out, input_size=(518, 700)).input_hw == (518, 700)


@pytest.mark.parametrize("inputs,outputs", [
    ([TensorSpec("x", (1, 518, 518, 3), F32)], AXERA_OUT),               # float NHWC
    ([TensorSpec("x", (1, 3, 518, 518), U8)], AXERA_OUT),                # uint8 NCHW
    ([TensorSpec("x", (1, 518, 518, 4), U8)], AXERA_OUT),                # 4 channels
    ([TensorSpec("x", (2, 518, 518, 3), U8)], AXERA_OUT),                # batch 2
    ([TensorSpec("x", (1, 3, 518), F32)], AXERA_OUT),                    # rank 3 input
    (AXERA_IN, [TensorSpec("y", (1, 2, 518, 518), F32)]),                # 2 output channels
    (AXERA_IN, [TensorSpec("y", (1, 1, 518, 518), U8)]),                 # integer output
    (AXERA_IN, [TensorSpec("y", (1, 518 * 518), F32)]),                  # flat output
    (AXERA_IN, AXERA_OUT + AXERA_OUT),                                   # two outputs
    ([], AXERA_OUT),                                                     # no input
    ([TensorSpec("x", (1, 518, 518, 3), U8, "NCHW")], AXERA_OUT),        # declared layout contradicts the shape
])
def test_unsupported_signatures_name_what_was_found(inputs, outputs):
    with pytest.raises(DepthModelSignatureError) as err:
        DepthAnythingAdapter.from_specs(inputs, outputs)
    assert isinstance(err.value, ValueError)
    for spec in list(inputs) + list(outputs):
        assert spec.describe() in str(err.value)


# ---------------------------------------------------------------------- colour order and normalisation (numeric)

@pytest.mark.parametrize("weights,channel", [((1, 0, 0), 2), ((0, 1, 0), 1), ((0, 0, 1), 0)])
def test_axera_probe_receives_rgb_uint8(tmp_path, weights, channel):
    sess = _load(build_axera_probe(tmp_path / "ax.onnx", 518, 518, weights=weights))
    adapter = DepthAnythingAdapter.from_session(sess)
    bgr = _random_bgr(518, 518)
    feeds = adapter.preprocess(bgr)
    assert feeds["input"].dtype == np.uint8 and feeds["input"].shape == (1, 518, 518, 3)
    out = adapter.postprocess(sess.run(feeds), (518, 518))
    # R (weights[0]) must be the image's last bgr channel: the model gets RGB, un-normalised.
    np.testing.assert_array_equal(out, bgr[:, :, channel].astype(np.float32))


@pytest.mark.parametrize("weights,channel", [((1, 0, 0), 2), ((0, 1, 0), 1), ((0, 0, 1), 0)])
def test_onnx_probe_sees_exact_imagenet_normalised_rgb(tmp_path, weights, channel):
    sess = _load(build_onnx_probe(tmp_path / "cpu.onnx", 266, 350, weights=weights))
    adapter = DepthAnythingAdapter.from_session(sess)
    bgr = _random_bgr(266, 350, seed=3)
    feeds = adapter.preprocess(bgr)
    x = feeds["image"]
    assert x.dtype == np.float32 and x.shape == (1, 3, 266, 350) and x.flags.c_contiguous
    rgb = bgr[:, :, ::-1].astype(np.float64) / 255.0
    ref = ((rgb - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)).transpose(2, 0, 1)
    np.testing.assert_allclose(x[0], ref, atol=2e-6, rtol=0)
    out = adapter.postprocess(sess.run(feeds), (266, 350))
    # The probe undoes ImageNet normalisation: the exact 0..255 value comes back only if the host did it right.
    np.testing.assert_allclose(out, bgr[:, :, channel], atol=2e-3, rtol=0)


def test_mixed_weights_distinguish_every_channel(tmp_path):
    sess = _load(build_onnx_probe(tmp_path / "mix.onnx", 140, 168, weights=(1.0, 10.0, 100.0), bias=-7.0))
    adapter = DepthAnythingAdapter.from_session(sess)
    bgr = _random_bgr(140, 168, seed=4)
    out = adapter.postprocess(sess.run(adapter.preprocess(bgr)))
    b, g, r = (bgr[:, :, i].astype(np.float64) for i in range(3))
    np.testing.assert_allclose(out, r + 10.0 * g + 100.0 * b - 7.0, atol=0.05, rtol=0)


# ------------------------------------------------------------------------------------------- resize back (numeric)

@pytest.mark.parametrize("builder,kwargs", [
    (build_axera_probe, {"height": 518, "width": 518}),
    (build_axera_probe, {"height": 518, "width": 518, "downsample": 2, "output_rank": 3}),
    (build_onnx_probe, {"height": None, "width": None}),
    (build_onnx_probe, {"height": 336, "width": 448, "output_rank": 4}),
])
def test_resize_back_reproduces_a_planar_image_function(tmp_path, builder, kwargs):
    sess = _load(builder(tmp_path / "m.onnx", weights=(1.0, 1.0, 0.0), **kwargs))
    adapter = DepthAnythingAdapter.from_session(sess, input_size=(280, 392) if kwargs["height"] is None else None)
    bgr, r, g = _ramps(480, 640)
    out = adapter.postprocess(sess.run(adapter.preprocess(bgr)), bgr.shape[:2])
    assert out.shape == (480, 640) and out.dtype == np.float32
    err = out - (r + g)
    inner = err[8:-8, 8:-8]
    # Linear ramps survive down+up resizing exactly up to uint8 rounding (cv2's fixed-point uint8 bilinear resize
    # biases each channel by about -0.04). A half-pixel misalignment would add a bias of ~0.2 per ramp
    # (slope ~0.34/px x 0.6 px).
    assert np.abs(inner).max() < 1.3
    assert abs(float(inner.mean())) < 0.12
    assert abs(float(err[8:-8].mean(axis=0)[8:-8].std())) < 0.3


def test_configured_output_size_wins(tmp_path):
    sess = _load(build_axera_probe(tmp_path / "ax.onnx", 518, 518))
    adapter = DepthAnythingAdapter.from_session(sess, output_size=(240, 320))
    bgr, r, _ = _ramps(480, 640)
    out = adapter.infer(sess, bgr)
    assert out.shape == (240, 320)
    ref = cv2.resize(r.astype(np.float32), (320, 240), interpolation=cv2.INTER_AREA)
    assert np.abs(out - ref)[4:-4, 4:-4].max() < 1.3


def test_infer_accepts_mono_and_bgra(tmp_path):
    sess = _load(build_onnx_probe(tmp_path / "m.onnx", 126, 168, weights=(1, 0, 0)))
    adapter = DepthAnythingAdapter.from_session(sess)
    gray = _random_bgr(126, 168)[:, :, 0].copy()
    np.testing.assert_allclose(adapter.infer(sess, gray), gray, atol=2e-3)
    bgra = np.dstack([_random_bgr(126, 168, seed=9), np.full((126, 168), 7, np.uint8)])
    np.testing.assert_allclose(adapter.infer(sess, bgra), bgra[:, :, 2], atol=2e-3)


# --------------------------------------------------------------------------------------------------- bad input

def test_bad_images_and_outputs_raise_depth_input_error():
    a = DepthAnythingAdapter.from_specs(AXERA_IN, AXERA_OUT)
    for bad in (np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 2), np.uint8), np.zeros((0, 5, 3), np.uint8),
                np.zeros((2, 10, 10, 3), np.uint8), [[1, 2, 3]]):
        with pytest.raises(DepthInputError):
            a.preprocess(bad)
    good = {"output": np.ones((1, 1, 518, 518), np.float32)}
    with pytest.raises(DepthInputError, match="output"):
        a.postprocess({"other": good["output"]}, (10, 10))
    with pytest.raises(DepthInputError, match=r"\[1, 2, 518, 518\]"):
        a.postprocess({"output": np.ones((1, 2, 518, 518), np.float32)}, (10, 10))
    with pytest.raises(DepthConfigError, match="out_size"):
        a.postprocess(good, (0, 10))
    assert a.postprocess([good["output"]]).shape == (518, 518)
    assert a.postprocess(good["output"][0], (5, 7)).shape == (5, 7)


# ------------------------------------------------------------------------------------------------- output modes

def test_mode_config_errors():
    for kwargs in ({"mode": "meters"}, {"mode": "scale_shift"}, {"mode": "scale_shift", "scale": 0.0, "shift": 1.0},
                   {"mode": "scale_shift", "scale": 1.0, "shift": float("nan")},
                   {"mode": "metric", "max_depth": -1.0}, {"mode": "inverse_relative", "max_depth": 10.0},
                   {"mode": "metric", "scale": 2.0, "shift": 0.0}):
        with pytest.raises(DepthConfigError):
            DepthAnythingAdapter.from_specs(AXERA_IN, AXERA_OUT, **kwargs)


def test_output_info_never_calls_relative_values_metres():
    rel = depth_output_info("inverse_relative")
    assert (rel.unit, rel.is_metric, rel.near_is_large) == ("1", False, True)
    assert "not metres" in rel.description
    for mode, kw in (("metric", {}), ("scale_shift", {"scale": 2.0, "shift": 0.1})):
        info = depth_output_info(mode, **kw)
        assert (info.unit, info.is_metric, info.near_is_large) == ("m", True, False)
    assert "scale=2" in depth_output_info("scale_shift", scale=2.0, shift=0.1).description
    with pytest.raises(DepthConfigError):
        depth_output_info("relative")


def _raw(values):
    return {"output": np.asarray(values, np.float32).reshape(1, 1, 1, -1)}


def test_inverse_relative_is_unchanged():
    a = DepthAnythingAdapter.from_specs(AXERA_IN, AXERA_OUT)
    vals = [-1.0, 0.0, 0.5, 7.25]
    np.testing.assert_array_equal(a.postprocess(_raw(vals))[0], vals)


def test_metric_mode_clips_and_invalidates():
    a = DepthAnythingAdapter.from_specs(AXERA_IN, AXERA_OUT, mode="metric", max_depth=20.0)
    out = a.postprocess(_raw([0.5, 19.0, 35.0, 0.0, -2.0, np.nan]))[0]
    np.testing.assert_array_equal(out[:3], [0.5, 19.0, 20.0])
    assert np.isnan(out[3:]).all()
    assert a.info.unit == "m" and "20 m" in a.info.description


def test_scale_shift_mode_matches_formula_and_marks_invalid():
    s, t = 0.8, -0.2
    a = DepthAnythingAdapter.from_specs(AXERA_IN, AXERA_OUT, mode="scale_shift", scale=s, shift=t, max_depth=50.0)
    inv = np.array([1.0, 2.0, 0.5, 0.25, 0.0, -3.0, 0.2501, np.inf], np.float32)
    out = a.postprocess(_raw(inv))[0]
    np.testing.assert_allclose(out[:3], 1.0 / (s * inv[:3] + t), rtol=1e-6)
    # 0.25 -> denominator 0 (inf); 0 and -3 -> negative; 0.2501 -> 12500 m > max_depth; inf -> 0 m
    assert np.isnan(out[3:]).all()


def test_fit_scale_shift_recovers_calibration():
    rng = np.random.default_rng(5)
    inv = rng.uniform(0.5, 5.0, (60, 80))
    s, t = 0.37, 0.05
    depth = 1.0 / (s * inv + t)
    depth[::7, ::5] = np.nan
    depth[3, 3] = -1.0
    got = fit_scale_shift(inv, depth)
    np.testing.assert_allclose(got, (s, t), rtol=1e-9, atol=1e-12)
    a = DepthAnythingAdapter.from_specs(AXERA_IN, AXERA_OUT, mode="scale_shift", scale=got[0], shift=got[1])
    back = a.postprocess({"output": inv.astype(np.float32)[None, None]})
    ok = np.isfinite(depth) & (depth > 0)
    np.testing.assert_allclose(back[ok], depth[ok], rtol=1e-5)
    with pytest.raises(DepthInputError):
        fit_scale_shift(np.ones((4, 4)), np.ones((4, 4)))


def test_detector_shaped_output_is_not_taken_for_a_depth_map():
    # a YOLO-style float32 [1,3,320,320] → [1,7,84] model fits the generic [1,H,W] pattern; its shape gives it away
    specs_in = [TensorSpec("images", (1, 3, 320, 320), np.dtype(np.float32))]
    with pytest.raises(DepthModelSignatureError, match="not a depth map"):
        DepthAnythingAdapter.from_specs(specs_in, [TensorSpec("output0", (1, 7, 84), np.dtype(np.float32))])
    half = DepthAnythingAdapter.from_specs(specs_in, [TensorSpec("depth", (1, 160, 160), np.dtype(np.float32))])
    assert half.input_hw == (320, 320)
