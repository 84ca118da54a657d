"""The host loop: prompt (+ image) → prefill → one token at a time, streamed, stoppable, cancellable.

Per generated token the loop looks up one embedding row on the host, gives it to the :class:`~.layers.LayerStack`
and gets one logits vector back; everything else (cache, layers) stays behind the stack's two calls.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import numpy as np

from .config import LlmFiles, ModelFilesError, find_model_files
from .embeddings import EmbeddingTable
from .layers import LayerStack, OnnxLayerStack
from .sampling import Sampler, SamplingParams
from .tokenizer import LlmTokenizer, PromptError

STOP_EOS = "eos"
STOP_STRING = "stop_string"
STOP_MAX_TOKENS = "max_tokens"
STOP_CONTEXT = "context_full"
STOP_CANCELLED = "cancelled"
#: longest accepted stop string list / stop string (keeps a goal from making the per-token check expensive)
MAX_STOP_STRINGS = 16
MAX_STOP_LENGTH = 256


@dataclass
class GenerationResult:
    """What one generation produced, and how long its parts took."""

    text: str = ""
    token_ids: List[int] = field(default_factory=list)
    prompt_tokens: int = 0
    stop_reason: str = ""
    image_encode_ms: float = 0.0
    time_to_first_token_ms: float = 0.0
    tokens_per_s: float = 0.0
    total_ms: float = 0.0


class _Streamer:
    """Turns the growing token list into text deltas, holding back what may still become a stop string or an
    incomplete UTF-8 character. Text that was emitted whole is not decoded again (linear in the answer length)."""

    def __init__(self, tokenizer: LlmTokenizer, stop: Sequence[str], on_delta) -> None:
        self.tokenizer, self.stop, self.on_delta = tokenizer, [s for s in stop if s], on_delta
        self.emitted = 0
        self.n_tokens = 0
        self.text = ""
        self._base_ids = 0  # tokens whose text is settled in _base_text
        self._base_text = ""
        self._longest_stop = max((len(s) for s in self.stop), default=0)

    def push(self, ids: Sequence[int]) -> bool:
        """Decode ``ids``; emit the safe new text; return True when a stop string appeared (text is cut there)."""
        self.n_tokens = len(ids)
        text = self._base_text + self.tokenizer.decode(ids[self._base_ids:])
        # a stop string can only end in the new text: search from just before it
        search_from = max(0, len(self._base_text) - self._longest_stop)
        hits = [i for i in (text.find(s, search_from) for s in self.stop) if i >= 0]
        if hits:
            self.text = text[:min(hits)]
            self._emit(len(self.text))
            return True
        self.text = text
        safe = len(text.rstrip("\ufffd"))
        hold = 0
        for s in self.stop:  # the longest tail of the text that is the start of a stop string
            for n in range(min(len(s) - 1, safe), hold, -1):
                if text[safe - n:safe] == s[:n]:
                    hold = n
                    break
        self._emit(safe - hold)
        if safe == len(text):  # whole characters only: later tokens cannot change this text
            self._base_ids, self._base_text = len(ids), text
        return False

    def finish(self) -> None:
        """Emit whatever was held back (the generation ended without a stop string)."""
        self._emit(len(self.text))

    def _emit(self, upto: int) -> None:
        if upto > self.emitted:
            delta = self.text[self.emitted:upto]
            self.emitted = upto
            if self.on_delta is not None:
                self.on_delta(delta, self.n_tokens)


def build_stack(files: LlmFiles, threads: int = 0, device: str = "", spinning: bool = False) -> LayerStack:
    """The layer stack the files need: :class:`~.axcl_layers.AxclLayerStack` for ``.axmodel`` layers (``device`` =
    card index), else :class:`~.layers.OnnxLayerStack` (``threads``, ``spinning``: its onnxruntime threads)."""
    if files.backend == "axcl":
        from ...runtime.axcl_backend import parse_device
        from .axcl_layers import AxclLayerStack

        return AxclLayerStack(files, device_index=parse_device(device))
    return OnnxLayerStack(files, threads=threads, device=device, spinning=spinning)


class LlmModel:
    """A language (or vision-language) model loaded from a model folder, ready to generate.

    Args:
        model_dir: folder written by ``axcl_ros convert-llm`` (ONNX) or AXERA's compiled layout.
        vision_path: vision encoder file (optional; found in ``model_dir`` when it holds one).
        threads: onnxruntime intra-op threads (0 = onnxruntime's default).
        spinning: onnxruntime's workers busy-wait between the operators of a step (see
            :class:`~.layers.OnnxLayerStack`).
        device: backend device.
        stack: a ready layer stack (default: the one the files need, see :func:`build_stack`).
        executor: an :class:`~axcl_ros.runtime.executor.InferenceExecutor`: build the stack on its worker thread
            and run every prefill chunk / token as one job there (:mod:`.executor_stack`).
    """

    def __init__(self, model_dir: str, *, vision_path: str = "", threads: int = 0, spinning: bool = False,
                 device: str = "", stack: Optional[LayerStack] = None, executor=None) -> None:
        self.files: LlmFiles = find_model_files(model_dir, vision_path)
        cfg = self.config = self.files.config
        self.tokenizer = LlmTokenizer(self.files.tokenizer, cfg)
        self.embeddings = EmbeddingTable(self.files.embeddings, cfg.vocab_size, cfg.hidden_size)
        self.image_token_id: Optional[int] = None
        if cfg.image_token:
            self.image_token_id = self.tokenizer.token_id(cfg.image_token)
            if self.image_token_id is None:
                raise ModelFilesError(f"config.json image_token {cfg.image_token!r} is not a token of the tokenizer")
        self.vision = None
        self._lock = threading.Lock()
        if stack is None:
            def build() -> LayerStack:
                return build_stack(self.files, threads=threads, device=device, spinning=spinning)

            if executor is not None:
                from .executor_stack import ExecutorLayerStack

                name = os.path.basename(os.path.normpath(self.files.folder)) or "llm"
                stack = ExecutorLayerStack.load(executor, build, name=name)
            else:
                stack = build()
        self.stack = stack
        try:
            if self.files.vision:
                from .vision import VisionEncoder

                if self.image_token_id is None:
                    raise ModelFilesError(f"a vision encoder was given ({self.files.vision}) but config.json has no "
                                          f"image_token to splice its rows into")
                self.vision = VisionEncoder(self.files.vision, cfg, device=device, executor=executor)
        except Exception:
            self.stack.release()
            raise

    @property
    def has_vision(self) -> bool:
        """True when images can be described (a vision encoder is loaded)."""
        return self.vision is not None

    def generate(self, prompt: str, *, image: Optional[np.ndarray] = None, system: str = "",
                 max_new_tokens: int = 128, sampling: Optional[SamplingParams] = None,
                 stop: Sequence[str] = (), on_delta: Optional[Callable[[str, int], None]] = None,
                 should_stop: Optional[Callable[[], bool]] = None) -> GenerationResult:
        """Generate an answer to ``prompt`` (about ``image``, RGB uint8, when given).

        ``on_delta(text, n_tokens)`` receives the new text and the count of tokens so far after each token (stop
        strings and incomplete characters are held back); ``should_stop()`` is checked before every token (cancel).
        Raises :class:`~.tokenizer.PromptError` for an empty prompt, a prompt that does not fit the context or an
        image the model cannot take, and ``ValueError`` for bad sampling values. Calls are serialised (one cache per
        model).
        """
        sampler = Sampler(sampling or SamplingParams())
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        stop = list(stop)
        if len(stop) > MAX_STOP_STRINGS or any(len(s) > MAX_STOP_LENGTH for s in stop):
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings of at most {MAX_STOP_LENGTH} characters")
        if image is not None and self.vision is None:
            raise PromptError("an image was given but this model has no vision encoder (text-only model): set "
                              "vision_model_path, or send the goal without an image")
        cfg = self.config
        n_image = self.vision.n_tokens if image is not None else 0
        ids, _ = self.tokenizer.prompt_ids(prompt, system, n_image)
        if len(ids) >= cfg.max_context:
            raise PromptError(f"the prompt is {len(ids)} tokens long; the model's context holds {cfg.max_context} "
                              f"(prompt and answer together): shorten the prompt")
        with self._lock:
            return self._generate(ids, image, max_new_tokens, sampler, stop, on_delta, should_stop)

    def _generate(self, ids, image, max_new_tokens, sampler, stop, on_delta, should_stop) -> GenerationResult:
        cfg = self.config
        result = GenerationResult(prompt_tokens=len(ids))
        t0 = time.perf_counter()
        embeds = self.embeddings(ids)
        if image is not None:
            rows, result.image_encode_ms = self.vision.encode(image)
            where = np.flatnonzero(np.asarray(ids) == self.image_token_id)
            if where.size != rows.shape[0]:
                raise PromptError(f"the prompt holds {where.size} image tokens but the vision encoder gave "
                                  f"{rows.shape[0]} rows")
            embeds[where] = rows
        streamer = _Streamer(self.tokenizer, stop, on_delta)
        generated: List[int] = []
        if should_stop is not None and should_stop():
            result.stop_reason = STOP_CANCELLED
            return result
        self.stack.reset()
        token = sampler(self.stack.logits(self.stack.forward(embeds, 0)))
        t_first = time.perf_counter()
        result.time_to_first_token_ms = (t_first - t0) * 1e3
        eos = set(cfg.eos_ids)
        while True:
            if token in eos:
                result.stop_reason = STOP_EOS
                break
            generated.append(token)
            if streamer.push(generated):
                result.stop_reason = STOP_STRING
                break
            if len(generated) >= max_new_tokens:
                result.stop_reason = STOP_MAX_TOKENS
                break
            if self.stack.position >= cfg.max_context:
                result.stop_reason = STOP_CONTEXT
                break
            if should_stop is not None and should_stop():
                result.stop_reason = STOP_CANCELLED
                break
            hidden = self.stack.forward(self.embeddings([token]), self.stack.position)
            token = sampler(self.stack.logits(hidden))
        if result.stop_reason != STOP_STRING:
            streamer.finish()
        t_end = time.perf_counter()
        result.text = streamer.text
        result.token_ids = generated
        result.total_ms = (t_end - t0) * 1e3
        steps = len(generated) - 1  # tokens made by decode steps after the first one
        if steps > 0 and t_end > t_first:
            result.tokens_per_s = steps / (t_end - t_first)
        return result

    def warm_up(self) -> float:
        """Run one full prefill chunk, one decode step and (with a vision encoder) one blank image through the
        models, then forget them (the cache is reset). The first run of each input shape allocates and plans (on
        onnxruntime SmolLM2's first prefill took 31-41 ms instead of 29-31, once 130 ms; README, describe section);
        warmed up at configure, that cost is not in the first request's time to first token. Returns the time it
        took in milliseconds."""
        cfg = self.config
        t0 = time.perf_counter()
        with self._lock:
            n = max(1, min(cfg.prefill_chunk, cfg.max_context - 1))
            self.stack.reset()
            try:
                self.stack.logits(self.stack.forward(self.embeddings([0] * n), 0))
                self.stack.logits(self.stack.forward(self.embeddings([0]), n))
            finally:
                self.stack.reset()
            if self.vision is not None:
                self.vision.encode(np.zeros((self.vision.size, self.vision.size, 3), np.uint8))
        return (time.perf_counter() - t0) * 1e3

    def release(self) -> None:
        """Free the models (idempotent)."""
        self.stack.release()
        if self.vision is not None:
            self.vision.release()
