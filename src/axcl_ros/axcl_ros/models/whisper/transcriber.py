"""Whisper on the shared inference executor: find the model files, load them, transcribe ≤ 30-s clips from any thread.

* :func:`find_model_files` resolves a model folder (the converter's ``encoder.onnx``/``decoder.onnx``/
  ``tokenizer.json``/``config.json``, or AXERA's ``{t}-encoder.axmodel``, ``{t}-decoder.axmodel`` (schema B) or
  ``{t}-decoder-loop.axmodel`` + ``{t}-positional_embedding.bin`` (schema A), ``{t}-tokens.txt``,
  ``{t}_config.json``) and explicit file paths into a :class:`WhisperFiles`.
* :class:`WhisperTranscriber` loads the encoder and decoder on an
  :class:`~axcl_ros.runtime.executor.InferenceExecutor` and builds the runner **on the executor's worker thread**
  (:class:`RunnerSession`), so the AXCL runner's device calls stay on the thread that holds the device context.
  Every encoder run and every decoder step is then one executor job submitted by :class:`ExecutorRunner`: other
  models sharing the device (a detector's frames) are interleaved between decoder steps instead of waiting for a
  whole transcription. The host decode loop (:func:`~.decoding.transcribe`) and the log-mel run on the caller's
  thread.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Union

import numpy as np

from ...runtime.base import Session, TensorSpec
from .config import load_config
from .decoding import DecodeOptions, TranscriptionResult, transcribe
from .runner import SchemaARunner, SessionWhisperRunner, WhisperModelError
from .tokenizer import WhisperTokenizer

__all__ = ["WhisperFilesError", "WhisperFiles", "find_model_files", "RunnerSession", "ExecutorRunner",
           "Recognition", "WhisperTranscriber"]

PathLike = Union[str, Path]

#: :class:`RunnerSession` calls, passed as its ``op`` input
OP_ENCODE, OP_STEP, OP_RESET = 0, 1, 2

#: seconds one encoder run or decoder step may take (queue wait included) before the call fails
STEP_TIMEOUT_S = 120.0


class WhisperFilesError(ValueError):
    """The Whisper model files cannot be found or do not fit together (the message says what was looked for)."""


@dataclass(frozen=True)
class WhisperFiles:
    """Paths of one Whisper model: encoder, decoder (schema B) or decoder-loop (schema A), tokenizer, config."""

    encoder: str
    decoder: str
    tokenizer: str
    config: str = ""
    positional_embedding: str = ""  #: schema A only: raw float32 ``[448, D]``

    def describe(self) -> str:
        """One line naming the files."""
        extra = f", positional embedding {self.positional_embedding}" if self.positional_embedding else ""
        return (f"encoder {self.encoder}, decoder {self.decoder}, tokenizer {self.tokenizer}"
                f"{', config ' + self.config if self.config else ''}{extra}")


def _one(folder: Path, patterns: Sequence[str], what: str, required: bool = True) -> str:
    """The single file in ``folder`` (or one level below) matching the first pattern that matches anything."""
    for pattern in patterns:
        found = sorted({p for p in list(folder.glob(pattern)) + list(folder.glob(f"*/{pattern}")) if p.is_file()})
        if len(found) == 1:
            return str(found[0])
        if len(found) > 1:
            raise WhisperFilesError(f"{folder}: several {what} files match {pattern!r}: "
                                    f"{[str(p.relative_to(folder)) for p in found]}; set the explicit path parameter")
    if required:
        raise WhisperFilesError(f"{folder}: no {what} file (looked for {list(patterns)})")
    return ""


def _first(places: Sequence[Path], patterns: Sequence[str], what: str) -> str:
    """The file :func:`_one` finds in the first of ``places`` that holds one ("" when none does)."""
    for place in places:
        found = _one(place, patterns, what, required=False)
        if found:
            return found
    return ""


def _existing(path: str, what: str) -> str:
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise WhisperFilesError(f"{what}={path!r} does not exist or is not a file")
    return path


def find_model_files(model_dir: PathLike = "", encoder_path: PathLike = "", decoder_path: PathLike = "",
                     tokenizer_path: PathLike = "", config_path: PathLike = "") -> WhisperFiles:
    """Resolve the Whisper files; explicit paths win over what ``model_dir`` holds.

    In ``model_dir`` (and its direct sub-folders) the encoder is ``encoder.onnx`` or ``*encoder.axmodel``/
    ``*encoder.onnx``; the decoder ``decoder.onnx``, ``*-decoder.axmodel``/``*-decoder.onnx`` (schema B) or
    ``*decoder-loop.*`` (schema A, with ``*positional_embedding.bin``); the tokenizer ``tokenizer.json`` or
    ``*tokens.txt``; the config ``config.json`` or ``*_config.json`` (optional). Without ``model_dir`` the tokenizer
    and config are looked for next to the encoder. Raises :class:`WhisperFilesError`.
    """
    folder = Path(os.path.expanduser(str(model_dir))) if str(model_dir) else None
    if folder is not None and not folder.is_dir():
        raise WhisperFilesError(f"model_dir={str(model_dir)!r} is not a directory")
    if not folder and not (str(encoder_path) and str(decoder_path)):
        raise WhisperFilesError("set model_dir (a folder with encoder/decoder/tokenizer files) or both encoder_path "
                                "and decoder_path")
    if str(encoder_path):
        encoder = _existing(str(encoder_path), "encoder_path")
    else:
        encoder = _one(folder, ("encoder.onnx", "*encoder.axmodel", "*encoder.onnx"), "encoder")
    if str(decoder_path):
        decoder = _existing(str(decoder_path), "decoder_path")
    else:
        decoder = _one(folder, ("decoder.onnx", "*-decoder.axmodel", "*_decoder.axmodel", "*-decoder.onnx",
                                "*decoder-loop.axmodel", "*decoder_loop.axmodel", "*decoder-loop.onnx"), "decoder")
    search = [folder] if folder is not None else []
    search += [Path(encoder).parent, Path(decoder).parent]
    if str(tokenizer_path):
        tokenizer = _existing(str(tokenizer_path), "tokenizer_path")
    else:
        tokenizer = _first(search, ("tokenizer.json", "*tokens.txt"), "tokenizer")
        if not tokenizer:
            raise WhisperFilesError(f"no tokenizer.json or *tokens.txt in {[str(p) for p in search]}; "
                                    "set tokenizer_path")
    if str(config_path):
        config = _existing(str(config_path), "config_path")
    else:
        config = _first(search, ("config.json", "*_config.json"), "config")
    pe = _first(search, ("*positional_embedding.bin",), "positional embedding") if "loop" in Path(decoder).name else ""
    return WhisperFiles(encoder, decoder, tokenizer, config, pe)


# ------------------------------------------------------------------------------------- runner on the worker thread
class RunnerSession(Session):
    """A :class:`~.runner.WhisperRunner` presented as a session, so that the executor's worker thread runs it.

    Inputs ``op i32[1]``, ``mel f32[b, n_mels, n_frames]``, ``token i32[t]``, ``offset i32[t]``; output
    ``logits f32[V]``. ``op`` names the call: :data:`OP_ENCODE` → ``encode(mel)``, :data:`OP_STEP` →
    ``step(token[0], offset[0])`` (returns the logits), :data:`OP_RESET` → ``reset()``; the inputs the call does not
    use are empty. :meth:`release` only drops the runner (the encoder and decoder sessions belong to their own
    executor handles).
    """

    backend_name = "host"
    owns_outputs = True  # every step returns a fresh logits array

    def __init__(self, runner, path: str = "", device: str = "") -> None:
        self.runner = runner
        self.path = path
        self.device = device
        self.n_frames = int(getattr(runner, "n_frames", 3000))
        self._inputs = [TensorSpec("op", (1,), np.dtype(np.int32)),
                        TensorSpec("mel", (None, int(runner.n_mels), self.n_frames), np.dtype(np.float32)),
                        TensorSpec("token", (None,), np.dtype(np.int32)),
                        TensorSpec("offset", (None,), np.dtype(np.int32))]
        self._outputs = [TensorSpec("logits", (int(runner.n_vocab),), np.dtype(np.float32))]

    def run(self, feeds: Mapping[str, np.ndarray], output_names: Optional[Sequence[str]] = None) -> dict:
        """Encode, step or reset, as ``feeds["op"]`` says (see the class docstring)."""
        runner = self.runner
        if runner is None:
            raise WhisperModelError("the Whisper runner was released")
        op = int(feeds["op"][0])
        if op == OP_ENCODE:
            runner.encode(feeds["mel"])
            return {}
        if op == OP_STEP:
            return {"logits": runner.step(int(feeds["token"][0]), int(feeds["offset"][0]))}
        if op == OP_RESET:
            runner.reset()
            return {}
        raise WhisperModelError(f"unknown runner op {op}")

    def release(self) -> None:
        """Drop the runner (idempotent)."""
        self.runner = None


class ExecutorRunner:
    """:class:`~.runner.WhisperRunner` protocol implemented by submitting each call to the executor.

    Accumulates the executor's queue wait and run time of the calls since :meth:`take_times`.
    """

    def __init__(self, executor, handle, timeout: float = STEP_TIMEOUT_S) -> None:
        session: RunnerSession = handle.session
        runner = session.runner
        self.executor, self.handle, self.timeout = executor, handle, float(timeout)
        self.n_text_layer = int(runner.n_text_layer)
        self.n_text_ctx = int(runner.n_text_ctx)
        self.n_vocab = int(runner.n_vocab)
        self.n_mels = int(runner.n_mels)
        self.n_frames = session.n_frames
        self._no_mel = np.zeros((0, self.n_mels, self.n_frames), np.float32)
        self._none = np.zeros((0,), np.int32)
        self.queue_ms = 0.0
        self.run_ms = 0.0
        self.calls = 0

    def _call(self, op: int, outputs: Sequence[str] = (), mel: Optional[np.ndarray] = None,
              token: Optional[np.ndarray] = None, offset: Optional[np.ndarray] = None) -> dict:
        feeds = {"op": np.array([op], np.int32), "mel": self._no_mel if mel is None else mel,
                 "token": self._none if token is None else token, "offset": self._none if offset is None else offset}
        result = self.executor.submit(self.handle, feeds, output_names=outputs).result(self.timeout)
        self.queue_ms += result.queue_wait_ms
        self.run_ms += result.run_ms
        self.calls += 1
        return result.outputs

    def encode(self, mel: np.ndarray) -> None:
        """Run the encoder (one executor job)."""
        mel = np.ascontiguousarray(mel if mel.ndim == 3 else mel[None], dtype=np.float32)
        self._call(OP_ENCODE, mel=mel)

    def reset(self) -> None:
        """Reset the decoder state (one executor job)."""
        self._call(OP_RESET)

    def step(self, token: int, offset: int) -> np.ndarray:
        """One decoder step (one executor job); returns the logits."""
        return self._call(OP_STEP, ("logits",), token=np.array([token], np.int32),
                          offset=np.array([offset], np.int32))["logits"]

    def take_times(self) -> tuple:
        """``(queue_ms, run_ms, calls)`` since the last call, then zero them."""
        out = (self.queue_ms, self.run_ms, self.calls)
        self.queue_ms = self.run_ms = 0.0
        self.calls = 0
        return out


@dataclass
class Recognition:
    """One transcription: the decode result plus where the time went (milliseconds)."""

    result: TranscriptionResult
    mel_ms: float = 0.0
    queue_ms: float = 0.0  #: waiting for the shared executor (other models' jobs)
    run_ms: float = 0.0  #: encoder + decoder runs on the backend
    host_ms: float = 0.0  #: host decode loop (logit rules, argmax, text) besides the runs
    total_ms: float = 0.0
    executor_calls: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def rtf(self) -> float:
        """Wall time of the transcription / audio duration."""
        d = self.result.duration
        return self.total_ms / 1000.0 / d if d > 0 else 0.0


class WhisperTranscriber:
    """A Whisper model on the shared executor; :meth:`transcribe` is thread safe (calls are serialised).

    Takes the loaded encoder and decoder handles (of one executor) (the speech node loads them with
    :class:`~axcl_ros.nodes.node_model.NodeModel`, like every node; :meth:`load` does it without ROS), detects
    schema A/B from the decoder's tensor names, builds the runner on the worker thread
    (:class:`~.axcl_runner.AxclWhisperRunner` for schema B on AXCL, else the host-buffer runners) and the tokenizer.
    From then on it owns the handles (:meth:`release` unloads them). Raises :class:`WhisperFilesError`,
    :class:`WhisperModelError` or tokenizer/config errors; the handles are released on failure.
    """

    def __init__(self, encoder, decoder, files: WhisperFiles, device: str = "",
                 step_timeout: float = STEP_TIMEOUT_S) -> None:
        executor = encoder.executor
        self.executor = executor
        self.files = files
        self.backend = encoder.backend
        self.device = device or "default"
        self._lock = threading.Lock()
        self._handles: List = [encoder, decoder]
        stem = Path(files.encoder).stem
        self.model_name = stem[: -len("encoder")].rstrip("-_") or Path(files.encoder).parent.name or "whisper"
        try:
            if decoder.executor is not executor:
                raise WhisperModelError(f"the encoder ({encoder.executor.key}) and the decoder "
                                        f"({decoder.executor.key}) must run on one executor: give them the same "
                                        "backend")
            self.schema = "A" if any(s.name == "in_n_layer_self_k_cache" for s in decoder.inputs) else "B"
            if self.schema == "A" and not files.positional_embedding:
                raise WhisperFilesError(f"{files.decoder} is a schema-A decoder-loop model; it needs the "
                                        "*positional_embedding.bin file next to it")
            runner_handle = executor.load_session(
                lambda: RunnerSession(self._make_runner(encoder, decoder), files.decoder, device),
                name=f"{self.model_name}-decode")
            self._handles.append(runner_handle)
            self.runner = ExecutorRunner(executor, runner_handle, step_timeout)
            self.config = load_config(files.config) if files.config else None
            self.tokenizer = self._make_tokenizer()
            if self.tokenizer.eot >= self.runner.n_vocab:
                raise WhisperModelError(f"tokenizer {files.tokenizer} (eot {self.tokenizer.eot}) does not fit the "
                                        f"decoder's vocabulary of {self.runner.n_vocab}")
        except BaseException:
            self.release()
            raise

    @classmethod
    def load(cls, executor, files: WhisperFiles, backend: str = "auto", device: str = "",
             step_timeout: float = STEP_TIMEOUT_S) -> WhisperTranscriber:
        """Load ``files.encoder`` and ``files.decoder`` with ``backend`` (``auto`` picks ``axcl`` for
        ``.axmodel``) on ``device`` of ``executor``; raises the backend's load errors (nothing stays loaded)."""
        from ...runtime.registry import resolve_backend

        encoder = executor.load(files.encoder, backend=resolve_backend(backend, files.encoder).name, device=device)
        try:
            decoder = executor.load(files.decoder, backend=resolve_backend(backend, files.decoder).name,
                                    device=device)
        except BaseException:
            encoder.release()
            raise
        return cls(encoder, decoder, files, device, step_timeout)

    def _make_runner(self, enc, dec):
        """Build the runner on the worker thread (device calls stay there)."""
        if self.schema == "A":
            return SchemaARunner.from_files(enc.session, dec.session, self.files.positional_embedding)
        if self.backend == "axcl":
            from .axcl_runner import AxclWhisperRunner

            return AxclWhisperRunner(enc.session, dec.session)
        return SessionWhisperRunner(enc.session, dec.session)

    def _make_tokenizer(self) -> WhisperTokenizer:
        path = self.files.tokenizer
        n_vocab = self.runner.n_vocab
        if path.endswith(".json"):
            multilingual = self.config.is_multilingual if self.config is not None else None
            return WhisperTokenizer.from_hf_json(path, n_vocab=n_vocab, multilingual=multilingual)
        cfg = self.config.token_config() if self.config is not None else None
        if cfg is not None and self.config.is_multilingual is not None:
            cfg["is_multilingual"] = self.config.is_multilingual
        return WhisperTokenizer.from_tokens_txt(path, config=cfg, n_vocab=n_vocab)

    @property
    def multilingual(self) -> bool:
        """True for multilingual models (language detection and translation available)."""
        return self.tokenizer.is_multilingual

    def transcribe(self, audio: np.ndarray, language: str = "en", task: str = "transcribe", *,
                   timestamps: bool = True, options: Optional[DecodeOptions] = None) -> Recognition:
        """Transcribe ≤ 30 s of 16 kHz mono float32 ``audio`` (see :func:`~.decoding.transcribe` for the errors)."""
        with self._lock:
            if not self._handles:
                raise WhisperModelError("the Whisper model was released")
            t0 = time.perf_counter()
            self.runner.take_times()
            result = transcribe(audio, self.runner, self.tokenizer, language, task, timestamps=timestamps,
                                options=options)
            total_ms = (time.perf_counter() - t0) * 1000.0
            queue_ms, run_ms, calls = self.runner.take_times()
        host_ms = max(0.0, total_ms - result.timing.mel_ms - queue_ms - run_ms)
        return Recognition(result, result.timing.mel_ms, queue_ms, run_ms, host_ms, total_ms, calls)

    def stats(self) -> dict:
        """The executor's statistics of this model's handles (by handle name)."""
        models = self.executor.stats()["models"]
        return {h.name: models.get(h.name, {}) for h in self._handles}

    def describe(self) -> str:
        """``name (backend:device, schema X) files`` for logs."""
        return f"{self.model_name} ({self.backend}:{self.device}, schema {getattr(self, 'schema', '?')}): " \
               f"{self.files.describe()}"

    def release(self) -> None:
        """Unload the runner, then the decoder, then the encoder (idempotent)."""
        with self._lock:
            handles, self._handles = self._handles, []
        for handle in reversed(handles):
            try:
                handle.release()
            except Exception:  # noqa: BLE001 - release the others anyway
                pass

