"""Class names: the COCO-80 list, label files, and matching names to a model's class count."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Sequence, Tuple, Union

__all__ = ["COCO80", "LabelsError", "load_labels", "resolve_labels"]

#: the 80 COCO detection classes in the order YOLO models trained on COCO output them
COCO80 = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)

LabelsLike = Union[None, str, os.PathLike, Sequence[str], Mapping[int, str]]


class LabelsError(ValueError):
    """A label file or label list is unreadable, malformed, or does not match the model's class count."""


def _from_mapping(mapping: Mapping, source: str) -> Tuple[str, ...]:
    try:
        items = {int(k): str(v) for k, v in mapping.items()}
    except (TypeError, ValueError):
        raise LabelsError(f"{source}: label keys must be integer class ids, got {list(mapping)[:5]}") from None
    if sorted(items) != list(range(len(items))):
        raise LabelsError(f"{source}: class ids must be 0..{len(items) - 1} without gaps, got {sorted(items)[:10]}")
    return tuple(items[i] for i in range(len(items)))


def _from_yaml(text: str, source: str) -> Tuple[str, ...]:
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - PyYAML is a runtime requirement
        raise LabelsError(f"{source}: PyYAML is needed to read YAML label files") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LabelsError(f"{source}: not valid YAML ({exc})") from None
    if isinstance(data, dict) and "names" in data:  # Ultralytics data.yaml / model metadata
        data = data["names"]
    if isinstance(data, dict):
        return _from_mapping(data, source)
    if isinstance(data, list) and all(isinstance(x, (str, int, float)) for x in data):
        return tuple(str(x) for x in data)
    raise LabelsError(f"{source}: YAML must be a list of names, a {{id: name}} mapping or have a 'names' key, "
                      f"got {type(data).__name__}")


def load_labels(path: Union[str, os.PathLike[str]]) -> Tuple[str, ...]:
    """Read class names from ``path``.

    ``.yaml``/``.yml``/``.json`` files hold a list of names, a ``{id: name}`` mapping, or a mapping with a ``names``
    key (Ultralytics ``data.yaml``). Any other file is plain text with one name per line; blank lines and lines
    starting with ``#`` are skipped and surrounding whitespace is stripped.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelsError(f"cannot read label file {str(p)!r}: {exc.strerror or exc}") from None
    if p.suffix.lower() in (".yaml", ".yml", ".json"):
        names = _from_yaml(text, str(p))
    else:
        names = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    if not names:
        raise LabelsError(f"label file {str(p)!r} holds no names")
    return names


def resolve_labels(labels: LabelsLike, num_classes: int, *, source: Optional[str] = None) -> Tuple[str, ...]:
    """Names for ``num_classes`` classes.

    ``labels`` may be ``None`` (COCO-80 when ``num_classes == 80``, else ``class_<i>``), a path to a label file,
    a sequence of names or a ``{id: name}`` mapping. A count that differs from ``num_classes`` raises
    :class:`LabelsError`.
    """
    if labels is None:
        return COCO80 if num_classes == 80 else tuple(f"class_{i}" for i in range(num_classes))
    if isinstance(labels, (str, os.PathLike)):
        names, where = load_labels(labels), f"label file {str(labels)!r}"
    elif isinstance(labels, Mapping):
        names, where = _from_mapping(labels, "labels mapping"), "labels mapping"
    else:
        try:
            names = tuple(str(x) for x in labels)
        except TypeError:
            raise LabelsError(f"labels must be a path, a sequence or a mapping, got {type(labels).__name__}") from None
        where = "labels"
    if len(names) != num_classes:
        model = f" ({source})" if source else ""
        raise LabelsError(f"{where} has {len(names)} names but the model{model} outputs {num_classes} classes")
    return names
