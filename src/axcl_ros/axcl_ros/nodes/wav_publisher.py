"""``wav_publisher``: play a WAV (or headerless S16) file onto an ``axcl_msgs/AudioChunk`` topic, for demos and tests.

The file is published at its own sample rate and channel count (the speech node resamples), in chunks of
``chunk_ms``, paced at ``rate`` × real time. ``header.stamp`` is the capture time of each chunk's first sample on
the file's timeline: the first chunk gets the ROS time at which playback starts, and every later chunk that stamp plus
its sample offset / sample rate. So stamps stay exactly continuous (no gaps or overlaps), also with ``rate > 1``
(where they run ahead of the wall clock) and with ``loop`` (the timeline goes on across repetitions).

Parameters: ``wav_path``, ``topic`` (``audio``), ``chunk_ms``, ``rate``, ``loop``, ``sample_format`` (S16LE/F32LE),
``frame_id``, ``raw_sample_rate`` (for headerless files), ``start_delay_s``, ``wait_for_subscribers`` (default 1:
start when that many subscriptions are matched, or after ``wait_timeout_s``, and say so in the log; 0 = start at once,
losing whatever is published before discovery completes), ``autostart``, ``exit_when_done`` (``main()`` ends
the process after the last chunk; otherwise the node stays up and quiet), ``qos`` (reliable/sensor_data).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Optional

import numpy as np
from axcl_msgs.msg import AudioChunk
from rclpy.node import Node

from ..io.audio_format import FORMAT_F32LE, FORMAT_S16LE
from ..io.stamps import NS_PER_S, nanoseconds_to_stamp
from ..io.wav import read_audio
from .callback_guard import CallbackGuard
from .parameters import ParamSpec
from .qos import make_qos

FORMATS = {"S16LE": FORMAT_S16LE, "F32LE": FORMAT_F32LE}


def encode_frames(frames: np.ndarray, sample_format: int) -> bytes:
    """Interleaved little-endian bytes of float ``[frames, channels]`` samples in [-1, 1]."""
    x = np.clip(np.asarray(frames, dtype=np.float32), -1.0, 1.0)
    if sample_format == FORMAT_S16LE:
        return np.clip(np.rint(x * 32768.0), -32768, 32767).astype("<i2").tobytes()
    if sample_format == FORMAT_F32LE:
        return x.astype("<f4").tobytes()
    raise ValueError(f"sample_format={sample_format!r}: expected {FORMAT_S16LE} (S16LE) or {FORMAT_F32LE} (F32LE)")


class WavPublisherNode(CallbackGuard, Node):
    """Publishes one audio file as timed AudioChunk messages (see the module docstring).

    Attributes for tests and tools: ``done`` (event set after the last chunk of a non-looping playback),
    ``chunks_published``, ``frames_published``, ``start_stamp_s`` (stamp of the first sample, None before the start),
    ``sample_rate``, ``channels``, ``duration_s``.
    """

    #: a plain node (no lifecycle): every parameter is read at start
    PARAMS = (
        ParamSpec("wav_path", "", "WAV file (PCM 8/16/24/32, float 32/64) or headerless S16 raw file."),
        ParamSpec("topic", "audio", "AudioChunk output topic."),
        ParamSpec("chunk_ms", 100, "Chunk length in milliseconds.", min=5, max=2000),
        ParamSpec("rate", 1.0, "Playback speed: 1 = real time, 4 = four times faster.", min=0.01, max=1000.0),
        ParamSpec("loop", False, "Start again at the end (the stamps go on continuously)."),
        ParamSpec("sample_format", "S16LE", "Encoding of the published samples: S16LE or F32LE."),
        ParamSpec("frame_id", "microphone", "header.frame_id of the chunks."),
        ParamSpec("raw_sample_rate", 16000, "Sample rate of headerless (raw S16 mono) files.", min=1000, max=384000),
        ParamSpec("start_delay_s", 0.0, "Wait this long before the first chunk.", min=0.0, max=3600.0),
        ParamSpec("wait_for_subscribers", 1, "Start once this many subscriptions are matched (0 = do not wait: chunks "
                  "published before discovery completes are lost).", min=0, max=1000),
        ParamSpec("wait_timeout_s", 10.0, "Start anyway after waiting this long for subscribers.", min=0.0, max=3600.0),
        ParamSpec("autostart", True, "Start playing on its own (else call start())."),
        ParamSpec("exit_when_done", False, "main(): exit the process after the last chunk."),
        ParamSpec("qos", "reliable", "Output QoS: reliable or sensor_data."),
    )

    def __init__(self, node_name: str = "wav_publisher", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.start_callback_guard()
        for spec in self.PARAMS:
            self.declare_parameter(spec.name, spec.default, spec.descriptor("start"))

        def get(name):
            return self.get_parameter(name).value

        fmt = str(get("sample_format")).upper()
        if fmt not in FORMATS:
            raise ValueError(f"sample_format={fmt!r}: choose one of {sorted(FORMATS)}")
        if not get("wav_path"):
            raise ValueError("parameter wav_path is empty: set it to a WAV file")
        audio = read_audio(get("wav_path"), int(get("raw_sample_rate")))
        if audio.samples.shape[0] == 0:
            raise ValueError(f"{get('wav_path')}: the file holds no samples")
        self.samples = audio.samples
        self.sample_rate = int(audio.sample_rate)
        self.channels = int(audio.channels)
        self.duration_s = audio.duration_s
        self.sample_format = FORMATS[fmt]
        self.frame_id = str(get("frame_id"))
        self.loop = bool(get("loop"))
        self.rate = float(get("rate"))
        self.chunk_frames = max(1, int(round(self.sample_rate * int(get("chunk_ms")) / 1000.0)))
        self.exit_when_done = bool(get("exit_when_done"))
        self._wait_subs = int(get("wait_for_subscribers"))
        self._wait_timeout = float(get("wait_timeout_s"))
        self._delay = float(get("start_delay_s"))
        self.publisher = self.create_publisher(AudioChunk, str(get("topic")), make_qos(str(get("qos")), depth=100))
        self.done = threading.Event()
        self.chunks_published = 0
        self.frames_published = 0
        self.start_stamp_s: Optional[float] = None
        self._lock = threading.Lock()
        self._t_start: Optional[float] = None  # monotonic time of the first sample
        self._t_created = time.monotonic()
        self._waiting_logged = False
        self._start_requested = bool(get("autostart"))
        period = min(0.05, self.chunk_frames / self.sample_rate / self.rate / 2.0)
        self._timer = self.create_timer(max(period, 0.002), self._tick)
        self.get_logger().info(f"{get('wav_path')}: {self.duration_s:.2f} s, {self.sample_rate} Hz, "
                               f"{self.channels} ch -> {get('topic')} in {self.chunk_frames}-frame chunks at "
                               f"{self.rate:g}x{' (looping)' if self.loop else ''}")

    def start(self) -> None:
        """Start playback now (with ``autostart: false``), still honouring ``start_delay_s``."""
        with self._lock:
            self._start_requested = True
            self._t_created = time.monotonic()

    def stop(self) -> None:
        """Stop playback for good: no chunk is published after this returns (``done`` is set)."""
        with self._lock:
            self.done.set()

    def _ready(self, now: float) -> bool:
        if not self._start_requested or now - self._t_created < self._delay:
            return False
        if self._wait_subs and self.publisher.get_subscription_count() < self._wait_subs:
            if now - self._t_created - self._delay < self._wait_timeout:
                if not self._waiting_logged:
                    self._waiting_logged = True
                    self.get_logger().info(f"waiting for {self._wait_subs} subscriber(s) on "
                                           f"{self.publisher.topic_name} (up to {self._wait_timeout:g} s; "
                                           "wait_for_subscribers:=0 starts at once)")
                return False
            self.get_logger().warning(f"only {self.publisher.get_subscription_count()} of {self._wait_subs} "
                                      f"subscribers after {self._wait_timeout:g} s; starting anyway")
        return True

    def _tick(self) -> None:
        with self._lock:
            if self.done.is_set():
                self._timer.cancel()  # from inside its own callback: never races the executor
                return
            now = time.monotonic()
            if self._t_start is None:
                if not self._ready(now):
                    return
                self._t_start = now
                self._start_ns = self.get_clock().now().nanoseconds
                self.start_stamp_s = self._start_ns * 1e-9
            # chunks whose first sample is due by now, at `rate` x real time
            due_frames = (now - self._t_start) * self.rate * self.sample_rate
            while self.frames_published <= due_frames and not self.done.is_set():
                self._publish_next()

    def _publish_next(self) -> None:
        total = self.samples.shape[0]
        start = self.frames_published
        if self.loop:
            idx = np.arange(start, start + self.chunk_frames) % total
            frames = self.samples[idx]
        else:
            frames = self.samples[start:start + self.chunk_frames]
        msg = AudioChunk(sample_rate=self.sample_rate, channels=self.channels, sample_format=self.sample_format)
        msg.data = encode_frames(frames, self.sample_format)
        nanoseconds_to_stamp(self._start_ns + start * NS_PER_S // self.sample_rate, msg.header.stamp)
        msg.header.frame_id = self.frame_id
        self.publisher.publish(msg)
        self.chunks_published += 1
        self.frames_published += frames.shape[0]
        if not self.loop and self.frames_published >= total:
            self.done.set()
            self.get_logger().info(f"played {self.frames_published / self.sample_rate:.2f} s in "
                                   f"{self.chunks_published} chunks")


def main(args=None) -> int:
    """Run the publisher (``ros2 run axcl_ros wav_publisher --ros-args -p wav_path:=file.wav``); with
    ``exit_when_done`` the process exits after the last chunk. Returns the exit code."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from .executable_help import help_requested, node_help
    from .process import finish_process, run_until_signal, start_process

    argv = list(sys.argv if args is None else args)
    if help_requested(argv):
        print(node_help(WavPublisherNode, lifecycle=False))
        return 0
    stop, profile = start_process(argv, device_work=False)
    try:
        node = WavPublisherNode()
        node.get_logger().info(profile)
    except (ValueError, OSError) as exc:
        print(f"wav_publisher: {exc}", flush=True)
        rclpy.shutdown()
        return 2

    def stop_when_done() -> None:
        node.done.wait()
        time.sleep(0.5)  # let reliable subscribers fetch the last chunks before the writer goes away
        stop.set()

    if node.exit_when_done:
        threading.Thread(target=stop_when_done, name="wav-publisher-done", daemon=True).start()
    ros_executor = SingleThreadedExecutor()
    ros_executor.add_node(node)
    error = run_until_signal(ros_executor, stop, node.get_logger())
    finish_process(ros_executor, [node])
    return 1 if error is not None else 0


if __name__ == "__main__":
    sys.exit(main())
