"""``speech``: audio topic → voice activity segments → Whisper → transcripts (lifecycle node).

Subscribes: ``audio_topic`` (axcl_msgs/AudioChunk, S16LE/F32LE, any rate and channel count), ``mute``
(std_msgs/Bool: while true, recognition is suppressed and an open segment is discarded, e.g. while the robot speaks).
Publishes: ``transcript`` (axcl_msgs/Transcript; header.stamp = time of the segment's first sample, i.e. speech start
including ``speech_pad_ms``; one final message per speech segment, success or explicit error; partial results while
a segment is open when ``partial_period_s > 0``), ``speech_active`` (std_msgs/Bool, transient local, on change),
``/diagnostics``.
Services: ``~/transcribe`` (axcl_msgs/srv/Transcribe: ≤ 30 s of audio in, transcript out).
Actions: ``~/listen_once`` (axcl_msgs/action/ListenOnce: the transcript of the next utterance; one goal at a time,
each goal holds one executor thread while it waits).

Whisper encoder runs and decoder steps go through the process-wide executor of the model's device, one job each
(:mod:`axcl_ros.models.whisper.transcriber`, loaded with :class:`~.node_model.NodeModel` like every node's model);
segmentation and queueing live in :mod:`axcl_ros.models.speech.pipeline`.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

from axcl_msgs.action import ListenOnce
from axcl_msgs.msg import AudioChunk, Transcript
from axcl_msgs.srv import Transcribe
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool

from .. import assets
from ..io.audio import AudioInput, decode_chunk
from ..io.audio_format import AudioFormatError
from ..io.stamps import stamp_to_seconds
from ..io.transcript_messages import transcript_message
from ..models.speech.outcome import SpeechOutcome
from ..models.speech.pipeline import SpeechPipeline
from ..models.speech.segmenter import MAX_SEGMENT_LIMIT_S, SpeechSegmenter
from ..models.vad import EnergyVad, create_vad
from ..runtime.registry import BACKEND_CHOICES
from .common import AxclLifecycleNode
from .node_model import NodeModel
from .parameters import ParamSpec
from .process import run_main
from .qos import LATCHED_QOS
from .speech_listen import ListenOnceServer
from .transport_input import INPUT_QOS_CHOICES, PROFILE_HINT, TransportInput, skipped_in_queue

TASKS = ("transcribe", "translate")
TRANSCRIPT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)
MUTE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
#: audio chunks the input subscription keeps while its callback is busy (100 s of 100-ms chunks; a loaded 2-core
#: host running Whisper can starve the callback for seconds while audio arrives faster than real time)
AUDIO_QUEUE_DEPTH = 1000


class SpeechNode(ListenOnceServer, AxclLifecycleNode):
    """Lifecycle node: VAD segmentation + Whisper recognition with exact per-segment accounting."""

    PARAMS = (
        ParamSpec("model_dir", "", "Whisper folder: the converter's encoder.onnx/decoder.onnx/tokenizer.json/"
                                   "config.json, or AXERA's {t}-encoder.axmodel + {t}-decoder.axmodel (schema B) or "
                                   "{t}-decoder-loop.axmodel + positional_embedding.bin (schema A) + {t}-tokens.txt."),
        ParamSpec("encoder_path", "", "Encoder model (overrides model_dir)."),
        ParamSpec("decoder_path", "", "Decoder model, schema B decoder or schema A decoder-loop (overrides "
                                      "model_dir)."),
        ParamSpec("tokenizer_path", "", "tokenizer.json (Hugging Face) or AXERA tokens.txt (overrides model_dir)."),
        ParamSpec("config_path", "", "AXERA-style config json (optional; found in model_dir when empty)."),
        ParamSpec("backend", "auto", "Inference backend; auto = axcl for .axmodel files, else onnxruntime.",
                  choices=BACKEND_CHOICES),
        ParamSpec("device", "", "Backend device: '' or 'cpu', 'cuda:0' (onnxruntime), card index '0' (axcl)."),
        ParamSpec("language", "en", "Language code, or 'auto' to detect (multilingual models).", dynamic=True),
        ParamSpec("task", "transcribe", "transcribe, or translate to English (multilingual models).",
                  choices=TASKS, dynamic=True),
        ParamSpec("timestamps", True, "Decode timestamp tokens: transcripts carry timed segments.", dynamic=True),
        ParamSpec("vad_model_path", "", "Silero VAD ONNX; '' = the one packaged by silero-vad. Without a usable "
                                        "model an energy VAD is used and reported in diagnostics."),
        ParamSpec("vad_threshold", 0.5, "Speech probability threshold.", min=0.05, max=0.95),
        ParamSpec("min_speech_ms", 250.0, "Voiced time before a segment starts.", min=0.0, max=5000.0),
        ParamSpec("min_silence_ms", 500.0, "Silence that ends a segment.", min=32.0, max=10000.0),
        ParamSpec("speech_pad_ms", 200.0, "Audio kept before and after the speech.", min=0.0, max=2000.0),
        ParamSpec("max_segment_s", 20.0, "Longest segment; longer speech is split at the quietest point.",
                  min=2.0, max=MAX_SEGMENT_LIMIT_S),
        ParamSpec("partial_period_s", 0.0, "Seconds between partial results of an open segment; 0 = none.",
                  min=0.0, max=30.0),
        ParamSpec("queue_size", 4, "Segments that may wait for recognition; on overflow the oldest is reported "
                                   "as an error transcript.", min=1, max=1000),
        ParamSpec("audio_topic", "audio", "AudioChunk input topic."),
        ParamSpec("input_qos", "auto", "Audio input QoS: auto = reliable when every publisher is reliable, best "
                                       "effort otherwise (re-checked as publishers come and go); sensor_data = best "
                                       "effort.", choices=INPUT_QOS_CHOICES),
        ParamSpec("listen_timeout_s", 15.0, "Default timeout of ~/listen_once goals.", min=0.1, max=3600.0,
                  dynamic=True),
    )

    def __init__(self, node_name: str = "speech", **kwargs) -> None:
        self.whisper = None
        self.pipeline: Optional[SpeechPipeline] = None
        self.vad = None
        self._pubs: dict = {}
        self._subs: list = []
        self._audio_in: Optional[TransportInput] = None
        self._srv = None
        self._action = None
        self._active = False
        self._listening = 0
        self._listen_lock = threading.Lock()
        self._frame_id = ""
        super().__init__(node_name, **kwargs)
        self._audio_group = MutuallyExclusiveCallbackGroup()
        self._service_group = ReentrantCallbackGroup()

    # -- lifecycle ---------------------------------------------------------------------------------------
    def configure(self) -> None:
        from ..models.whisper.transcriber import WhisperTranscriber, find_model_files

        files = find_model_files(self.param("model_dir"), self.param("encoder_path"), self.param("decoder_path"),
                                 self.param("tokenizer_path"), self.param("config_path"))
        backend, device = self.param("backend"), self.param("device")
        encoder = NodeModel.load(self, files.encoder, backend, device, what="encoder_path")
        try:
            decoder = NodeModel.load(self, files.decoder, backend, device, what="decoder_path")
        except BaseException:
            encoder.release()
            raise
        self.whisper = WhisperTranscriber(encoder.handle, decoder.handle, files, device)
        reason = self._language_problem(self.param("language"), self.param("task"))
        if reason:
            raise ValueError(reason)
        self.vad = self._make_vad()
        segmenter = SpeechSegmenter(
            self.vad, threshold=float(self.param("vad_threshold")), min_speech_ms=float(self.param("min_speech_ms")),
            min_silence_ms=float(self.param("min_silence_ms")), speech_pad_ms=float(self.param("speech_pad_ms")),
            max_segment_s=float(self.param("max_segment_s")),
            partial_interval_s=float(self.param("partial_period_s")),
            split_search_s=min(3.0, float(self.param("max_segment_s")) / 2))
        self.pipeline = SpeechPipeline(self._transcribe_segment, segmenter, audio_input=AudioInput(nonfinite="reject"),
                                       queue_size=int(self.param("queue_size")), language=self.param("language"),
                                       task=self.param("task"),
                                       on_outcome=self.guard("transcript output", self._publish_outcome),
                                       on_activity=self.guard("speech_active output", self._publish_activity))
        self._pubs["transcript"] = self.create_lifecycle_publisher(Transcript, "transcript", TRANSCRIPT_QOS)
        self._pubs["speech_active"] = self.create_lifecycle_publisher(Bool, "speech_active", LATCHED_QOS)
        self._srv = self.create_service(Transcribe, "~/transcribe", self._on_transcribe,
                                        callback_group=self._service_group)
        self._action = ActionServer(self, ListenOnce, "~/listen_once",
                                    execute_callback=self.guard("action listen_once", self._execute_listen,
                                                                self._aborted_listen),
                                    goal_callback=self.guard("action goal", self._on_goal,
                                                             lambda _goal: GoalResponse.REJECT),
                                    cancel_callback=lambda _goal: CancelResponse.ACCEPT,
                                    callback_group=self._service_group)
        self.pipeline.start()
        self.get_logger().info(f"configured {self.whisper.describe()}; VAD: {self.vad.reason}")
        if self.vad.kind != "silero":
            self.get_logger().warning(f"no Silero VAD ({self.vad.reason}): using the energy VAD, which reacts to any "
                                      "loud sound")

    def activate(self) -> None:
        self._audio_in = TransportInput(self, AudioChunk, self.param("audio_topic"), self._on_audio,
                                        self.param("input_qos"), AUDIO_QUEUE_DEPTH, callback_group=self._audio_group,
                                        on_lost=self._on_audio_lost, on_gap=self._on_audio_gap)
        self._audio_in.start()
        self._subs = [
            self.create_subscription(Bool, "mute", self._on_mute, MUTE_QOS, callback_group=self._audio_group),
        ]
        self._active = True
        self._pubs["speech_active"].publish(Bool(data=self.pipeline.speech_active))

    def _on_audio_gap(self, count: int) -> None:
        self.counters["audio_sequence_gaps"] += count

    def _on_audio_lost(self, count: int) -> None:
        self.counters["audio_lost_in_transport"] += count
        self.get_logger().warning(
            f"{self.counters['audio_lost_in_transport']} audio chunks lost in transport on "
            f"{self.param('audio_topic')} (subscribed {self._audio_in.qos_text if self._audio_in else '?'}); use a "
            f"reliable publisher or start it with the shipped transport profile: {PROFILE_HINT}",
            throttle_duration_sec=10.0)

    def _stop_audio_input(self) -> None:
        if self._audio_in is not None:
            self._audio_in.stop()
            self._audio_in = None

    def deactivate(self) -> None:
        self._active = False
        self._stop_audio_input()
        self._subs = self.destroy_all(self._subs, self.destroy_subscription)
        if self.pipeline is not None:
            self.pipeline.flush()  # the open segment is recognised and published before the outputs stop
            if not self.pipeline.drain(10.0):
                self.get_logger().warning(f"{self.pipeline.pending} segments still wait for recognition at "
                                          "deactivation; their transcripts will not be published")

    def cleanup(self) -> None:
        self._active = False
        self._stop_audio_input()
        self._subs = self.destroy_all(self._subs, self.destroy_subscription)
        worker_busy = False
        if self.pipeline is not None:
            given_up = self.pipeline.stop()
            if given_up:
                self.get_logger().warning(f"{given_up} speech segments were not recognised (node cleaned up)")
            worker_busy = getattr(self.pipeline, "worker_alive", False)
            self.pipeline = None
        self.release_entities("_action", "_srv")
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        if self.whisper is not None:
            if worker_busy:  # never free buffers a recognition still uses; the executor frees them at shutdown
                self.get_logger().error("cleanup: a recognition is still running; its model is released with the "
                                        "executor instead of now")
            else:
                self.whisper.release()
            self.whisper = None
        self.vad = None

    def _make_vad(self):
        path = self.param("vad_model_path")
        threshold = float(self.param("vad_threshold"))
        if not path:
            try:
                path = str(assets.silero_vad_onnx())
            except assets.AssetNotFoundError as exc:
                return EnergyVad(threshold, reason=f"energy fallback: {exc}")
        return create_vad(path, threshold)

    # -- parameters ------------------------------------------------------------------------------------
    def _language_problem(self, language: str, task: str) -> Optional[str]:
        """Why ``language``/``task`` do not suit the loaded model (None when they do)."""
        language = (language or "").strip().lower()
        if not language:
            return "language must be a language code or 'auto'"
        if self.whisper is None:
            return None
        tok = self.whisper.tokenizer
        if not tok.is_multilingual:
            if language not in ("en", "auto"):
                return f"language={language!r}: the model is English-only (use 'en' or 'auto')"
            if task != "transcribe":
                return f"task={task!r}: an English-only model can only transcribe"
            return None
        if language != "auto":
            try:
                tok.language_token(language)
            except Exception as exc:  # noqa: BLE001 - the tokenizer names the problem
                return f"language={language!r}: {exc}"
        return None

    def validate_parameter(self, name: str, value: Any) -> Optional[str]:
        if name == "language":
            return self._language_problem(value, self.param("task"))
        if name == "task":
            return self._language_problem(self.param("language"), value)
        return None

    def apply_dynamic_parameter(self, name: str, value: Any) -> None:
        if self.pipeline is not None and name == "language":
            self.pipeline.language = str(value).strip().lower()
        elif self.pipeline is not None and name == "task":
            self.pipeline.task = str(value)
        self.get_logger().info(f"{name} set to {value!r}")

    # -- data path -----------------------------------------------------------------------------------------
    def _transcribe_segment(self, audio, language: str, task: str):
        return self.whisper.transcribe(audio, language or "en", task, timestamps=bool(self.param("timestamps")))

    def _on_audio(self, msg: AudioChunk) -> None:
        pipeline = self.pipeline
        if pipeline is None:
            return
        try:
            event = pipeline.push_msg(msg)
        except (AudioFormatError, ValueError) as exc:
            self.bad_inputs.report(f"audio chunk on {self.param('audio_topic')}", exc)
            return
        except Exception as exc:  # noqa: BLE001 - e.g. a VAD runtime error: a callback must never stop the node
            self.counters["audio_errors"] += 1
            self.get_logger().error(f"audio chunk could not be processed: {exc}", throttle_duration_sec=5.0)
            return
        self._frame_id = msg.header.frame_id
        if event is not None:
            cont = pipeline.audio.continuity
            self.get_logger().warning(
                f"audio {event.kind} of {abs(event.delta_s) * 1e3:.0f} ms at stamp {event.stamp_s:.3f} s (expected "
                f"{event.expected_stamp_s:.3f} s); {cont.gaps} gaps, {cont.overlaps} overlaps so far",
                throttle_duration_sec=5.0)

    def _on_mute(self, msg: Bool) -> None:
        if self.pipeline is not None and bool(msg.data) != self.pipeline.muted:
            self.pipeline.set_muted(bool(msg.data))
            self.get_logger().info("muted: recognition suppressed" if msg.data else "unmuted")

    def _publish_activity(self, active: bool) -> None:
        pub = self._pubs.get("speech_active")
        if pub is not None:
            pub.publish(Bool(data=bool(active)))

    def _publish_outcome(self, outcome: SpeechOutcome) -> None:
        pub = self._pubs.get("transcript")
        if pub is not None:
            pub.publish(transcript_message(outcome, self._frame_id, self.whisper))

    # -- one-shot service ------------------------------------------------------------------------------------
    def _on_transcribe(self, request, response):
        t0 = time.perf_counter()
        whisper = self.whisper
        if whisper is None:
            response.success, response.message = False, "the speech node is not configured"
            return response
        audio_msg = request.audio
        try:
            audio = decode_chunk(audio_msg.data, audio_msg.sample_format, audio_msg.channels, audio_msg.sample_rate,
                                 nonfinite="reject")
        except AudioFormatError as exc:
            self.bad_inputs.report("audio in ~/transcribe", exc)
            response.success, response.message = False, f"bad audio: {exc}"
            return response
        language = (request.language or self.param("language")).strip().lower()
        problem = self._language_problem(language, self.param("task"))
        if problem:
            response.success, response.message = False, problem
            return response
        outcome = SpeechOutcome(0, True, False, stamp_to_seconds(audio_msg.header.stamp), audio.size / 16000.0, 0,
                                audio.size, "service", language=language)
        try:
            rec = whisper.transcribe(audio, language, self.param("task"), timestamps=bool(self.param("timestamps")))
        except Exception as exc:  # noqa: BLE001 - the service answers, it never raises
            outcome.error = f"recognition failed: {type(exc).__name__}: {exc}"
        else:
            outcome.success, outcome.text, outcome.language, outcome.recognition = \
                True, rec.result.text, rec.result.language, rec
        outcome.latency_ms = (time.perf_counter() - t0) * 1000.0
        self._frame_id = self._frame_id or audio_msg.header.frame_id
        response.transcript = transcript_message(outcome, self._frame_id, self.whisper)
        response.transcript.header.frame_id = audio_msg.header.frame_id
        response.success = outcome.success
        response.message = outcome.error or f"{len(outcome.text.split())} words"
        self.counters["service_calls"] += 1
        return response

    # -- diagnostics -------------------------------------------------------------------------------------------
    def diagnostic_values(self) -> dict:
        values: dict = {}
        if self.whisper is not None:
            values.update({"model": self.whisper.model_name, "backend": self.whisper.backend,
                           "device": self.whisper.device, "schema": self.whisper.schema,
                           "multilingual": self.whisper.multilingual})
            for name, st in self.whisper.stats().items():
                for key in ("count", "errors", "run_ms_mean", "queue_wait_ms_mean"):
                    if key in st:
                        values[f"model.{name}.{key}"] = st[key]
        if self.vad is not None:
            values.update({"vad": self.vad.kind, "vad_reason": self.vad.reason})
        if self.pipeline is not None:
            values.update({f"speech.{k}": v for k, v in self.pipeline.summary().items()})
        values["audio.lost_in_transport"] = self.counters.get("audio_lost_in_transport", 0)
        values["audio.skipped_in_queue"] = skipped_in_queue(self.counters.get("audio_sequence_gaps", 0),
                                                            values["audio.lost_in_transport"])
        if self._audio_in is not None:
            values["audio.qos"] = self._audio_in.qos_text
            values["audio.lost_source"] = self._audio_in.lost_source
        return values

    def diagnostic_level(self) -> tuple:
        level, message = super().diagnostic_level()
        if level == DiagnosticStatus.OK and self.vad is not None and self.vad.kind != "silero":
            return DiagnosticStatus.WARN, f"energy VAD in use ({self.vad.reason})"
        return level, message


def main(args=None) -> int:
    """Run the speech node alone (``ros2 run axcl_ros speech``)."""
    return run_main(SpeechNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
