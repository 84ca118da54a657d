"""Voice activity detection on 16 kHz mono frames of 512 samples (32 ms).

* :class:`SileroVad` runs the Silero VAD ONNX model (v5/v6 signature: ``input f32[b,n]``, ``state f32[2,b,128]``,
  optional ``sr i64[]`` -> ``output f32[b,1]``, ``stateN``) with onnxruntime on the host: each call feeds the 512 new
  samples with the previous 64 prepended (``[1,576]``) and carries the recurrent state.
* :class:`EnergyVad` is a model-free fallback: frame RMS in dBFS against an adaptive noise floor.
* :func:`create_vad` picks Silero when the model loads and the energy VAD otherwise, and says why (``.reason``).

Both expose ``kind``, ``reason``, ``threshold``, ``frame_samples``, ``sample_rate``, ``probability(frame)``,
``is_speech(frame)`` and ``reset()``. VAD is host-side by design (0.2 ms per frame on one CPU core).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..runtime.base import ModelLoadError, TensorSpec

SAMPLE_RATE = 16000
FRAME_SAMPLES = 512
CONTEXT_SAMPLES = 64

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(float16)": np.float16,
               "tensor(int32)": np.int32, "tensor(double)": np.float64}


class VadError(ValueError):
    """A VAD model has the wrong signature, or a frame given to a VAD is not 512 finite samples."""


def check_frame(frame: np.ndarray, frame_samples: int = FRAME_SAMPLES) -> np.ndarray:
    """Return ``frame`` as contiguous float32 ``[frame_samples]``; raise :class:`VadError` when it is not."""
    x = np.asarray(frame)
    if x.ndim != 1 or x.shape[0] != frame_samples:
        raise VadError(f"VAD frame must be 1-D with {frame_samples} samples (16 kHz), got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise VadError(f"VAD frame must be numeric, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise VadError("VAD frame holds NaN/Inf samples")
    return x


def _specs(nodes) -> list:
    return [TensorSpec(n.name, tuple(d if isinstance(d, int) else None for d in n.shape),
                       np.dtype(_ORT_DTYPES.get(n.type, object))) for n in nodes]


class SileroVad:
    """Silero VAD (ONNX) over onnxruntime, 16 kHz, one 512-sample frame per call.

    Raises :class:`FileNotFoundError` for a missing file, :class:`~axcl_ros.runtime.base.ModelLoadError` when
    onnxruntime cannot load it, and :class:`VadError` when its inputs/outputs do not have the Silero signature.
    """

    kind = "silero"
    frame_samples = FRAME_SAMPLES
    sample_rate = SAMPLE_RATE

    def __init__(self, model_path: Union[str, Path], threshold: float = 0.5, intra_op_threads: int = 1):
        import onnxruntime as ort

        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold={threshold!r} must be in (0, 1)")
        self.threshold = float(threshold)
        self.model_path = str(model_path)
        if not Path(model_path).is_file():
            raise FileNotFoundError(f"Silero VAD model not found: {model_path}")
        from ..runtime.onnxruntime_backend import session_options

        opts = session_options(int(intra_op_threads), 1)  # the process's one session-options builder
        try:
            self._session = ort.InferenceSession(self.model_path, sess_options=opts,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Exception subclasses
            raise ModelLoadError(f"cannot load Silero VAD model {self.model_path}: {exc}") from exc
        self.inputs = _specs(self._session.get_inputs())
        self.outputs = _specs(self._session.get_outputs())
        self._bind()
        self.reason = f"silero model {self.model_path}"
        self.reset()

    def _bind(self) -> None:
        """Find the Silero tensors by name/rank/dtype; fail with what was found."""
        found = f"model inputs {[s.describe() for s in self.inputs]}, outputs {[s.describe() for s in self.outputs]}"
        ins = {s.name: s for s in self.inputs}
        audio = ins.get("input")
        state = ins.get("state")
        sr = ins.get("sr")
        if audio is None or audio.dtype != np.float32 or len(audio.shape) != 2:
            raise VadError(f"Silero VAD needs input 'input' float32[batch, samples]; {found}")
        if audio.shape[1] is not None and audio.shape[1] != CONTEXT_SAMPLES + FRAME_SAMPLES:
            raise VadError(f"Silero VAD input 'input' must take {CONTEXT_SAMPLES + FRAME_SAMPLES} samples; {found}")
        if state is None or state.dtype != np.float32 or len(state.shape) != 3:
            raise VadError(f"Silero VAD needs input 'state' float32[2, batch, hidden]; {found}")
        if state.shape[0] is None or state.shape[2] is None:
            raise VadError(f"Silero VAD input 'state' must have static first and last dims; {found}")
        if sr is not None and (sr.dtype != np.int64 or len(sr.shape) not in (0, 1)):
            raise VadError(f"Silero VAD input 'sr' must be an int64 scalar; {found}")
        extra = set(ins) - {"input", "state", "sr"}
        if extra:
            raise VadError(f"Silero VAD has unexpected inputs {sorted(extra)}; {found}")
        outs = {s.name: s for s in self.outputs}
        prob = outs.get("output") or next((s for s in self.outputs if len(s.shape) == 2), None)
        new_state = outs.get("stateN") or next((s for s in self.outputs if len(s.shape) == 3), None)
        if prob is None or prob.dtype != np.float32 or len(prob.shape) != 2:
            raise VadError(f"Silero VAD needs a probability output float32[batch, 1]; {found}")
        if new_state is None or new_state.dtype != np.float32 or new_state is prob:
            raise VadError(f"Silero VAD needs a state output float32[2, batch, hidden]; {found}")
        self._state_shape = (int(state.shape[0]), 1, int(state.shape[2]))
        self._sr = None if sr is None else np.array(SAMPLE_RATE if len(sr.shape) == 0 else [SAMPLE_RATE], np.int64)
        self._out_names = [prob.name, new_state.name]

    def reset(self) -> None:
        """Clear the recurrent state and the 64-sample context (call at stream discontinuities)."""
        self._state = np.zeros(self._state_shape, dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._buf = np.zeros((1, CONTEXT_SAMPLES + FRAME_SAMPLES), dtype=np.float32)

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability of the next 512-sample frame (frames must be consecutive)."""
        x = check_frame(frame)
        self._buf[0, :CONTEXT_SAMPLES] = self._context
        self._buf[0, CONTEXT_SAMPLES:] = x
        feeds = {"input": self._buf, "state": self._state}
        if self._sr is not None:
            feeds["sr"] = self._sr
        prob, state = self._session.run(self._out_names, feeds)
        if state.shape != self._state_shape:
            raise VadError(f"Silero VAD returned state {state.shape}, expected {self._state_shape}")
        self._state = state
        self._context = x[-CONTEXT_SAMPLES:].copy()
        return float(np.asarray(prob).reshape(-1)[0])

    def is_speech(self, frame: np.ndarray) -> bool:
        """``probability(frame) >= threshold``."""
        return self.probability(frame) >= self.threshold


class EnergyVad:
    """Model-free VAD: frame level in dBFS compared with an adaptive noise floor.

    The floor is the ``floor_percentile`` of the frame levels over the last ``window_s`` seconds (levels below
    ``min_floor_db`` count as ``min_floor_db``). The probability is a logistic function of the level above the
    floor: 0.5 at ``margin_db``, steepness ``slope_db``; frames quieter than ``gate_db`` get 0. It detects loud
    sounds, not speech specifically, so use it only when the Silero model is not available. A rise of the noise
    level (or noise after digital silence) reads as speech until it fills ``100 - floor_percentile`` % of the
    window (about 4.5 s with the defaults).
    """

    kind = "energy"
    frame_samples = FRAME_SAMPLES
    sample_rate = SAMPLE_RATE

    def __init__(self, threshold: float = 0.5, margin_db: float = 12.0, slope_db: float = 2.5,
                 gate_db: float = -60.0, min_floor_db: float = -75.0, window_s: float = 5.0,
                 floor_percentile: float = 10.0, reason: str = "energy VAD"):
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold={threshold!r} must be in (0, 1)")
        if slope_db <= 0 or window_s <= 0 or not 0 <= floor_percentile <= 100:
            raise ValueError(f"slope_db={slope_db}, window_s={window_s}, floor_percentile={floor_percentile} invalid")
        self.threshold = float(threshold)
        self.margin_db = float(margin_db)
        self.slope_db = float(slope_db)
        self.gate_db = float(gate_db)
        self.min_floor_db = float(min_floor_db)
        self.floor_percentile = float(floor_percentile)
        self._window = max(1, int(round(window_s * SAMPLE_RATE / FRAME_SAMPLES)))
        self.reason = reason
        self.reset()

    def reset(self) -> None:
        """Forget the noise floor history."""
        self._levels: deque = deque(maxlen=self._window)
        self.noise_floor_db: Optional[float] = None

    @staticmethod
    def level_db(frame: np.ndarray) -> float:
        """RMS level of a frame in dBFS (-120 for digital silence)."""
        rms = float(np.sqrt(np.mean(np.square(frame, dtype=np.float64))))
        return 20.0 * np.log10(max(rms, 1e-6))

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability of the next 512-sample frame."""
        level = self.level_db(check_frame(frame))
        self._levels.append(max(level, self.min_floor_db))
        self.noise_floor_db = float(np.percentile(np.fromiter(self._levels, float), self.floor_percentile))
        if level < self.gate_db:
            return 0.0
        z = (level - self.noise_floor_db - self.margin_db) / self.slope_db
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0))))

    def is_speech(self, frame: np.ndarray) -> bool:
        """``probability(frame) >= threshold``."""
        return self.probability(frame) >= self.threshold


def create_vad(model_path: Optional[Union[str, Path]] = None, threshold: float = 0.5,
               **energy_kwargs) -> Union[SileroVad, EnergyVad]:
    """Silero VAD when ``model_path`` loads, else :class:`EnergyVad`; ``.kind``/``.reason`` say which and why.

    ``reason`` starts with ``"energy fallback:"`` when the fallback was taken (no path given, file missing, load
    failure or wrong signature), so the caller can report it.
    """
    if model_path is None or str(model_path) == "":
        return EnergyVad(threshold, reason="energy fallback: no VAD model configured", **energy_kwargs)
    try:
        return SileroVad(model_path, threshold)
    except (OSError, VadError, ModelLoadError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return EnergyVad(threshold, reason=f"energy fallback: cannot use {model_path}: {detail}", **energy_kwargs)
