"""What the demo watches and prints: detections per frame, transcripts, per-stage latency, drops, PNG files."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
from axcl_msgs.msg import AudioChunk, DetectionArray, Transcript
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from axcl_ros.io.image import array_to_image_fields, to_bgr8
from axcl_ros.io.stamps import nanoseconds_to_stamp, stamp_to_nanoseconds
from axcl_ros_testing.lifecycle_client import LifecycleClient

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
#: what camera drivers publish with (sensor data: best effort): the frames rely on the shipped transport profile
CAMERA_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
STAGES = ("preprocess_ms", "queue_ms", "inference_ms", "postprocess_ms", "total_ms")


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Plain word edit distance / reference words, lower-case, punctuation stripped."""
    ref = re.sub(r"[^a-z0-9' ]", " ", reference.lower()).split()
    hyp = re.sub(r"[^a-z0-9' ]", " ", hypothesis.lower()).split()
    d = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, d[0] = d.copy(), i
        for j, h in enumerate(hyp, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
    return float(d[len(hyp)]) / max(1, len(ref))


class DemoObserver:
    """Feeds the inputs into the running pipeline and collects what comes out."""

    def __init__(self, graph, out: Path, nodes: List[str], speech_refs: list) -> None:
        self.graph = graph
        self.out = out
        self.nodes = nodes
        self.refs = speech_refs
        self.node = graph.node("axcl_ros_demo")
        self.lifecycle = LifecycleClient(graph, self.node)
        self.sent: Dict[int, str] = {}          # stamp ns → sample name
        self.audio_sent = 0
        self.detections: List[DetectionArray] = []
        self.transcripts: List[Transcript] = []
        self.diagnostics: Dict[str, object] = {}
        self.saved: Dict[str, Path] = {}
        self._lock = threading.Lock()
        self._last_output = time.monotonic()
        self.image_pub = self.node.create_publisher(Image, "/camera/image_raw", CAMERA_QOS)
        self.audio_pub = self.node.create_publisher(AudioChunk, "/audio", RELIABLE)
        self.node.create_subscription(DetectionArray, "/camera/detections", self._on_detections, RELIABLE)
        self.node.create_subscription(Image, "/camera/detections_image", self._on_annotated, RELIABLE)
        self.node.create_subscription(Image, "/camera/inverse_depth_relative/colored", self._on_depth, RELIABLE)
        self.node.create_subscription(Image, "/camera/depth/colored", self._on_depth, RELIABLE)
        self.node.create_subscription(Transcript, "/transcript", self._on_transcript, RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, RELIABLE)

    # -- bring-up ---------------------------------------------------------------------------------------------------
    def wait_active(self, timeout: float) -> bool:
        """Wait until every hosted node reports the lifecycle state ``active``."""
        deadline = time.monotonic() + timeout
        pending = list(self.nodes)
        while pending and time.monotonic() < deadline:
            try:
                if self.lifecycle.state(f"/{pending[0]}", timeout=5.0) == "active":
                    _say(f"  {pending.pop(0)}: active")
                    continue
            except TimeoutError:
                pass
            time.sleep(0.5)
        return not pending

    # -- inputs -----------------------------------------------------------------------------------------------------
    def feed_images(self, images: list, frames: int, fps: float) -> None:
        """Publish ``frames`` camera frames cycling through ``images`` at ``fps``."""
        self.graph.wait_for(lambda: self.image_pub.get_subscription_count() > 0, 30, "the detector's subscription")
        period = 1.0 / fps
        t_next = time.monotonic()
        for i in range(frames):
            name, bgr = images[i % len(images)]
            msg = Image(**array_to_image_fields(bgr, "bgr8", data_as="array"))
            msg.header.stamp = self.node.get_clock().now().to_msg()
            msg.header.frame_id = "camera_optical_frame"
            with self._lock:
                self.sent[stamp_to_nanoseconds(msg.header.stamp)] = name
            self.image_pub.publish(msg)
            t_next += period
            time.sleep(max(0.0, t_next - time.monotonic()))

    def play_audio(self, wav: Path, rate: float, chunk_ms: int = 100) -> None:
        """Stream a 16 kHz WAV onto /audio at ``rate`` × real time (header stamp = first sample's time)."""
        from axcl_ros.io.audio import encode_chunk
        from axcl_ros.io.wav import read_wav

        samples = read_wav(wav).mono()
        self.graph.wait_for(lambda: self.audio_pub.get_subscription_count() > 0, 30, "the speech subscription")
        n = 16000 * chunk_ms // 1000
        start = self.node.get_clock().now().nanoseconds
        t_next = time.monotonic()
        _say(f"streaming {len(samples) / 16000:.1f} s of speech at {rate:g}x real time")
        for k in range(0, len(samples), n):
            msg = AudioChunk(sample_rate=16000, channels=1, sample_format=AudioChunk.FORMAT_S16LE)
            msg.data = encode_chunk(samples[k:k + n], AudioChunk.FORMAT_S16LE, 1)
            stamp = start + k * 10**9 // 16000
            nanoseconds_to_stamp(stamp, msg.header.stamp)
            msg.header.frame_id = "microphone"
            self.audio_pub.publish(msg)
            self.audio_sent += 1
            t_next += chunk_ms / 1000 / rate
            time.sleep(max(0.0, t_next - time.monotonic()))

    def wait_quiet(self, timeout: float, quiet_s: float = 4.0) -> None:
        """Wait until nothing new arrived for ``quiet_s`` (all results are in) or ``timeout``."""
        deadline = time.monotonic() + timeout
        expected = len(self.refs)
        while time.monotonic() < deadline:
            done = len([t for t in self.transcripts if t.is_final]) >= expected
            if done and time.monotonic() - self._last_output > quiet_s:
                return
            time.sleep(0.2)

    # -- outputs ----------------------------------------------------------------------------------------------------
    def _name_of(self, header) -> str:
        with self._lock:
            return self.sent.get(stamp_to_nanoseconds(header.stamp), "?")

    def _on_detections(self, msg: DetectionArray) -> None:
        self._last_output = time.monotonic()
        self.detections.append(msg)
        t = msg.timing
        objects = ", ".join(f"{d.class_name} {d.score:.2f} [{d.center_x - d.size_x / 2:.0f},"
                            f"{d.center_y - d.size_y / 2:.0f},{d.center_x + d.size_x / 2:.0f},"
                            f"{d.center_y + d.size_y / 2:.0f}]" for d in msg.detections) or "nothing"
        print(f"  frame {len(self.detections):3d} {self._name_of(msg.header):9s} {msg.image_width}x"
              f"{msg.image_height}: {objects}  | pre {t.preprocess_ms:.1f} queue {t.queue_ms:.1f} "
              f"infer {t.inference_ms:.1f} post {t.postprocess_ms:.1f} total {t.total_ms:.1f} ms", flush=True)

    def _save(self, key: str, msg: Image) -> None:
        if key in self.saved:
            return
        path = self.out / f"{key}.png"
        cv2.imwrite(str(path), np.ascontiguousarray(to_bgr8(msg)))
        self.saved[key] = path

    def _on_annotated(self, msg: Image) -> None:
        self._save(f"annotated_{self._name_of(msg.header)}", msg)

    def _on_depth(self, msg: Image) -> None:
        self._save(f"depth_colored_{self._name_of(msg.header)}", msg)

    def _on_transcript(self, msg: Transcript) -> None:
        self._last_output = time.monotonic()
        self.transcripts.append(msg)
        if msg.is_final:
            state = "" if msg.success else f" [error: {msg.error}]"
            _say(f"transcript #{msg.segment_id} ({msg.duration:.1f} s of speech, {msg.language}, "
                 f"{msg.timing.total_ms:.0f} ms): {msg.text!r}{state}")

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = status

    def _values(self, node: str) -> Dict[str, str]:
        """The latest /diagnostics key/values of one of our nodes."""
        status = self.diagnostics.get(f"axcl_ros: {node}")
        return {kv.key: kv.value for kv in status.values} if status is not None else {}

    # -- summary ----------------------------------------------------------------------------------------------------
    def losses(self) -> Dict[str, int]:
        """Every camera frame and audio chunk accounted for by kind, from the nodes' /diagnostics."""
        det, sp = self._values("/detector"), self._values("/speech")

        def num(values, key):
            try:
                return int(values.get(key, 0))
            except ValueError:
                return 0

        sent, received = len(self.sent), num(det, "camera0.received")
        lost, skipped = num(det, "camera0.lost_in_transport"), num(det, "camera0.skipped_in_queue")
        out = {"frames_published": sent, "frames_received": received, "frames_lost_in_transport": lost,
               "frames_skipped_in_queue": skipped,
               "frames_missing_unreported": max(0, sent - received - lost - skipped),
               "frames_dropped_latest_slot": num(det, "camera0.dropped"),
               "frames_rejected": num(det, "camera0.errors"), "detection_messages": len(self.detections)}
        if self.audio_sent:
            chunks = num(sp, "speech.chunks") + num(sp, "speech.rejected_chunks")
            audio_lost, audio_skipped = num(sp, "audio.lost_in_transport"), num(sp, "audio.skipped_in_queue")
            out.update({"audio_chunks_published": self.audio_sent, "audio_chunks_received": chunks,
                        "audio_chunks_lost_in_transport": audio_lost, "audio_chunks_skipped_in_queue": audio_skipped,
                        "audio_chunks_missing_unreported": max(0, self.audio_sent - chunks - audio_lost
                                                               - audio_skipped),
                        "audio_gaps": num(sp, "speech.gaps"),
                        "audio_chunks_rejected": num(sp, "speech.rejected_chunks")})
        return out

    def report(self) -> int:
        """Print the summary; return 0 when every modality that ran produced output and nothing was lost in
        transport (frames or audio chunks that never reached the nodes, reported or not)."""
        print()
        _say("==== summary ====")
        loss = self.losses()
        got = loss["detection_messages"]
        _say(f"camera: {loss['frames_published']} frames published (best effort, as camera drivers do), "
             f"{loss['frames_received']} received by the detector, {loss['frames_lost_in_transport']} lost in "
             f"transport (message-lost event), {loss['frames_skipped_in_queue']} replaced in the subscription "
             f"queue before the node took them (node busy), {loss['frames_missing_unreported']} missing without a "
             f"report, "
             f"{loss['frames_dropped_latest_slot']} dropped by the executor's latest-frame slot (model busy), "
             f"{loss['frames_rejected']} rejected, {got} detection messages")
        if self.audio_sent:
            _say(f"audio: {loss['audio_chunks_published']} chunks published, {loss['audio_chunks_received']} "
                 f"received by speech, {loss['audio_chunks_lost_in_transport']} lost in transport, "
                 f"{loss['audio_chunks_skipped_in_queue']} replaced in the subscription queue, "
                 f"{loss['audio_chunks_missing_unreported']} missing without a report, {loss['audio_gaps']} stamp "
                 f"gaps, {loss['audio_chunks_rejected']} rejected")
        transport_loss = sum(loss.get(k, 0) for k in (
            "frames_lost_in_transport", "frames_missing_unreported", "audio_chunks_lost_in_transport",
            "audio_chunks_missing_unreported", "audio_gaps"))
        if got:
            arr = {s: np.array([getattr(m.timing, s) for m in self.detections]) for s in STAGES}
            _say("latency per stage (ms)      p50      p95      max")
            for s in STAGES:
                _say(f"  {s[:-3]:22s} {np.percentile(arr[s], 50):8.1f} {np.percentile(arr[s], 95):8.1f} "
                     f"{arr[s].max():8.1f}")
            m = self.detections[0].timing
            _say(f"  model {m.model} on {m.backend}:{m.device}")
        finals = [t for t in self.transcripts if t.is_final]
        if self.refs:
            _say(f"speech: {len(self.refs)} utterances played, {len(finals)} final transcripts")
            for (wav, ref), tr in zip(self.refs, finals):
                _say(f"  {Path(wav).name}: WER {word_error_rate(ref, tr.text) * 100:.0f} %  ref: {ref!r}")
        for _key, path in sorted(self.saved.items()):
            _say(f"wrote {path}")
        for name, status in sorted(self.diagnostics.items()):
            level = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}.get(int.from_bytes(status.level, "little")
                                                                     if isinstance(status.level, bytes)
                                                                     else int(status.level), "?")
            _say(f"diagnostics {name}: {level} {status.message}")
        ok = got > 0 and (not self.refs or len(finals) >= len(self.refs))
        if transport_loss:
            _say(f"TRANSPORT LOSS: {transport_loss} frames/chunks/gaps lost between the publishers and the nodes "
                 "(README: QoS, large images and the transport profile)")
        _say("demo finished" + ("" if ok else " WITH MISSING OUTPUT") + (" WITH TRANSPORT LOSS" if transport_loss
                                                                           else ""))
        return 0 if ok and not transport_loss else 1

