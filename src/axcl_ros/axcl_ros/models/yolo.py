"""YOLO detector adapter: pre/post-processing for the two YOLOv8/YOLO11 layouts, chosen from the model's TensorSpecs.

Layouts (read from the model, never configured):

``axera`` (AXERA's compiled YOLO11/YOLOv8 axmodels, graph cut before the DFL decode)
    one input ``uint8 [1,H,W,3]`` NHWC **BGR**, normalisation inside the model, letterbox pad 0;
    one output per stride, ``float [1,h,w,4·16+nc]`` NHWC: 4×16 DFL logits (l, t, r, b) then ``nc`` class logits;
    ``stride = H / h``.
``ultralytics`` (``yolo export format=onnx``)
    one input ``float32 [1,3,H,W]`` NCHW **RGB** /255, letterbox pad 114 (dynamic H/W → the configured size);
    one output ``float [1,4+nc,N]``: cx, cy, w, h in letterbox pixels, then sigmoided class scores.

Post-processing: the layout's decoder (:mod:`.yolo_decode`), confidence threshold, optional class filter, the
``max_candidates`` best boxes first when they span several classes (a cap that never changes the result), exact greedy
class-aware or agnostic NMS stopping at ``max_detections`` (:mod:`.nms`: onnxruntime's NonMaxSuppression operator),
and boxes mapped back to input-image pixels.
Settings: :class:`~.detector_config.DetectorConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..io.image import ImageConversionError
from ..runtime.base import TensorSpec
from .detector_config import DetectorConfig, DetectorConfigError
from .labels import LabelsError, LabelsLike, resolve_labels
from .letterbox import LetterboxInfo, letterbox, letterbox_nchw, rect_size, unletterbox_boxes
from .nms import greedy_nms
from .yolo_decode import REG_MAX, decode_axera, decode_ultralytics

__all__ = [
    "LAYOUT_AXERA",
    "LAYOUT_ULTRALYTICS",
    "DetectorConfig",
    "DetectorConfigError",
    "Detections",
    "ModelLayoutError",
    "ModelOutputError",
    "YoloAdapter",
    "probe_inputs",
]

LAYOUT_AXERA = "axera"
LAYOUT_ULTRALYTICS = "ultralytics"
_DEFAULT_SIZE = 640
_FLOATS = (np.dtype(np.float32), np.dtype(np.float16))


class ModelLayoutError(ValueError):
    """The model's inputs/outputs match no supported YOLO layout (the message lists what was found)."""


class ModelOutputError(ValueError):
    """The outputs given to :meth:`YoloAdapter.postprocess` do not match the model's output specs."""


@dataclass(frozen=True, eq=False)
class Detections:
    """Detections of one image, best score first, in pixels of the image given to ``preprocess``.

    ``boxes`` float32 K×4 ``x1, y1, x2, y2`` (clipped to the image), ``scores`` float32 K, ``class_ids`` int32 K,
    ``labels`` all class names of the model (``labels[class_id]``), ``image_size`` (h, w), ``source`` intp K: each
    detection's candidate in the model output (Ultralytics: the anchor column; AXERA: the cell index counted over
    the heads by ascending stride, row-major), for outputs that carry more per candidate (masks, keypoints).
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    labels: Tuple[str, ...]
    image_size: Tuple[int, int] = (0, 0)
    source: np.ndarray = field(default_factory=lambda: np.zeros(0, np.intp))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def names(self) -> List[str]:
        """Class name of each detection."""
        return [self.labels[int(c)] for c in self.class_ids]

    def centers_sizes(self) -> np.ndarray:
        """K×4 float64 ``center_x, center_y, size_x, size_y`` (vision_msgs BoundingBox2D convention)."""
        b = self.boxes.astype(np.float64)
        return np.column_stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])

    @classmethod
    def empty(cls, labels: Tuple[str, ...], image_size: Tuple[int, int] = (0, 0)) -> Detections:
        """No detections."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), labels, image_size)


def _describe(specs: Sequence[TensorSpec]) -> str:
    return "[" + ", ".join(s.describe() for s in specs) + "]" if specs else "[]"


def probe_inputs(spec: TensorSpec, size: Tuple[int, int]) -> List[Dict[str, np.ndarray]]:
    """Two zero inputs for a YOLO input ``spec`` whose height and width differ (``size``, then 32 rows and 64 columns
    more; fixed dimensions kept): the output shapes of runs on them tell which output dimensions follow the input
    (:func:`~axcl_ros.runtime.base.settle_dynamic_dims`). Empty for a spec that is not a 4-d image input."""
    if len(spec.shape) != 4:
        return []
    nhwc = np.dtype(spec.dtype) == np.uint8 and spec.shape[3] == 3
    feeds = []
    for extra_h, extra_w in ((0, 0), (32, 64)):
        h, w = size[0] + extra_h, size[1] + extra_w
        shape = [1, h, w, 3] if nhwc else [1, 3, h, w]
        shape = [d if d is not None else v for d, v in zip(spec.shape, shape)]
        feeds.append({spec.name: np.zeros(shape, spec.dtype)})
    return feeds


def _size_tuple(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        return int(size), int(size)
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ModelLayoutError(f"input_size must be an int or (height, width), got {size!r}") from None
    return h, w


class YoloAdapter:
    """Pre/post-processing of one YOLO model; build it with :meth:`from_specs` (or :meth:`from_session`).

    Attributes: ``layout`` (``"axera"``/``"ultralytics"``), ``input_name``, ``input_size`` (H, W), ``rect``
    (rectangular inference, see :meth:`frame_input_size`), ``num_classes``,
    ``labels``, ``strides`` (AXERA heads, ascending), ``output_names`` (in the order the decode uses them, i.e.
    by ascending stride) and ``model_output_names`` (the model's own order, as ``session.run`` returns them).
    Stateless per frame: ``preprocess``/``postprocess`` may run concurrently; ``config`` is swapped atomically.
    """

    def __init__(self, *, layout: str, input_spec: TensorSpec, output_specs: Sequence[TensorSpec],
                 input_size: Tuple[int, int], num_classes: int, labels: Tuple[str, ...],
                 strides: Tuple[int, ...] = (), config: Optional[DetectorConfig] = None,
                 model_output_names: Optional[Sequence[str]] = None):
        self.layout = layout
        self.input_spec = input_spec
        self.input_name = input_spec.name
        self.output_specs = tuple(output_specs)
        self.output_names = tuple(s.name for s in output_specs)
        self.model_output_names = tuple(model_output_names) if model_output_names else self.output_names
        self.input_size = input_size
        self.rect = False
        self.num_classes = num_classes
        self.labels = labels
        self.strides = strides
        self.pad_value = 0 if layout == LAYOUT_AXERA else 114
        self._config = DetectorConfig()
        self.config = config if config is not None else DetectorConfig()

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_session(cls, session: Any, labels: LabelsLike = None, **kwargs: Any) -> YoloAdapter:
        """:meth:`from_specs` with ``session.inputs`` / ``session.outputs``."""
        return cls.from_specs(session.inputs, session.outputs, labels, **kwargs)

    @classmethod
    def from_specs(cls, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], labels: LabelsLike = None, *,
                   config: Optional[DetectorConfig] = None,
                   input_size: Optional[Union[int, Sequence[int]]] = None, rect: bool = False) -> YoloAdapter:
        """Choose the layout from the model's own specs.

        ``labels``: names (sequence, ``{id: name}`` or label-file path); default COCO-80 when the model has 80
        classes, else ``class_<i>``. ``input_size``: (H, W) or int used when the model's input H/W are dynamic
        (default 640; must be a multiple of 32); for a fixed-size model it must agree with the model. ``rect``: for a
        model with a dynamic input, letterbox each image into the smallest multiple-of-32 rectangle that holds it
        at ``input_size`` instead of the full ``input_size`` (ignored for a fixed-size model).
        Raises :class:`ModelLayoutError` when the specs match neither layout, and
        :class:`~axcl_ros.models.labels.LabelsError` when the label count differs from the model's class count.
        """
        inputs, outputs = list(inputs), list(outputs)
        found = (f"found inputs {_describe(inputs)}, outputs {_describe(outputs)}; expected either AXERA YOLO "
                 "(input uint8[1,H,W,3] NHWC; outputs float[1,H/s,W/s,64+nc] per stride s) or Ultralytics YOLO "
                 "(input float32[1,3,H,W]; output float[1,4+nc,N])")
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or not outputs:
            raise ModelLayoutError(f"not a YOLO detector: {found}")
        spec = inputs[0]
        dtype = np.dtype(spec.dtype)
        batch_ok = spec.shape[0] in (None, 1)
        if dtype == np.uint8 and spec.shape[3] == 3 and batch_ok:
            adapter = cls._axera(spec, outputs, labels, config, input_size, found)
            adapter.rect = rect and None in spec.shape[1:3]
            return adapter
        if dtype in _FLOATS and spec.shape[1] == 3 and batch_ok:
            adapter = cls._ultralytics(spec, outputs, labels, config, input_size, found)
            adapter.rect = rect and None in spec.shape[2:4]
            return adapter
        raise ModelLayoutError(f"input {spec.describe()} is neither uint8[1,H,W,3] nor float32[1,3,H,W]: {found}")

    @staticmethod
    def _model_size(spec_hw: Tuple[Optional[int], Optional[int]], input_size: Any, found: str,
                    multiple: int) -> Tuple[int, int]:
        h, w = spec_hw
        if h is not None and w is not None:
            if input_size is not None and _size_tuple(input_size) != (h, w):
                raise ModelLayoutError(f"input_size {_size_tuple(input_size)} conflicts with the model's fixed "
                                       f"input {h}x{w}: {found}")
            return h, w
        size = _size_tuple(_DEFAULT_SIZE if input_size is None else input_size)
        size = (h or size[0], w or size[1])
        if size[0] <= 0 or size[1] <= 0 or size[0] % multiple or size[1] % multiple:
            raise ModelLayoutError(f"input_size {size} must be positive multiples of {multiple} for this model "
                                   f"with a dynamic input: {found}")
        return size

    @classmethod
    def _axera(cls, spec: TensorSpec, outputs: List[TensorSpec], labels: LabelsLike,
               config: Optional[DetectorConfig], input_size: Any, found: str) -> YoloAdapter:
        bad = [o.describe() for o in outputs
               if len(o.shape) != 4 or o.shape[0] not in (None, 1) or np.dtype(o.dtype) not in _FLOATS
               or o.shape[3] is None or o.shape[3] <= 4 * REG_MAX]
        if bad:
            raise ModelLayoutError(f"uint8 NHWC input, but outputs {bad} are not float[1,h,w,64+nc] DFL heads: {found}")
        channels = {o.shape[3] for o in outputs}
        if len(channels) != 1:
            raise ModelLayoutError(f"DFL heads disagree on the channel count {sorted(channels)}: {found}")
        nc = channels.pop() - 4 * REG_MAX
        size = cls._model_size((spec.shape[1], spec.shape[2]), input_size, found, 32)
        strides = []
        for i, o in enumerate(outputs):
            gh, gw = o.shape[1], o.shape[2]
            if gh is None or gw is None:
                strides.append(8 * 2 ** i)  # dynamic grid: assume the usual P3/P4/P5 order
                continue
            if size[0] % gh or size[1] % gw or size[0] // gh != size[1] // gw:
                raise ModelLayoutError(f"head {o.describe()} is not an integer stride of the {size[0]}x{size[1]} "
                                       f"input: {found}")
            strides.append(size[0] // gh)
        if len(set(strides)) != len(strides):
            raise ModelLayoutError(f"DFL heads share a stride {strides}: {found}")
        order = sorted(range(len(outputs)), key=lambda i: strides[i])
        names = resolve_labels(labels, nc, source=f"{len(outputs)} DFL heads with {nc} classes")
        return cls(layout=LAYOUT_AXERA, input_spec=spec, output_specs=[outputs[i] for i in order], input_size=size,
                   num_classes=nc, labels=names, strides=tuple(strides[i] for i in order), config=config,
                   model_output_names=[o.name for o in outputs])

    @classmethod
    def _ultralytics(cls, spec: TensorSpec, outputs: List[TensorSpec], labels: LabelsLike,
                     config: Optional[DetectorConfig], input_size: Any, found: str) -> YoloAdapter:
        out = outputs[0]
        if (len(outputs) != 1 or len(out.shape) != 3 or out.shape[0] not in (None, 1)
                or np.dtype(out.dtype) not in _FLOATS or out.shape[1] is None or out.shape[1] <= 4):
            raise ModelLayoutError(f"float32 NCHW input, but the outputs are not one float[1,4+nc,N]: {found}")
        nc = out.shape[1] - 4
        size = cls._model_size((spec.shape[2], spec.shape[3]), input_size, found, 32)
        anchors = sum((size[0] // s) * (size[1] // s) for s in (8, 16, 32))
        if out.shape[2] is not None and out.shape[2] != anchors:
            raise ModelLayoutError(f"output {out.describe()} has {out.shape[2]} boxes, but a {size[0]}x{size[1]} "
                                   f"input gives {anchors} anchors at strides 8/16/32: {found}")
        names = resolve_labels(labels, nc, source=f"{out.describe()} with {nc} classes")
        return cls(layout=LAYOUT_ULTRALYTICS, input_spec=spec, output_specs=[out], input_size=size,
                   num_classes=nc, labels=names, config=config)

    # ---------------------------------------------------------------------------------------------- config
    @property
    def config(self) -> DetectorConfig:
        """Current :class:`DetectorConfig`; assigning validates the class ids against the model."""
        return self._config

    @config.setter
    def config(self, value: DetectorConfig) -> None:
        if not isinstance(value, DetectorConfig):
            raise DetectorConfigError(f"config must be a DetectorConfig, got {type(value).__name__}")
        self._check_classes(value)
        self._config = value

    def update_config(self, **changes: Any) -> DetectorConfig:
        """Replace some settings (validated) and return the new config."""
        self.config = self._config.replace(**changes)
        return self._config

    def _check_classes(self, config: DetectorConfig) -> None:
        if config.classes is not None:
            bad = sorted(c for c in config.classes if c >= self.num_classes)
            if bad:
                raise DetectorConfigError(f"class ids {bad} out of range: the model has {self.num_classes} classes")

    def class_ids(self, names: Iterable[str]) -> FrozenSet[int]:
        """Class ids of ``names`` (for ``DetectorConfig.classes``); unknown names raise ``LabelsError``."""
        index = {n: i for i, n in enumerate(self.labels)}
        names = list(names)
        unknown = [n for n in names if n not in index]
        if unknown:
            raise LabelsError(f"unknown class names {unknown}; the model's classes are {list(self.labels)}")
        return frozenset(index[n] for n in names)

    # ------------------------------------------------------------------------------------------ preprocess
    def frame_input_size(self, image_size: Tuple[int, int]) -> Tuple[int, int]:
        """The network input (H, W) for an image of ``image_size`` (h, w): ``input_size``, or with ``rect`` the
        smallest multiple-of-32 rectangle holding the image scaled to fit ``input_size`` (640×480 camera → 480×640
        input instead of 640×640: a quarter less model work for the same detections' resolution)."""
        return rect_size(image_size, self.input_size, 32) if self.rect else self.input_size

    def preprocess(self, bgr_image: np.ndarray) -> Tuple[dict, LetterboxInfo]:
        """Letterbox a BGR uint8 image (H×W×3; mono H×W and BGRA H×W×4 are converted) into the model input.

        Returns ``({input name: tensor}, LetterboxInfo)``; pass the info to :meth:`postprocess`.
        Raises :class:`~axcl_ros.io.image.ImageConversionError` (field ``image``) for anything else.
        """
        img = bgr_image
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim not in (2, 3) or img.size == 0:
            got = f"{img.dtype.name}{list(img.shape)}" if isinstance(img, np.ndarray) else type(img).__name__
            raise ImageConversionError("image", f"needs a non-empty uint8 H×W×3 BGR image, got {got}")
        if img.ndim == 3 and img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        elif img.ndim == 2 or img.shape[2] == 1:
            img = cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR)
        elif img.shape[2] != 3:
            raise ImageConversionError("image", f"needs 1, 3 or 4 channels, got shape {list(img.shape)}")
        size = self.frame_input_size(img.shape[:2])
        if self.layout == LAYOUT_AXERA:
            boxed, info = letterbox(img, size, self.pad_value)
            tensor = boxed[None]
        else:  # letterbox + BGR→RGB + /255 + HWC→CHW in one pass into the input tensor
            tensor, info = letterbox_nchw(img, size, self.pad_value, dtype=self.input_spec.dtype)
        return {self.input_name: tensor}, info

    # ----------------------------------------------------------------------------------------- postprocess
    def _gather(self, outputs: Union[Mapping[str, np.ndarray], Sequence[np.ndarray]]) -> List[np.ndarray]:
        if isinstance(outputs, Mapping):
            missing = [n for n in self.output_names if n not in outputs]
            if missing:
                raise ModelOutputError(f"outputs {missing} missing; got {sorted(outputs)}; the model has "
                                       f"{_describe(self.output_specs)}")
            arrays = [outputs[n] for n in self.output_names]
        else:
            arrays = list(outputs)
            if len(arrays) != len(self.output_specs):
                raise ModelOutputError(f"expected {len(self.output_specs)} outputs "
                                       f"{_describe(self.output_specs)}, got {len(arrays)}")
            by_name = dict(zip(self.model_output_names, arrays))
            arrays = [by_name[n] for n in self.output_names]
        for spec, arr in zip(self.output_specs, arrays):
            if not isinstance(arr, np.ndarray) or arr.ndim != len(spec.shape) or arr.shape[0] != 1 or any(
                    d is not None and d != a for d, a in zip(spec.shape[1:], arr.shape[1:])):
                got = f"{arr.dtype.name}{list(arr.shape)}" if isinstance(arr, np.ndarray) else type(arr).__name__
                raise ModelOutputError(f"output {spec.name!r} expects {spec.describe()} (batch 1), got {got}")
        return arrays

    def postprocess(self, outputs: Union[Mapping[str, np.ndarray], Sequence[np.ndarray]], meta: LetterboxInfo,
                    config: Optional[DetectorConfig] = None) -> Detections:
        """Decode raw outputs (``{name: array}``, or a list in the model's output order as ``session.run``
        returns it) into :class:`Detections`.

        ``meta`` is the :class:`LetterboxInfo` from :meth:`preprocess`; ``config`` overrides ``self.config`` for
        this call. Raises :class:`ModelOutputError` when the arrays do not match the model's outputs.
        """
        if not isinstance(meta, LetterboxInfo):
            raise TypeError(f"meta must be the LetterboxInfo returned by preprocess, got {type(meta).__name__}")
        if config is None:
            config = self._config
        else:
            self._check_classes(config)
        arrays = self._gather(outputs)
        cls_ids = None if config.classes is None else np.array(sorted(config.classes), np.intp)
        if self.layout == LAYOUT_AXERA:
            boxes, scores, classes, source = decode_axera(arrays, self.strides, config.conf_threshold, cls_ids)
        else:
            boxes, scores, classes, source = decode_ultralytics(arrays[0], config.conf_threshold, cls_ids)
        return self._finish(boxes, scores, classes, meta, config, source)

    def _finish(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, meta: LetterboxInfo,
                config: DetectorConfig, source: np.ndarray) -> Detections:
        """NMS over the ``max_candidates`` best candidates first (when they span several classes), mapping back to
        the image; the same boxes as without the cap.

        Greedy NMS visits candidates best score first (ties: lower index first) and decides each one from the boxes
        kept before it, so NMS over a prefix of that order gives a prefix of the full result. When the prefix does
        not yield ``max_detections`` detections, NMS continues over the boxes it kept plus the rest of the
        candidates (the kept boxes come first in the order and never suppress each other), which is the full greedy
        result without redoing the prefix. NMS stops at ``max_detections`` kept boxes per class, so with one class
        (or agnostic NMS) that stop is the cap and the prefix pass would only repeat work.
        """
        if scores.size == 0:
            return Detections.empty(self.labels, meta.image_size)
        k = config.max_candidates
        if scores.size <= k or config.agnostic_nms or not (classes != classes[0]).any():
            # one NMS class: its early stop at max_detections already bounds the work better than the cap (NMS
            # sorts the candidates itself)
            return self._select(boxes, scores, classes, source, meta, config, np.arange(scores.size))[0]
        order = np.argsort(-scores, kind="stable")  # the greedy visiting order
        dets, kept = self._select(boxes, scores, classes, source, meta, config, order[:k])
        if len(dets) >= config.max_detections:
            return dets
        return self._select(boxes, scores, classes, source, meta, config, np.concatenate([kept, order[k:]]))[0]

    def _select(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, source: np.ndarray,
                meta: LetterboxInfo, config: DetectorConfig, subset: np.ndarray) -> Tuple[Detections, np.ndarray]:
        """Detections of NMS over ``subset`` (candidate indices), and all boxes NMS kept (best first).

        NMS stops at ``max_detections`` kept boxes per class; if boxes that map to nothing in the image (wholly in
        the padding) leave fewer detections than that, it runs again without the stop.
        """
        cls = None if config.agnostic_nms else classes[subset]
        limit = config.max_detections
        while True:
            idx = subset[greedy_nms(boxes[subset], scores[subset], cls, config.iou_threshold, limit)]
            mapped = unletterbox_boxes(boxes[idx], meta)
            nonempty = (mapped[:, 2] > mapped[:, 0]) & (mapped[:, 3] > mapped[:, 1])
            found = int(np.count_nonzero(nonempty))
            if limit is None or found >= config.max_detections or idx.size < limit:
                break
            limit = None
        kept = idx
        idx, mapped = idx[nonempty][:config.max_detections], mapped[nonempty][:config.max_detections]
        return Detections(mapped, scores[idx], classes[idx], self.labels, meta.image_size, source[idx]), kept
