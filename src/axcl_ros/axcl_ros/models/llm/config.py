"""The model folder of the ``describe`` node: ``config.json`` and its per-layer files.

Layout (the converter writes it for ONNX; AXERA ships the same shape of folder with ``.axmodel`` files)::

    config.json                                   this module's keys (below)
    {prefix}_l{i}.onnx | {prefix}_p{N}_l{i}_together.axmodel     one decoder layer each, i = 0 … num_layers-1
    {prefix}_post.onnx | {prefix}_post.axmodel    final norm + lm head: [1,1,H] -> logits [1,1,V]
    model.embed_tokens.weight.npy (fp32) | model.embed_tokens.weight.bfloat16.bin (raw bf16, V x H)
    tokenizer.json                                byte-level BPE (Hugging Face tokenizers format)
    vision.onnx | *_vit*.axmodel                  optional vision encoder (image -> [1, n_image_tokens, H])

:func:`find_model_files` checks that every layer file is present before anything is loaded.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Dict, List, Optional

CONFIG_NAME = "config.json"
PROMPT_FORMATS = ("chatml", "plain")
_LAYER_RE = re.compile(r"^(?P<prefix>[A-Za-z0-9_.]+?)(?:_p\d+)?_l(?P<i>\d+)(?:_together)?\.(?P<ext>onnx|axmodel)$")
_POST_RE = re.compile(r"^(?P<prefix>[A-Za-z0-9_.]+?)_post\.(?P<ext>onnx|axmodel)$")
_VISION_RE = re.compile(r"^(vision\.onnx|.*_vit.*\.(onnx|axmodel))$")
EMBED_NPY = "model.embed_tokens.weight.npy"
EMBED_BF16 = "model.embed_tokens.weight.bfloat16.bin"


class ModelFilesError(ValueError):
    """The model folder is incomplete or inconsistent (the message names the missing or wrong file)."""


@dataclass
class LlmConfig:
    """Dimensions and prompt settings of a per-layer model set (``config.json``)."""

    architecture: str = "llama"
    num_layers: int = 0
    hidden_size: int = 0
    num_heads: int = 0
    num_kv_heads: int = 0
    head_dim: int = 0
    vocab_size: int = 0
    #: largest number of positions the host loop uses (prompt + generated); the KV cache is sized by it
    max_context: int = 2048
    #: prompt tokens per prefill call (AXERA's prefill shape groups are 128 tokens)
    prefill_chunk: int = 128
    prompt_format: str = "chatml"
    default_system_prompt: str = ""
    bos_id: Optional[int] = None
    eos_ids: List[int] = field(default_factory=list)
    #: image splice (vision-language models): the token whose embeddings the vision encoder's rows replace
    image_token: str = ""
    image_prefix: str = ""
    image_suffix: str = ""
    n_image_tokens: int = 0
    image_size: int = 448
    converter_version: int = 0
    source: str = ""
    #: how the converter stored the matrices: float32, gguf-blocks or gguf-blocks-int8 (4/8-bit codes, MatMulNBits;
    #: export_onnx.ACCURACY_LEVEL)
    weights: str = "float32"

    @property
    def kv_dim(self) -> int:
        """Width of one cached K (or V) row: ``head_dim * num_kv_heads``."""
        return self.head_dim * self.num_kv_heads

    def validate(self) -> None:
        """Raise :class:`ModelFilesError` when a dimension is missing or inconsistent."""
        for name in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "vocab_size",
                     "max_context", "prefill_chunk"):
            if int(getattr(self, name)) <= 0:
                raise ModelFilesError(f"config.json: {name} must be > 0, got {getattr(self, name)!r}")
        if self.num_heads % self.num_kv_heads:
            raise ModelFilesError(f"config.json: num_heads {self.num_heads} is not a multiple of num_kv_heads "
                                  f"{self.num_kv_heads}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ModelFilesError(f"config.json: prompt_format {self.prompt_format!r} is not one of "
                                  f"{list(PROMPT_FORMATS)}")

    def save(self, folder: str) -> str:
        """Write ``config.json`` into ``folder``; return its path."""
        path = os.path.join(folder, CONFIG_NAME)
        with open(path, "w") as f:
            json.dump(asdict(self), f, indent=1)
            f.write("\n")
        return path

    @classmethod
    def load(cls, path: str) -> LlmConfig:
        """Read ``config.json`` (unknown keys are ignored, so newer files still load)."""
        try:
            with open(path) as f:
                doc = json.load(f)
        except FileNotFoundError:
            raise ModelFilesError(f"{path!r} does not exist: the model folder needs the config.json that "
                                  f"'axcl_ros convert-llm' writes") from None
        except ValueError as exc:
            raise ModelFilesError(f"{path!r} is not valid JSON: {exc}") from exc
        known = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in doc.items() if k in known})
        cfg.validate()
        return cfg


@dataclass
class LlmFiles:
    """Paths of one model set, checked to be complete."""

    folder: str
    config: LlmConfig
    layers: List[str]
    post: str
    embeddings: str
    tokenizer: str
    vision: str = ""

    @property
    def backend(self) -> str:
        """``axcl`` for ``.axmodel`` layer files, else ``onnxruntime``."""
        return "axcl" if self.layers[0].endswith(".axmodel") else "onnxruntime"


def find_model_files(folder: str, vision_path: str = "") -> LlmFiles:
    """Find and check every file of the model set in ``folder``; raise :class:`ModelFilesError` naming what is
    missing (a layer, the post model, the embedding table, the tokenizer)."""
    folder = os.path.expanduser(folder or "")
    if not folder:
        raise ModelFilesError("model_dir is empty: set it to a folder made by 'axcl_ros convert-llm' (or AXERA's "
                              "compiled model folder); see the README, section 'describe'")
    if not os.path.isdir(folder):
        raise ModelFilesError(f"model folder {folder!r} does not exist or is not a folder")
    cfg = LlmConfig.load(os.path.join(folder, CONFIG_NAME))
    names = sorted(os.listdir(folder))
    layers: Dict[int, str] = {}
    for n in names:
        m = _LAYER_RE.match(n)
        if m:
            i = int(m.group("i"))
            if i in layers:
                raise ModelFilesError(f"{folder}: two files for layer {i}: {layers[i]} and {n}")
            layers[i] = n
    missing = [i for i in range(cfg.num_layers) if i not in layers]
    if missing:
        raise ModelFilesError(f"{folder}: config.json says {cfg.num_layers} layers but layer file(s) "
                              f"{missing[:8]}{' …' if len(missing) > 8 else ''} are missing (found {len(layers)} "
                              f"layer files like 'llama_l0.onnx'); convert the model again or copy the missing files")
    extra = sorted(i for i in layers if i >= cfg.num_layers)
    if extra:
        raise ModelFilesError(f"{folder}: layer files {extra} are beyond num_layers={cfg.num_layers} in config.json")
    posts = [n for n in names if _POST_RE.match(n)]
    if len(posts) != 1:
        raise ModelFilesError(f"{folder}: expected exactly one '<prefix>_post.onnx|.axmodel' (final norm + lm head), "
                              f"found {posts or 'none'}")
    ext = os.path.splitext(layers[0])[1]
    if not posts[0].endswith(ext):
        raise ModelFilesError(f"{folder}: layer files are {ext} but the post model is {posts[0]}")
    embed = next((n for n in (EMBED_NPY, EMBED_BF16) if n in names), None)
    if embed is None:
        raise ModelFilesError(f"{folder}: no token embedding table ({EMBED_NPY} or {EMBED_BF16})")
    tokenizer = "tokenizer.json" if "tokenizer.json" in names else ""
    if not tokenizer:
        raise ModelFilesError(f"{folder}: no tokenizer.json")
    vision = os.path.expanduser(vision_path) if vision_path else ""
    if vision and not os.path.isfile(vision):
        raise ModelFilesError(f"vision encoder {vision!r} does not exist")
    if not vision:
        found = [n for n in names if _VISION_RE.match(n)]
        vision = os.path.join(folder, found[0]) if found else ""
    join = lambda n: os.path.join(folder, n)  # noqa: E731
    return LlmFiles(folder=folder, config=cfg, layers=[join(layers[i]) for i in range(cfg.num_layers)],
                    post=join(posts[0]), embeddings=join(embed), tokenizer=join(tokenizer), vision=vision)
