"""``audio_capture``: microphone → ``axcl_msgs/AudioChunk`` (lifecycle node; sounddevice/PortAudio, optional).

The capture dependency is optional: without the ``sounddevice`` package or the PortAudio library, ``configure``
fails with a message that names both installs (``pip install sounddevice`` and ``apt install libportaudio2``).

``header.stamp`` is the capture time of each chunk's first sample. It follows a sample clock (previous stamp plus
frames / rate) anchored on PortAudio's ADC time of the first block, mapped to ROS time; when the measured time
drifts more than ``resync_s`` from that clock (input overflow, clock drift) the clock is re-anchored, which the
speech node sees, and counts, as a gap or overlap.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Optional

import numpy as np
from axcl_msgs.msg import AudioChunk

from ..io.audio_format import FORMAT_F32LE, FORMAT_S16LE
from ..io.stamps import seconds_to_stamp
from .common import AxclLifecycleNode
from .parameters import ParamSpec
from .process import run_main
from .qos import QOS_CHOICES, make_qos
from .wav_publisher import encode_frames

FORMATS = {"S16LE": FORMAT_S16LE, "F32LE": FORMAT_F32LE}
INSTALL_HINT = ("microphone capture needs the 'sounddevice' Python package and the PortAudio library: "
                "pip install sounddevice && sudo apt install libportaudio2")


class CaptureUnavailableError(RuntimeError):
    """sounddevice or PortAudio is missing (the message says how to install them)."""


def import_sounddevice():
    """Import ``sounddevice``; raise :class:`CaptureUnavailableError` naming the installs when it is unusable."""
    try:
        import sounddevice
    except ImportError as exc:
        raise CaptureUnavailableError(f"{INSTALL_HINT} (import failed: {exc})") from exc
    except OSError as exc:  # the package is there but libportaudio is not
        raise CaptureUnavailableError(f"{INSTALL_HINT} (PortAudio library not found: {exc})") from exc
    return sounddevice


class AudioCaptureNode(AxclLifecycleNode):
    """Publishes microphone audio in ``chunk_ms`` chunks while active."""

    PARAMS = (
        ParamSpec("device", "", "Input device: '' = default, an index, or a name (substring) as sounddevice "
                                "lists them (python -m sounddevice)."),
        ParamSpec("sample_rate", 16000, "Capture rate in Hz (16000 avoids resampling in the speech node).",
                  min=8000, max=192000),
        ParamSpec("channels", 1, "Captured channels (the speech node averages them).", min=1, max=32),
        ParamSpec("chunk_ms", 100, "Chunk length in milliseconds.", min=10, max=1000),
        ParamSpec("sample_format", "S16LE", "Published encoding.", choices=tuple(FORMATS)),
        ParamSpec("topic", "audio", "Output topic."),
        ParamSpec("frame_id", "microphone", "header.frame_id."),
        ParamSpec("qos", "reliable", "Output QoS.", choices=QOS_CHOICES),
        ParamSpec("resync_s", 0.05, "Re-anchor the sample clock when the measured capture time differs more.",
                  min=0.001, max=10.0),
    )

    def __init__(self, node_name: str = "audio_capture", **kwargs) -> None:
        self.sd = None
        self.stream = None
        self.publisher = None
        self._queue: queue.Queue[Optional[tuple]] = queue.Queue(maxsize=200)
        self._thread: Optional[threading.Thread] = None
        self._anchor_s: Optional[float] = None
        self._frames = 0
        super().__init__(node_name, **kwargs)

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def configure(self) -> None:
        self.sd = import_sounddevice()
        device = self._device()
        try:
            self.sd.check_input_settings(device=device, channels=int(self.param("channels")),
                                         samplerate=float(self.param("sample_rate")), dtype="float32")
        except Exception as exc:  # noqa: BLE001 - PortAudio reports its own error types
            raise CaptureUnavailableError(f"input device {self.param('device')!r} cannot capture "
                                          f"{self.param('channels')} ch at {self.param('sample_rate')} Hz: {exc}") \
                from exc
        self.publisher = self.create_lifecycle_publisher(AudioChunk, self.param("topic"),
                                                         make_qos(self.param("qos"), depth=100))

    def activate(self) -> None:
        rate, channels = int(self.param("sample_rate")), int(self.param("channels"))
        block = max(1, rate * int(self.param("chunk_ms")) // 1000)
        self._anchor_s, self._frames = None, 0
        self._thread = threading.Thread(target=self._publish_loop, name="audio-capture-publish", daemon=True)
        self._thread.start()
        self.stream = self.sd.InputStream(device=self._device(), channels=channels, samplerate=rate,
                                          blocksize=block, dtype="float32", callback=self._on_block)
        self.stream.start()
        self.get_logger().info(f"capturing {channels} ch at {rate} Hz from {self.param('device') or 'default'} "
                               f"in {block}-frame chunks")

    def deactivate(self) -> None:
        if self.stream is not None:
            try:
                self.stream.stop()
                self.stream.close()
            finally:
                self.stream = None
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def cleanup(self) -> None:
        self.deactivate()
        if self.publisher is not None:
            self.destroy_lifecycle_publisher(self.publisher)
            self.publisher = None
        self.sd = None

    def _device(self) -> Any:
        device = str(self.param("device")).strip()
        if not device:
            return None
        return int(device) if device.isdigit() else device

    # -- capture -------------------------------------------------------------------------------------------------
    def _on_block(self, indata, frames: int, time_info, status) -> None:
        """PortAudio thread: timestamp and hand the block to the publishing thread (never blocks)."""
        now_ros = self.get_clock().now().nanoseconds * 1e-9
        if status:
            self.counters["capture_status_flags"] += 1
            if getattr(status, "input_overflow", False):
                self.counters["input_overflows"] += 1
        try:
            adc, current = float(time_info.inputBufferAdcTime), float(time_info.currentTime)
        except (AttributeError, TypeError, ValueError):
            adc = current = 0.0
        rate = float(self.param("sample_rate"))
        measured = now_ros - (current - adc) if adc > 0 and current > 0 else now_ros - frames / rate
        try:
            self._queue.put_nowait((np.array(indata, dtype=np.float32, copy=True), measured))
        except queue.Full:
            self.counters["blocks_dropped"] += 1

    def _publish_loop(self) -> None:
        fmt = FORMATS[self.param("sample_format")]
        rate = int(self.param("sample_rate"))
        resync = float(self.param("resync_s"))
        frame_id = self.param("frame_id")
        while True:
            item = self._queue.get()
            if item is None:
                return
            block, measured = item
            stamp = None if self._anchor_s is None else self._anchor_s + self._frames / rate
            if stamp is None or abs(measured - stamp) > resync:
                if stamp is not None:
                    self.counters["clock_resyncs"] += 1
                self._anchor_s, self._frames = measured, 0
                stamp = measured
            self._frames += block.shape[0]
            msg = AudioChunk(sample_rate=rate, channels=block.shape[1], sample_format=fmt)
            msg.data = encode_frames(block, fmt)
            seconds_to_stamp(stamp, msg.header.stamp)
            msg.header.frame_id = frame_id
            if self.publisher is not None:
                self.publisher.publish(msg)
                self.counters["chunks_published"] += 1

    def diagnostic_values(self) -> dict:
        return {"device": self.param("device") or "default", "sample_rate": self.param("sample_rate"),
                "channels": self.param("channels"), "capturing": self.stream is not None,
                "queue": self._queue.qsize()}


def main(args=None) -> int:
    """Run the capture node alone (``ros2 run axcl_ros audio_capture``)."""
    return run_main(AudioCaptureNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
