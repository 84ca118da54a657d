"""Depth Anything V2 adapter: image pre-processing, output decoding and the meaning of the output (no rclpy).

Two model signatures are recognised from the session's tensor specs:

* ``axera_u8_nhwc`` - AXERA's compiled DA-V2 (``depth_anything_v2_vits_ax650.axmodel``): uint8 ``[1,H,W,3]`` **RGB**,
  plain resize (no letterbox); ImageNet normalisation is embedded in the model. Output float32 ``[1,1,H,W]``.
* ``onnx_f32_nchw`` - ONNX exports for the CPU backend: float32 ``[1,3,H,W]`` ImageNet-normalised RGB, fixed or
  dynamic H/W (dynamic: the configured ``input_size``, a multiple of 14, default 518). Output ``[1,H,W]`` or
  ``[1,1,H,W]``.

What the output *means* is declared by the caller with ``mode`` (the model file does not say):

* ``inverse_relative`` - relative (affine-invariant) inverse depth, larger = nearer, no unit. The published DA-V2
  relative checkpoints and AXERA's axmodel give this.
* ``metric`` - the checkpoint outputs metres (DA-V2 metric fine-tunes); optional ``max_depth`` clip.
* ``scale_shift`` - metres from a calibration of relative inverse depth: ``depth = 1 / (scale * inv + shift)``;
  a non-positive or non-finite denominator gives NaN (see :func:`fit_scale_shift`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from axcl_ros.runtime.base import TensorSpec

#: ImageNet statistics (RGB order) used by Depth Anything V2 training and by AXERA's build config.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ViT-S/14 patch size: model input sides must be multiples of this.
PATCH = 14
DEFAULT_INPUT_SIZE = 518

LAYOUT_AXERA = "axera_u8_nhwc"
LAYOUT_ONNX = "onnx_f32_nchw"

MODE_INVERSE_RELATIVE = "inverse_relative"
MODE_METRIC = "metric"
MODE_SCALE_SHIFT = "scale_shift"
MODES = (MODE_INVERSE_RELATIVE, MODE_METRIC, MODE_SCALE_SHIFT)


class DepthModelSignatureError(ValueError):
    """The model's inputs/outputs are not a Depth Anything layout this adapter knows."""


class DepthConfigError(ValueError):
    """An adapter option (mode, sizes, calibration) is invalid or contradicts the model."""


class DepthInputError(ValueError):
    """An image, model output or size handed to the adapter is malformed."""


@dataclass(frozen=True)
class DepthOutputInfo:
    """What the adapter's output map is (unit, direction, ``encoding``), for the node and for documentation."""

    mode: str
    #: ``m`` or ``1`` (dimensionless, relative)
    unit: str
    #: True when values are metres along the optical axis
    is_metric: bool
    #: True when a larger value means a nearer surface (use ``invert`` in colourising otherwise)
    near_is_large: bool
    description: str
    encoding: str = "32FC1"


def depth_output_info(mode: str, *, scale: Optional[float] = None, shift: Optional[float] = None,
                      max_depth: Optional[float] = None) -> DepthOutputInfo:
    """Describe the output of ``mode`` truthfully (which unit it deserves)."""
    if mode == MODE_INVERSE_RELATIVE:
        return DepthOutputInfo(mode, "1", False, True,
                               "relative inverse depth (affine-invariant, larger = nearer, no unit); not metres")
    if mode == MODE_METRIC:
        clip = f", clipped at {max_depth:g} m" if max_depth is not None else ""
        return DepthOutputInfo(mode, "m", True, False,
                               f"metric depth in metres along the optical axis from a metric checkpoint{clip}")
    if mode == MODE_SCALE_SHIFT:
        cal = f" (scale={scale:g}, shift={shift:g})" if scale is not None and shift is not None else ""
        lim = f", NaN beyond {max_depth:g} m" if max_depth is not None else ""
        return DepthOutputInfo(mode, "m", True, False,
                               f"depth in metres = 1/(scale*inverse_depth + shift) from a calibration{cal}; "
                               f"NaN where undefined{lim}")
    raise DepthConfigError(f"mode must be one of {list(MODES)}, got {mode!r}")


def fit_scale_shift(inverse_relative: np.ndarray, depth_m: np.ndarray,
                    mask: Optional[np.ndarray] = None) -> Tuple[float, float]:
    """Least-squares ``(scale, shift)`` with ``1/depth_m ~= scale * inverse_relative + shift`` on valid pixels.

    Valid: finite inverse depth, finite ``depth_m > 0`` and ``mask`` (if given). Needs at least 2 distinct values.
    """
    inv = np.asarray(inverse_relative, dtype=np.float64)
    dep = np.asarray(depth_m, dtype=np.float64)
    if inv.shape != dep.shape:
        raise DepthInputError(f"inverse_relative {list(inv.shape)} and depth_m {list(dep.shape)} differ in shape")
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(inv) & np.isfinite(dep) & (dep > 0)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != inv.shape:
            raise DepthInputError(f"mask {list(m.shape)} does not match {list(inv.shape)}")
        ok &= m
    x, y = inv[ok], 1.0 / dep[ok]
    if x.size < 2 or np.ptp(x) == 0:
        raise DepthInputError(f"need >= 2 valid pixels with distinct inverse depth, got {x.size}")
    a = np.stack([x, np.ones_like(x)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(scale), float(shift)


Size = Union[int, Tuple[int, int], Sequence[int]]


def _hw(value: Size, name: str) -> Tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        h = w = int(value)
    else:
        try:
            h, w = (int(v) for v in value)  # type: ignore[union-attr]
        except (TypeError, ValueError) as exc:
            raise DepthConfigError(f"{name} must be an int or (height, width), got {value!r}") from exc
    if h <= 0 or w <= 0:
        raise DepthConfigError(f"{name} must be positive, got {value!r}")
    return h, w


def _output_hw(spec: TensorSpec) -> Optional[Tuple[Optional[int], Optional[int]]]:
    """(H, W) of a ``[1,H,W]``/``[1,1,H,W]`` float32 output spec (dims may be None), else None."""
    if np.dtype(spec.dtype) != np.float32:
        return None
    shape = tuple(spec.shape)
    if len(shape) == 4 and shape[0] in (1, None) and shape[1] in (1, None):
        return shape[2], shape[3]
    if len(shape) == 3 and shape[0] in (1, None):
        return shape[1], shape[2]
    return None


class DepthAnythingAdapter:
    """Pre/post-processing for one Depth Anything V2 session; build it with :meth:`from_specs`."""

    def __init__(self, *, layout: str, input_name: str, output_name: str, input_hw: Tuple[int, int],
                 mode: str = MODE_INVERSE_RELATIVE, max_depth: Optional[float] = None,
                 scale: Optional[float] = None, shift: Optional[float] = None,
                 output_size: Optional[Size] = None, interpolation: Optional[int] = None) -> None:
        """Prefer :meth:`from_specs`, which derives ``layout``, names and ``input_hw`` from the model."""
        if layout not in (LAYOUT_AXERA, LAYOUT_ONNX):
            raise DepthConfigError(f"layout must be {LAYOUT_AXERA!r} or {LAYOUT_ONNX!r}, got {layout!r}")
        self.layout = layout
        self.input_name = input_name
        self.output_name = output_name
        self.input_hw = _hw(input_hw, "input_hw")
        self.output_size = None if output_size is None else _hw(output_size, "output_size")
        # AXERA's samples resize with cv2 defaults (bilinear); the official DA-V2 transform uses bicubic.
        if interpolation is None:
            interpolation = cv2.INTER_LINEAR if layout == LAYOUT_AXERA else cv2.INTER_CUBIC
        self.interpolation = int(interpolation)
        self._set_mode(mode, max_depth, scale, shift)
        mean = np.asarray(IMAGENET_MEAN, np.float32) * 255.0
        std = np.asarray(IMAGENET_STD, np.float32) * 255.0
        self._norm_scale = (1.0 / std).astype(np.float32)
        self._norm_offset = (-mean / std).astype(np.float32)

    def _set_mode(self, mode: str, max_depth, scale, shift) -> None:
        if mode not in MODES:
            raise DepthConfigError(f"mode must be one of {list(MODES)}, got {mode!r}")
        if max_depth is not None:
            if mode == MODE_INVERSE_RELATIVE:
                raise DepthConfigError("max_depth is in metres and does not apply to mode 'inverse_relative'")
            if not (np.isfinite(max_depth) and max_depth > 0):
                raise DepthConfigError(f"max_depth must be a positive number of metres, got {max_depth!r}")
            max_depth = float(max_depth)
        if mode == MODE_SCALE_SHIFT:
            if scale is None or shift is None:
                raise DepthConfigError(f"mode 'scale_shift' needs scale and shift, got scale={scale!r}, "
                                       f"shift={shift!r}")
            if not (np.isfinite(scale) and np.isfinite(shift)) or scale == 0:
                raise DepthConfigError(f"scale must be finite and non-zero and shift finite, got scale={scale!r}, "
                                       f"shift={shift!r}")
            scale, shift = float(scale), float(shift)
        elif scale is not None or shift is not None:
            raise DepthConfigError(f"scale/shift only apply to mode 'scale_shift', not {mode!r}")
        self.mode, self.max_depth, self.scale, self.shift = mode, max_depth, scale, shift

    @classmethod
    def from_specs(cls, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], *,
                   input_size: Optional[Size] = None, mode: str = MODE_INVERSE_RELATIVE,
                   max_depth: Optional[float] = None, scale: Optional[float] = None, shift: Optional[float] = None,
                   output_size: Optional[Size] = None, interpolation: Optional[int] = None,
                   ) -> DepthAnythingAdapter:
        """Pick the layout from the model's tensor specs (see the module docstring).

        ``input_size`` (int or (h, w)) is used for dynamic H/W and must then be a multiple of 14 (default 518); for
        a fixed-size model it must be None or equal to the model's size. Raises :class:`DepthModelSignatureError`
        listing the specs when the model is not a supported layout.
        """
        def show(specs: Sequence[TensorSpec]) -> list:
            return [s.describe() + (f" ({s.layout})" if s.layout else "") for s in specs]

        found = f"inputs {show(inputs)}, outputs {show(outputs)}"
        if len(inputs) != 1 or len(outputs) != 1:
            raise DepthModelSignatureError(f"Depth Anything needs exactly 1 input and 1 output; found {found}")
        spec_in, spec_out = inputs[0], outputs[0]
        shape = tuple(spec_in.shape)
        dtype = np.dtype(spec_in.dtype)
        layout = None
        if len(shape) == 4 and shape[0] in (1, None):
            if dtype == np.uint8 and shape[3] == 3:
                layout, model_hw = LAYOUT_AXERA, (shape[1], shape[2])
            elif dtype == np.float32 and shape[1] == 3:
                layout, model_hw = LAYOUT_ONNX, (shape[2], shape[3])
        if layout is not None and spec_in.layout and spec_in.layout != ("NHWC" if layout == LAYOUT_AXERA else "NCHW"):
            layout = None  # the backend's declared layout contradicts the shape
        out_hw = _output_hw(spec_out)
        if layout is None or out_hw is None:
            raise DepthModelSignatureError(
                "not a Depth Anything V2 signature: expected input uint8 [1,H,W,3] (AXERA, RGB) or float32 "
                "[1,3,H,W] (ONNX) and output float32 [1,1,H,W] or [1,H,W]; found " + found)
        want = None if input_size is None else _hw(input_size, "input_size")
        hw = []
        for axis, dim in enumerate(model_hw):
            if dim is None:
                value = DEFAULT_INPUT_SIZE if want is None else want[axis]
                if value % PATCH:
                    raise DepthConfigError(f"input_size {want} must be a multiple of {PATCH} for a dynamic model; "
                                           f"found {found}")
                hw.append(value)
            else:
                if want is not None and want[axis] != dim:
                    raise DepthConfigError(f"input_size {want} contradicts the model's fixed size; found {found}")
                hw.append(int(dim))
        oh, ow = out_hw
        if oh is not None and ow is not None:
            ratio_in, ratio_out = hw[0] / hw[1], oh / ow
            if abs(ratio_out - ratio_in) > 0.02 * ratio_in or oh * 16 < hw[0]:
                raise DepthModelSignatureError(
                    f"output {oh}x{ow} is not a depth map of the {hw[0]}x{hw[1]} input (a depth model outputs the "
                    f"input's size or a fixed fraction of it); found {found}")
        return cls(layout=layout, input_name=spec_in.name, output_name=spec_out.name, input_hw=(hw[0], hw[1]),
                   mode=mode, max_depth=max_depth, scale=scale, shift=shift, output_size=output_size,
                   interpolation=interpolation)

    @classmethod
    def from_session(cls, session, **kwargs) -> DepthAnythingAdapter:
        """:meth:`from_specs` on a :class:`~axcl_ros.runtime.base.Session`'s ``inputs``/``outputs``."""
        return cls.from_specs(session.inputs, session.outputs, **kwargs)

    @property
    def info(self) -> DepthOutputInfo:
        """Meaning of :meth:`postprocess`'s output (unit, metric or not)."""
        return depth_output_info(self.mode, scale=self.scale, shift=self.shift, max_depth=self.max_depth)

    def _rgb_resized(self, bgr: np.ndarray) -> np.ndarray:
        img = bgr
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.size == 0:
            got = f"{img.dtype}{list(img.shape)}" if isinstance(img, np.ndarray) else type(img).__name__
            raise DepthInputError(f"image must be a non-empty uint8 array (bgr8, bgra8 or mono8), got {got}")
        if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
            code = cv2.COLOR_GRAY2RGB
        elif img.ndim == 3 and img.shape[2] == 3:
            code = cv2.COLOR_BGR2RGB
        elif img.ndim == 3 and img.shape[2] == 4:
            code = cv2.COLOR_BGRA2RGB
        else:
            raise DepthInputError(f"image must be HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA), got shape "
                                  f"{list(img.shape)}")
        h, w = self.input_hw
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=self.interpolation)
        return cv2.cvtColor(img, code)

    def preprocess(self, bgr: np.ndarray) -> dict:
        """``{input name: tensor}`` for a ``bgr8`` image (any size; mono8/bgra8 accepted too)."""
        rgb = self._rgb_resized(bgr)
        if self.layout == LAYOUT_AXERA:
            return {self.input_name: rgb[None]}
        x = rgb.astype(np.float32)
        x *= self._norm_scale
        x += self._norm_offset
        return {self.input_name: np.ascontiguousarray(x.transpose(2, 0, 1)[None])}

    def raw_map(self, outputs: Union[Mapping[str, np.ndarray], Sequence[np.ndarray], np.ndarray]) -> np.ndarray:
        """The model's output as a float32 HxW array at model resolution (no resize, no mode conversion)."""
        if isinstance(outputs, Mapping):
            if self.output_name not in outputs:
                raise DepthInputError(f"outputs lack {self.output_name!r}; got {sorted(outputs)}")
            arr = outputs[self.output_name]
        elif isinstance(outputs, np.ndarray):
            arr = outputs
        else:
            if len(outputs) != 1:
                raise DepthInputError(f"expected 1 output array, got {len(outputs)}")
            arr = outputs[0]
        arr = np.asarray(arr)
        shape = arr.shape
        if arr.ndim == 4 and shape[:2] == (1, 1):
            arr = arr[0, 0]
        elif arr.ndim == 3 and shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2 or arr.size == 0 or not np.issubdtype(arr.dtype, np.floating):
            raise DepthInputError(f"output {self.output_name!r} must be float [1,1,H,W], [1,H,W] or [H,W], "
                                  f"got {arr.dtype}{list(shape)}")
        return arr.astype(np.float32, copy=False)

    def postprocess(self, outputs, out_size: Optional[Size] = None) -> np.ndarray:
        """Float32 map resized to ``output_size`` (if configured) else ``out_size`` (h, w) else model resolution.

        Values follow :attr:`mode` (see :attr:`info`): resizing happens on the raw output (inverse depth), then the
        mode's conversion runs, so NaNs never get smeared by interpolation. Always returns a new array.
        """
        raw = self.raw_map(outputs)
        target = self.output_size if self.output_size is not None else (
            None if out_size is None else _hw(out_size, "out_size"))
        if target is not None and raw.shape != target:
            out = cv2.resize(raw, (target[1], target[0]), interpolation=cv2.INTER_LINEAR)
        else:
            out = raw.copy()
        return self.convert(out)

    def convert(self, raw: np.ndarray) -> np.ndarray:
        """Apply the output mode to a raw float32 map, in place when possible; returns the result."""
        if self.mode == MODE_INVERSE_RELATIVE:
            return raw
        if self.mode == MODE_METRIC:
            with np.errstate(invalid="ignore"):
                raw[~(raw > 0)] = np.nan
            if self.max_depth is not None:
                np.minimum(raw, np.float32(self.max_depth), out=raw)
            return raw
        den = raw * np.float32(self.scale)
        den += np.float32(self.shift)
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.reciprocal(den, out=den)
            bad = ~(depth > 0) | ~np.isfinite(depth)  # denominator <= 0, NaN or 0 (-> inf)
            if self.max_depth is not None:
                bad |= depth > self.max_depth
        depth[bad] = np.nan
        return depth

    def infer(self, session, bgr: np.ndarray, out_size: Optional[Size] = None) -> np.ndarray:
        """``postprocess(session.run(preprocess(bgr)))``, resized to the image size unless ``out_size`` is given."""
        feeds = self.preprocess(bgr)
        outputs = session.run(feeds, [self.output_name])
        return self.postprocess(outputs, out_size if out_size is not None else bgr.shape[:2])
