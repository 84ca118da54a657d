"""Whisper speech recognition: log-mel front end, tokenizer, runners, host decode loop, CT2 → ONNX converter.

Public names are imported lazily, so ``import axcl_ros.models.whisper`` does not load onnx or tokenizers.
Submodules: ``mel``, ``tokenizer``, ``config``, ``runner``, ``decoding``, ``ct2``, ``export_onnx``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "log_mel_spectrogram": "mel", "mel_filters": "mel", "MelError": "mel",
    "WhisperTokenizer": "tokenizer", "TokenizerError": "tokenizer", "LANGUAGE_CODES": "tokenizer",
    "WhisperConfig": "config", "ConfigError": "config", "load_config": "config",
    "WhisperRunner": "runner", "SessionWhisperRunner": "runner", "SchemaARunner": "runner",
    "WhisperModelError": "runner", "WhisperInputError": "runner",
    "transcribe": "decoding", "decode": "decoding", "DecodeOptions": "decoding", "TranscriptionResult": "decoding",
    "Segment": "decoding", "DecodeError": "decoding",
    "read_ct2_model": "ct2", "Ct2FormatError": "ct2",
    "convert_ct2_to_onnx": "export_onnx", "ExportError": "export_onnx",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
