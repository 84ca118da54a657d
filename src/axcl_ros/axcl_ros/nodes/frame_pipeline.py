"""The way of one camera frame through an image node, written once for the detector and the depth node:

    camera message → decode (io.image_transport) → node.prepare (adapter.preprocess) → shared executor
    (latest frame per camera) → node.publish (adapter.postprocess → messages) → counters

Every frame ends in exactly one per-camera counter: ``published``, ``dropped`` (replaced in the executor's
latest-only slot), ``errors`` (rejected input, failed run) — besides ``lost_in_transport``, which the camera
subscription counts before a frame gets here. A pipeline belongs to one configuration: ``close()`` (on cleanup)
makes results still in flight go nowhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping, Optional, Tuple, Type

import numpy as np
from axcl_msgs.msg import InferenceTiming

from ..io.image import ImageConversionError
from ..io.image_transport import decode_bgr8
from ..runtime.model_handle import ExecutorShutdownError, ModelReleasedError
from .camera_input import CameraStream
from .node_model import NodeModel


@dataclass
class FrameTimes:
    """``time.perf_counter()`` stamps of one frame: arrival, end of pre-processing, start of post-processing."""

    received: float
    preprocessed: float = 0.0
    postprocess_started: float = 0.0

    def timing(self, model: Optional[NodeModel], result) -> InferenceTiming:
        """The ``axcl_msgs/InferenceTiming`` of this frame, ending now (``result``: the executor's run result)."""
        now = time.perf_counter()
        return InferenceTiming(model=model.model_name if model else "", backend=model.backend if model else "",
                               device=model.device if model else "",
                               preprocess_ms=(self.preprocessed - self.received) * 1e3,
                               queue_ms=result.queue_wait_ms, inference_ms=result.run_ms,
                               postprocess_ms=(now - self.postprocess_started) * 1e3,
                               total_ms=(now - self.received) * 1e3)


#: ``prepare(camera, bgr) -> (feeds, context)``: the model inputs and what ``publish`` needs of this frame
Prepare = Callable[[CameraStream, np.ndarray], Tuple[Mapping[str, np.ndarray], Any]]
#: ``publish(camera, header, context, result, times) -> InferenceTiming | None`` (None: nothing went out)
Publish = Callable[[CameraStream, Any, Any, Any, FrameTimes], Optional[InferenceTiming]]


class FramePipeline:
    """Runs every frame of a node's cameras through ``prepare`` → the model → ``publish`` (see module doc).

    ``input_errors``: exception types of ``decode``/``prepare`` that mean a malformed frame (counted as the camera's
    ``errors`` and logged, throttled, as a rejected input). ``publish`` runs on the executor's completion thread,
    inside the node's callback boundary.
    """

    def __init__(self, node, model: NodeModel, transport: str, prepare: Prepare, publish: Publish, *,
                 input_errors: Tuple[Type[BaseException], ...] = (ImageConversionError,)) -> None:
        self.node = node
        self.model = model
        self.transport = transport
        self.prepare = prepare
        self.publish = publish
        self.input_errors = input_errors
        self.closed = False

    def close(self) -> None:
        """Results of frames still in flight are discarded from now on."""
        self.closed = True

    def on_frame(self, cam: CameraStream, msg, t_received: float) -> None:
        """Camera subscription callback (:class:`~axcl_ros.nodes.camera_input.CameraInputs`)."""
        if self.closed:  # a callback that raced a cleanup
            return
        node = self.node
        try:
            bgr = decode_bgr8(msg, self.transport, node.max_image_pixels)
            feeds, context = self.prepare(cam, bgr)
        except self.input_errors as exc:
            cam.errors += 1
            node.bad_inputs.report(f"image on {cam.topic}", exc)
            return
        times = FrameTimes(t_received, time.perf_counter())
        try:
            future = self.model.submit(feeds, stream=cam.key)
        except (ModelReleasedError, ExecutorShutdownError):
            return  # the model is going away (cleanup/shutdown): nothing to serve
        except Exception as exc:  # noqa: BLE001 - a callback must never take the process down
            cam.errors += 1
            node.bad_inputs.report(f"frame on {cam.topic}", exc)
            return
        future.add_done_callback(node.guard("inference result", partial(
            self._on_result, cam, msg.header, context, times)))

    def _on_result(self, cam: CameraStream, header, context, times: FrameTimes, future) -> None:
        if future.cancelled():
            cam.dropped += 1
            return
        if self.closed:  # cleaned up (or reconfigured) while this frame was in flight
            return
        try:
            result = future.result()
            times.postprocess_started = time.perf_counter()
            timing = self.publish(cam, header, context, result, times)
        except Exception as exc:  # noqa: BLE001 - a bad frame must never stop the node
            self.node.report_frame_error(cam, exc)
            return
        if timing is None:
            return  # deactivated while in flight: nothing published, nothing counted as published
        cam.published += 1
        cam.last_latency_ms = timing.total_ms
