"""``describe``: a language or vision-language model answering prompts about camera images (lifecycle node).

Actions: ``~/describe`` (axcl_msgs/action/Describe: image + prompt → streamed text deltas as feedback, the answer and
its timings as result; cancel stops generation within one token). Services: ``~/ask`` (axcl_msgs/srv/Ask: one-shot,
short answers). Subscribes: ``image_topic`` (sensor_msgs/Image; the latest frame is what an empty request image
means). Publishes: ``description`` (axcl_msgs/Description, narration mode: every ``narration_period_s`` the latest
frame is described with ``narration_prompt``; header copied from that frame), ``/diagnostics``.

One generation runs at a time. ``busy_policy: reject`` refuses a request while one runs; ``queue`` lets one request
wait for it (a third is refused). Every refusal is counted by kind. A model without a vision encoder serves
text-only requests (a small LLM). The decoder layers run on the process-wide inference executor of their device (the
one the other nodes of the process share): every prefill chunk and every generated token is one job there
(:mod:`axcl_ros.models.llm.executor_stack`), so a detector's frames are interleaved with a long answer.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Tuple

import numpy as np
from axcl_msgs.action import Describe
from axcl_msgs.msg import Description
from axcl_msgs.srv import Ask
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ..io.image import ImageConversionError, to_rgb8
from ..models.llm.config import find_model_files
from ..models.llm.generate import GenerationResult, LlmModel
from ..models.llm.sampling import SamplingParams
from ..runtime.base import BackendError
from ..runtime.executors import get_executor
from ..runtime.registry import BACKEND_CHOICES
from .common import AxclLifecycleNode
from .node_model import executor_key
from .parameters import ParamSpec
from .process import run_main
from .qos import OUTPUT_QOS, QOS_CHOICES, make_qos

BUSY_POLICIES = ("reject", "queue")
#: image encodings a vision-language model can be shown (depth and other single-channel data are refused)
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")


class RequestError(ValueError):
    """A request that cannot be served as asked (the message is returned to the caller)."""


class GenerationSlots:
    """Admission of requests: one generation runs; with ``queue`` one more request may wait for it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.running = False
        self.outstanding = 0  #: admitted requests: the running one and the waiting one

    def reserve(self, allow_wait: bool) -> bool:
        """Admit a request: True when nothing is outstanding, or one is and ``allow_wait``."""
        with self._cond:
            if self.outstanding == 0 or (allow_wait and self.outstanding == 1):
                self.outstanding += 1
                return True
            return False

    def acquire(self, abort: Callable[[], bool]) -> bool:
        """Wait for the running slot (an admitted request); False (and the admission dropped) when ``abort()``."""
        with self._cond:
            while self.running:
                if abort():
                    self.outstanding -= 1
                    self._cond.notify_all()
                    return False
                self._cond.wait(0.05)
            self.running = True
            return True

    def release(self) -> None:
        """The running generation ended."""
        with self._cond:
            self.running = False
            self.outstanding -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing runs or waits; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.outstanding:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
            return True


def _is_empty(image: Image) -> bool:
    return image.width == 0 and image.height == 0 and len(image.data) == 0


def _fill(msg: Description, header, prompt: str, r: GenerationResult) -> Description:
    msg.header = header
    msg.prompt = prompt
    msg.text, msg.stop_reason = r.text, r.stop_reason
    msg.prompt_tokens, msg.tokens_generated = r.prompt_tokens, len(r.token_ids)
    msg.image_encode_ms = float(r.image_encode_ms)
    msg.time_to_first_token_ms = float(r.time_to_first_token_ms)
    msg.tokens_per_s = float(r.tokens_per_s)
    return msg


class DescribeNode(AxclLifecycleNode):
    """Lifecycle node around :class:`~axcl_ros.models.llm.generate.LlmModel` (see the module docstring)."""

    PARAMS = (
        ParamSpec("model_dir", "", "Model folder: made by 'axcl_ros convert-llm' (ONNX, CPU) or AXERA's compiled "
                                   "layout (per-layer .axmodel files)."),
        ParamSpec("vision_model_path", "", "Vision encoder (optional; a vision.onnx / *_vit*.axmodel in model_dir "
                                           "is found by itself). Without one the node is text-only."),
        ParamSpec("backend", "auto", "auto = what the layer files need; onnxruntime; axcl.", choices=BACKEND_CHOICES),
        ParamSpec("device", "", "Backend device: '' or 'cpu' (onnxruntime), card index '0' (axcl)."),
        ParamSpec("threads", 0, "onnxruntime intra-op threads (0 = onnxruntime's default).", min=0, max=64),
        ParamSpec("cpu_spinning", False, "Let onnxruntime threads busy-wait between the operators of a decode step "
                                         "(faster on an idle machine, slower when another process keeps a core "
                                         "busy; see the README)."),
        ParamSpec("image_topic", "image", "sensor_msgs/Image topic whose latest frame empty requests describe."),
        ParamSpec("input_qos", "sensor_data", "Image input QoS.", choices=QOS_CHOICES),
        ParamSpec("system_prompt", "", "System prompt (empty = the model's default).", dynamic=True),
        ParamSpec("max_new_tokens", 128, "Default answer length limit in tokens.", min=1, max=4096, dynamic=True),
        ParamSpec("temperature", 0.0, "Sampling temperature; 0 = greedy.", min=0.0, max=10.0, dynamic=True),
        ParamSpec("top_k", 0, "Keep the k most likely tokens (0 = all).", min=0, max=100000, dynamic=True),
        ParamSpec("top_p", 1.0, "Nucleus sampling mass (1 = all).", min=0.01, max=1.0, dynamic=True),
        ParamSpec("seed", -1, "Sampling seed (-1 = not repeatable).", min=-1, max=2**31 - 1, dynamic=True),
        ParamSpec("busy_policy", "reject", "While a generation runs: reject new requests, or queue one.",
                  choices=BUSY_POLICIES, dynamic=True),
        ParamSpec("narration_period_s", 0.0, "Describe the latest frame every this many seconds on 'description' "
                                             "(0 = off).", min=0.0, max=3600.0),
        ParamSpec("narration_prompt", "Describe the scene in one sentence.", "Prompt of the narration mode.",
                  dynamic=True),
        ParamSpec("narration_max_new_tokens", 48, "Length limit of narrations.", min=1, max=1024, dynamic=True),
    )

    def __init__(self, node_name: str = "describe", **kwargs) -> None:
        self.model: Optional[LlmModel] = None
        self.slots = GenerationSlots()
        self._active = False
        self._latest: Optional[Image] = None
        self._latest_lock = threading.Lock()
        self._sub = None
        self._pub = None
        self._action = None
        self._srv = None
        self._timer = None
        self._last: dict = {}
        self._narrated: Optional[Image] = None
        super().__init__(node_name, **kwargs)
        self._requests = ReentrantCallbackGroup()
        self._narration_group = MutuallyExclusiveCallbackGroup()
        self._image_group = MutuallyExclusiveCallbackGroup()

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def configure(self) -> None:
        files = find_model_files(self.param("model_dir"), self.param("vision_model_path"))
        backend, device = self.param("backend"), self.param("device")
        if backend not in ("auto", files.backend):
            raise ValueError(f"backend={backend!r} but the model files in {files.folder} are for "
                             f"{files.backend!r}; set backend: auto")
        # the layers run on the process-wide executor of the device: one job per prefill chunk and per token
        model = LlmModel(files.folder, vision_path=self.param("vision_model_path"),
                         threads=int(self.param("threads")), spinning=bool(self.param("cpu_spinning")),
                         device=device,
                         executor=get_executor(executor_key(files.backend, device)))
        self.model = model
        warm_ms = model.warm_up()  # first-run allocations now, not in the first request's time to first token
        self._pub = self.create_lifecycle_publisher(Description, "description", OUTPUT_QOS)
        self._action = ActionServer(self, Describe, "~/describe", execute_callback=self._execute,
                                    goal_callback=self._on_goal, cancel_callback=lambda _g: CancelResponse.ACCEPT,
                                    callback_group=self._requests)
        self._srv = self.create_service(Ask, "~/ask", self._on_ask, callback_group=self._requests)
        cfg = model.config
        self.get_logger().info(f"configured {cfg.architecture} {cfg.num_layers} layers ({model.files.backend}), "
                               f"context {cfg.max_context}, vision: {model.files.vision or 'none (text-only)'}, "
                               f"warmed up in {warm_ms:.0f} ms")

    def activate(self) -> None:
        if self.model.has_vision:
            self._sub = self.create_subscription(Image, self.param("image_topic"), self._on_image,
                                                 make_qos(self.param("input_qos")), callback_group=self._image_group)
        period = float(self.param("narration_period_s"))
        if period > 0:
            self._timer = self.create_timer(period, self._narrate, callback_group=self._narration_group)
        self._active = True

    def deactivate(self) -> None:
        self._active = False  # a running generation stops before its next token
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self._sub = None

    def cleanup(self) -> None:
        self._active = False
        if not self.slots.wait_idle(10.0):
            self.get_logger().error("cleanup: a generation did not stop within 10 s")
        self.release_entities("_action", "_srv", "_pub")
        if self.model is not None:
            self.model.release()
            self.model = None
        with self._latest_lock:
            self._latest = None

    # -- inputs --------------------------------------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        with self._latest_lock:  # only the latest frame is kept; it is decoded when a request describes it
            self._latest = msg
        self.counters["frames_received"] += 1

    def _peek_latest(self) -> Optional[Image]:
        with self._latest_lock:
            return self._latest

    def _image_for(self, image: Image, text_only: bool) -> Tuple[Optional[np.ndarray], Header]:
        """The RGB image a request describes, and the header its answer carries."""
        if text_only or (not self.model.has_vision and _is_empty(image)):
            return None, Header(stamp=self.get_clock().now().to_msg())
        if not self.model.has_vision:
            raise RequestError("this model has no vision encoder (text-only): send text_only=true or no image")
        if _is_empty(image):
            latest = self._peek_latest()
            if latest is None:
                raise RequestError(f"no frame received on {self.param('image_topic')} yet, and the request carries "
                                   f"no image")
            image = latest
        if image.encoding.lower() not in COLOR_ENCODINGS:
            raise RequestError(f"image encoding {image.encoding!r} cannot be described; send one of "
                               f"{list(COLOR_ENCODINGS)}")
        try:
            return to_rgb8(image), image.header
        except ImageConversionError as exc:
            raise RequestError(f"malformed image: {exc}") from exc

    def _sampling(self) -> SamplingParams:
        seed = int(self.param("seed"))
        return SamplingParams(temperature=float(self.param("temperature")), top_k=int(self.param("top_k")),
                              top_p=float(self.param("top_p")), seed=None if seed < 0 else seed)

    def _run(self, image: Image, text_only: bool, prompt: str, max_new_tokens: int, *, system: str = "",
             sampling: Optional[SamplingParams] = None, stop=(), on_delta=None,
             cancelled: Callable[[], bool] = lambda: False) -> Tuple[GenerationResult, Header]:
        """Resolve the image and generate (the caller holds the running slot). Raises RequestError / BackendError."""
        rgb, header = self._image_for(image, text_only)
        try:
            result = self.model.generate(
                prompt, image=rgb, system=system or self.param("system_prompt"),
                max_new_tokens=int(max_new_tokens or self.param("max_new_tokens")),
                sampling=sampling or self._sampling(), stop=list(stop), on_delta=on_delta,
                should_stop=lambda: cancelled() or not self._active)
        except BackendError:
            raise
        except ValueError as exc:  # PromptError, bad sampling values, bad image
            raise RequestError(str(exc)) from exc
        self.counters["tokens_generated"] += len(result.token_ids)
        self._last = {"last.ttft_ms": round(result.time_to_first_token_ms, 1),
                      "last.tokens_per_s": round(result.tokens_per_s, 2),
                      "last.image_encode_ms": round(result.image_encode_ms, 1), "last.stop_reason": result.stop_reason}
        return result, header

    def _fail(self, kind: str, exc: BaseException) -> str:
        if isinstance(exc, BackendError):
            self.counters["inference_errors"] += 1
            self.last_error = str(exc)
            self.get_logger().error(f"{kind}: inference failed: {exc}", throttle_duration_sec=5.0)
        elif isinstance(exc, RequestError):
            self.bad_inputs.report(kind, exc)
        else:
            self.counters["internal_errors"] += 1
            self.get_logger().error(f"{kind}: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)
        return str(exc)

    # -- action ----------------------------------------------------------------------------------------------------
    def _on_goal(self, _goal) -> GoalResponse:
        if not self._active or self.model is None:
            self.counters["rejected.inactive"] += 1
            return GoalResponse.REJECT
        if not self.slots.reserve(self.param("busy_policy") == "queue"):
            self.counters["rejected.busy"] += 1
            return GoalResponse.REJECT
        self.counters["goals_accepted"] += 1
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle):
        goal = goal_handle.request
        result = Describe.Result()
        if not self.slots.acquire(lambda: goal_handle.is_cancel_requested or not self._active):
            self.counters["goals_cancelled"] += 1
            result.error = "cancelled while waiting for the running generation"
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
            else:
                goal_handle.abort()
            return result
        try:
            def feedback(delta: str, n_tokens: int) -> None:
                goal_handle.publish_feedback(Describe.Feedback(delta=delta, tokens_generated=n_tokens))

            sampling = None
            if not goal.use_node_sampling:
                s = goal.sampling
                sampling = SamplingParams(temperature=float(s.temperature), top_k=int(s.top_k), top_p=float(s.top_p),
                                          seed=None if s.seed < 0 else int(s.seed))
            r, header = self._run(goal.image, goal.text_only, goal.prompt, goal.max_new_tokens,
                                  system=goal.system_prompt, sampling=sampling, stop=goal.stop, on_delta=feedback,
                                  cancelled=lambda: goal_handle.is_cancel_requested)
            _fill(result.description, header, goal.prompt, r)
            if goal_handle.is_cancel_requested:
                self.counters["goals_cancelled"] += 1
                goal_handle.canceled()
            elif not self._active:
                result.error = "node deactivated during generation"
                goal_handle.abort()
            else:
                result.success = True
                self.counters["goals_succeeded"] += 1
                goal_handle.succeed()
        except Exception as exc:  # noqa: BLE001 - a goal never kills the node
            self.counters["goals_failed"] += 1
            result.error = self._fail("describe goal", exc)
            goal_handle.abort()
        finally:
            self.slots.release()
        return result

    # -- service ---------------------------------------------------------------------------------------------------
    def _on_ask(self, request, response):
        if not self._active or self.model is None:
            response.error = "the describe node is not active"
            self.counters["rejected.inactive"] += 1
            return response
        if not self.slots.reserve(self.param("busy_policy") == "queue"):
            response.error = "busy: another generation is running (busy_policy: reject)"
            self.counters["rejected.busy"] += 1
            return response
        if not self.slots.acquire(lambda: not self._active):
            response.error = "the describe node was deactivated"
            return response
        try:
            r, header = self._run(request.image, request.text_only, request.prompt, request.max_new_tokens)
            _fill(response.description, header, request.prompt, r)
            response.success = True
            self.counters["asks_answered"] += 1
        except Exception as exc:  # noqa: BLE001
            response.error = self._fail("ask request", exc)
        finally:
            self.slots.release()
        return response

    # -- narration -------------------------------------------------------------------------------------------------
    def _narrate(self) -> None:
        try:
            frame = self._peek_latest()
            if frame is None or frame is self._narrated:
                self.counters["narrations_skipped_no_new_frame"] += 1
                return
            if not self.slots.reserve(False):
                self.counters["narrations_skipped_busy"] += 1
                return
            if not self.slots.acquire(lambda: not self._active):
                return
            try:
                prompt = self.param("narration_prompt")
                self._narrated = frame
                r, header = self._run(frame, False, prompt, int(self.param("narration_max_new_tokens")))
            finally:
                self.slots.release()
            if self._active and r.stop_reason != "cancelled":
                self._pub.publish(_fill(Description(), header, prompt, r))
                self.counters["narrations_published"] += 1
        except Exception as exc:  # noqa: BLE001 - a timer callback never kills the node
            self._fail("narration", exc)

    # -- diagnostics -----------------------------------------------------------------------------------------------
    def diagnostic_values(self) -> dict:
        out = {"busy": self.slots.running, "waiting": max(0, self.slots.outstanding - int(self.slots.running))}
        if self.model is not None:
            cfg = self.model.config
            out.update({"backend": self.model.files.backend, "model": self.model.files.folder,
                        "layers": cfg.num_layers, "context": cfg.max_context, "vision": self.model.has_vision})
        out.update(self._last)
        return out


def main(args=None) -> None:
    """Entry point of the ``describe`` executable."""
    run_main(DescribeNode, args=args)


if __name__ == "__main__":
    main()
