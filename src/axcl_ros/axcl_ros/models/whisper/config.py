"""Whisper model dimensions and token metadata, read from a config json, a CTranslate2 model or session specs.

The json format is AXERA's ``{t}_config.json`` (also written by :mod:`.export_onnx` as ``config.json``): keys
``n_mels, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, n_vocab, n_text_ctx, n_text_state, n_text_head,
n_text_layer, sot_sequence, all_language_tokens, all_language_codes, sot, sot_index, eot, blank_id,
is_multilingual, no_speech, non_speech_tokens, transcribe, translate, sot_prev, sot_lm, no_timestamps``.
List values may be json lists or comma-separated strings (the ONNX-metadata variant).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

__all__ = ["ConfigError", "WhisperConfig", "load_config", "TOKEN_KEYS", "DIM_KEYS"]

N_TEXT_CTX = 448
DIM_KEYS = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer", "n_vocab", "n_text_ctx",
            "n_text_state", "n_text_head", "n_text_layer")
TOKEN_KEYS = ("sot", "eot", "blank_id", "no_speech", "transcribe", "translate", "sot_prev", "sot_lm",
              "no_timestamps", "sot_index")
LIST_KEYS = ("sot_sequence", "all_language_tokens", "non_speech_tokens")


class ConfigError(ValueError):
    """A config file is missing, unreadable, or lacks/has a bad value for a key (named in the message)."""


@dataclass
class WhisperConfig:
    """Whisper dimensions (OpenAI ``ModelDimensions`` names) plus optional token metadata.

    Unknown dimensions are ``None``; :meth:`require` raises :class:`ConfigError` naming the missing ones.
    ``tokens`` holds the token-id keys of :data:`TOKEN_KEYS` and :data:`LIST_KEYS` that were present, plus
    ``all_language_codes``.
    """

    n_mels: Optional[int] = None
    n_audio_ctx: Optional[int] = None
    n_audio_state: Optional[int] = None
    n_audio_head: Optional[int] = None
    n_audio_layer: Optional[int] = None
    n_vocab: Optional[int] = None
    n_text_ctx: Optional[int] = N_TEXT_CTX
    n_text_state: Optional[int] = None
    n_text_head: Optional[int] = None
    n_text_layer: Optional[int] = None
    is_multilingual: Optional[bool] = None
    tokens: Dict[str, Any] = field(default_factory=dict)

    @property
    def multilingual(self) -> bool:
        """``is_multilingual`` when given, else OpenAI's rule ``n_vocab >= 51865``."""
        if self.is_multilingual is not None:
            return bool(self.is_multilingual)
        if self.n_vocab is None:
            raise ConfigError("cannot tell whether the model is multilingual: neither is_multilingual nor n_vocab")
        return self.n_vocab >= 51865

    def require(self, *keys: str) -> WhisperConfig:
        """Raise :class:`ConfigError` if any dimension in ``keys`` (default: all) is unknown; return self."""
        missing = [k for k in (keys or DIM_KEYS) if getattr(self, k) is None]
        if missing:
            raise ConfigError(f"config lacks {missing}")
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WhisperConfig:
        """Build from AXERA-style keys (extra keys are ignored)."""
        cfg = cls()
        for key in DIM_KEYS:
            if data.get(key) is not None:
                try:
                    setattr(cfg, key, int(data[key]))
                except (TypeError, ValueError):
                    raise ConfigError(f"config key {key!r} must be an integer, got {data[key]!r}") from None
        if data.get("is_multilingual") is not None:
            value = data["is_multilingual"]
            cfg.is_multilingual = value.strip().lower() in ("1", "true") if isinstance(value, str) else bool(value)
        for key in TOKEN_KEYS:
            if data.get(key) is not None:
                try:
                    cfg.tokens[key] = int(data[key])
                except (TypeError, ValueError):
                    raise ConfigError(f"config key {key!r} must be a token id, got {data[key]!r}") from None
        for key in LIST_KEYS:
            if data.get(key) is not None:
                cfg.tokens[key] = _int_list(key, data[key])
        if data.get("all_language_codes") is not None:
            value = data["all_language_codes"]
            cfg.tokens["all_language_codes"] = [v.strip() for v in value.split(",") if v.strip()] \
                if isinstance(value, str) else [str(v) for v in value]
        return cfg

    def to_dict(self) -> Dict[str, Any]:
        """AXERA-style flat dict (lists stay lists)."""
        out = {k: v for k, v in asdict(self).items() if k != "tokens" and v is not None}
        if self.is_multilingual is not None:
            out["is_multilingual"] = int(self.is_multilingual)
        out.update(self.tokens)
        return out

    def token_config(self) -> Dict[str, Any]:
        """The token keys in the form :meth:`WhisperTokenizer.from_tokens_txt` takes (``blank_id`` etc.)."""
        out = dict(self.tokens)
        if self.n_vocab is not None:
            out["n_vocab"] = self.n_vocab
        return out

    def merge(self, other: WhisperConfig) -> WhisperConfig:
        """Values of ``self``, with unknowns filled from ``other``; raises on conflicting known dimensions."""
        out = WhisperConfig(**{k: getattr(self, k) for k in DIM_KEYS}, is_multilingual=self.is_multilingual,
                            tokens=dict(other.tokens))
        out.tokens.update(self.tokens)
        for key in DIM_KEYS:
            mine, theirs = getattr(self, key), getattr(other, key)
            if mine is None:
                setattr(out, key, theirs)
            elif theirs is not None and mine != theirs:
                raise ConfigError(f"{key} differs: {mine} vs {theirs}")
        if out.is_multilingual is None:
            out.is_multilingual = other.is_multilingual
        return out

    @classmethod
    def from_ct2(cls, model_or_path) -> WhisperConfig:
        """Dimensions of a CTranslate2 Whisper model (a :class:`~.ct2.Ct2Model` or a path to it)."""
        from .ct2 import Ct2Model, read_ct2_model, whisper_dims

        model = model_or_path if isinstance(model_or_path, Ct2Model) else read_ct2_model(model_or_path)
        dims = whisper_dims(model)
        cfg = cls(**asdict(dims))
        cfg.is_multilingual = dims.n_vocab >= 51865
        return cfg

    @classmethod
    def from_specs(cls, encoder_inputs: Sequence, decoder_inputs: Sequence,
                   decoder_outputs: Sequence) -> WhisperConfig:
        """Dimensions visible in schema-B session specs (``mel``, ``self_k``, ``cross_k``, ``logits``)."""
        def spec(specs, name):
            for s in specs:
                if s.name == name:
                    return s
            return None

        cfg = cls()
        mel, self_k, cross_k, logits = (spec(encoder_inputs, "mel"), spec(decoder_inputs, "self_k"),
                                        spec(decoder_inputs, "cross_k"), spec(decoder_outputs, "logits"))
        if mel is not None and len(mel.shape) == 3:
            cfg.n_mels = mel.shape[1]
        if self_k is not None and len(self_k.shape) == 4:
            cfg.n_text_layer, _, cfg.n_text_ctx, cfg.n_text_state = self_k.shape
        if cross_k is not None and len(cross_k.shape) == 4:
            cfg.n_audio_ctx = cross_k.shape[2]
        if logits is not None and logits.shape:
            cfg.n_vocab = logits.shape[-1]
        return cfg


def load_config(path: Union[str, Path]) -> WhisperConfig:
    """Read an AXERA-style Whisper config json (``{t}_config.json`` or the exporter's ``config.json``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not readable json ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a json object, got {type(data).__name__}")
    return WhisperConfig.from_dict(data)


def _int_list(key: str, value) -> List[int]:
    try:
        if isinstance(value, str):
            return [int(v) for v in value.replace(" ", "").split(",") if v]
        return [int(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key!r} must be a list of token ids, got {value!r:.80}") from None
