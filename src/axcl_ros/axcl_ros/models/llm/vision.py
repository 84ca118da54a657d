"""Vision encoder of a vision-language model: an RGB image → rows that replace the image tokens' embeddings.

Contract (InternVL's ViT as AXERA compiles it, or an ONNX export of it): one input, either
``f32[1, 3, S, S]`` (NCHW, RGB, ImageNet mean/std normalised) or ``u8[1, S, S, 3]`` (NHWC RGB, the card model
normalises inside); one output ``[1, N, H]`` or ``[N, H]`` (float32, or bf16 as uint16), N = image tokens (256 for
InternVL2/2.5/3 at 448 px), H = the language model's hidden size. The input kind is read from the model, as AXERA's
runner does.
"""

from __future__ import annotations

import time
from typing import Tuple

import cv2
import numpy as np

from ...runtime.base import Session
from ...runtime.registry import load_model
from .config import LlmConfig, ModelFilesError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class VisionEncoder:
    """A loaded vision encoder checked against the language model's config.

    With ``executor`` (an :class:`~axcl_ros.runtime.executor.InferenceExecutor`) the model is loaded there and every
    image is one job on it, like the layer stack's chunks and tokens; without, it runs on the calling thread.
    """

    def __init__(self, path: str, config: LlmConfig, backend: str = "auto", device: str = "",
                 executor=None) -> None:
        self.path = path
        self._handle = None
        if executor is not None:
            self._handle = executor.load(path, backend=backend, device=device)
            self.session: Session = self._handle.session
        else:
            self.session = load_model(path, backend=backend, device=device)
        try:
            self._check(config)
        except Exception:
            self.release()
            raise

    def _check(self, config: LlmConfig) -> None:
        s = self.session
        if len(s.inputs) != 1 or len(s.outputs) < 1:
            raise ModelFilesError(f"{self.path}: a vision encoder has one image input, found "
                                  f"{[t.describe() for t in s.inputs]}")
        spec = s.inputs[0]
        shape = tuple(spec.shape)
        if spec.dtype == np.float32 and len(shape) == 4 and shape[1] == 3 and shape[2] == shape[3]:
            self.nchw, self.size = True, int(shape[2])
        elif spec.dtype == np.uint8 and len(shape) == 4 and shape[3] == 3 and shape[1] == shape[2]:
            self.nchw, self.size = False, int(shape[1])
        else:
            raise ModelFilesError(f"{self.path}: vision input {spec.describe()} is neither f32[1,3,S,S] nor "
                                  f"u8[1,S,S,3]")
        out = s.outputs[0]
        if out.shape[-1] != config.hidden_size:
            raise ModelFilesError(f"{self.path}: vision output {out.describe()} does not end in the language "
                                  f"model's hidden size {config.hidden_size}")
        self.n_tokens = int(out.shape[-2]) if out.shape[-2] is not None else config.n_image_tokens
        if config.n_image_tokens and self.n_tokens != config.n_image_tokens:
            raise ModelFilesError(f"{self.path}: vision output has {self.n_tokens} rows, config.json "
                                  f"n_image_tokens is {config.n_image_tokens}")

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """The model input for an RGB ``uint8 [h, w, 3]`` image (resized to S x S, bicubic, no crop)."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"the vision encoder takes an RGB uint8 [h, w, 3] image, got {rgb.dtype}{rgb.shape}")
        img = cv2.resize(rgb, (self.size, self.size), interpolation=cv2.INTER_CUBIC)
        if not self.nchw:
            return np.ascontiguousarray(img[None])
        x = (img.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def encode(self, rgb: np.ndarray) -> Tuple[np.ndarray, float]:
        """``(rows f32[N, H], milliseconds)`` for one RGB image."""
        t0 = time.perf_counter()
        spec = self.session.inputs[0]
        feeds, names = {spec.name: self.preprocess(rgb)}, [self.session.outputs[0].name]
        if self._handle is not None:
            out = self._handle.executor.run(self._handle, feeds, names).outputs
        else:
            out = self.session.run(feeds, names)
        rows = next(iter(out.values()))
        if rows.dtype == np.uint16:
            rows = (rows.astype(np.uint32) << 16).view(np.float32)
        rows = np.asarray(rows, np.float32).reshape(-1, rows.shape[-1])
        return rows, (time.perf_counter() - t0) * 1e3

    def release(self) -> None:
        """Free the model (idempotent)."""
        if self._handle is not None:
            self._handle.release()
        else:
            self.session.release()
