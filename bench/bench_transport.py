"""Transport: camera frames and audio chunks from another process, Fast DDS defaults vs the shipped profile.

A camera driver stand-in (``axcl_ros_testing.camera_publisher``) publishes ``bgr8`` frames at 30 fps from its own
process, best effort or reliable; a subscriber in a third process counts what arrives and the latency from
``header.stamp`` (send time) to the callback. Rows per size / publisher QoS: Fast DDS defaults, the shipped profile
(``config/fastdds_camera.xml``) on both sides, on the subscriber only and on the publisher only. The subscriber is a
bare rclpy echo node (the floor); one row runs ours (``CameraInputs``, ``input_qos: auto``) instead. Audio: 16 kHz
``wav_publisher`` (reliable, the default) into an ``auto`` input while the 640x480
camera streams, with defaults and with the profile. The 640x480 best-effort rows are repeated with one core kept
busy by a spinning process. Ratios are against the defaults row of the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

from bench_common import Row, ratio

from axcl_ros.io.stamps import stamp_to_nanoseconds, stamp_to_seconds
from axcl_ros.transport_profile import APPLIED_MARK, PROFILE_VARS, apply_transport_profile

SIZES = {"640x480": (640, 480), "1920x1080": (1920, 1080)}
PROFILES = ("defaults", "profile both sides", "profile subscriber only", "profile publisher only")


def _env(profile: bool) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (*PROFILE_VARS, APPLIED_MARK)}
    if profile:
        apply_transport_profile(env)
    return env


def _subscriber(args) -> None:
    """Child mode: subscribe, count, time; write JSON to ``args.out``."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_transport_sub")
    lat: List[float] = []
    audio: List[float] = []
    result: Dict[str, object] = {}

    def on_image(msg) -> None:
        lat.append((node.get_clock().now().nanoseconds - stamp_to_nanoseconds(msg.header.stamp))
                   / 1e6)

    cams = None
    if args.ours:
        from axcl_ros.nodes.camera_input import CameraInputs

        cams = CameraInputs(node, [args.topic], "raw", "auto", lambda s, m, t: on_image(m))
        cams.start()
    else:
        rel = ReliabilityPolicy.RELIABLE if args.qos == "reliable" else ReliabilityPolicy.BEST_EFFORT
        node.create_subscription(Image, args.topic, on_image, QoSProfile(depth=5, reliability=rel))
    audio_in = None
    if args.audio:
        from axcl_msgs.msg import AudioChunk

        from axcl_ros.nodes.transport_input import TransportInput

        audio_in = TransportInput(node, AudioChunk, "/bench_audio",
                                  lambda m: audio.append(stamp_to_seconds(m.header.stamp)),
                                  "auto", 1000)
        audio_in.start()
    seen = False
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
        n = node.count_publishers(args.topic)
        seen = seen or n > 0
        if seen and n == 0:
            break
    for _ in range(10):
        rclpy.spin_once(node, timeout_sec=0.05)
    result["received"] = len(lat)
    result["latency_ms"] = sorted(lat)
    if cams is not None:
        result["lost_event"] = cams.streams[0].lost_in_transport
    if audio_in is not None:
        steps = [b - a for a, b in zip(audio, audio[1:])]
        result["audio_chunks"] = len(audio)
        result["audio_gaps"] = sum(1 for s in steps if s > 0.1 * 1.5)
        result["audio_lost_event"] = audio_in.lost
    Path(args.out).write_text(json.dumps(result))
    node.destroy_node()
    rclpy.shutdown()


def _case(size: str, qos: str, profile: str, frames: int, *, ours: bool = False,
          audio_s: float = 0.0, busy: bool = False) -> Optional[dict]:
    w, h = SIZES[size]
    sub_profile = profile in ("profile both sides", "profile subscriber only")
    pub_profile = profile in ("profile both sides", "profile publisher only")
    topic = f"/bench_transport/cam_{size}/image_raw"
    here = Path(__file__).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sub.json"
        sub_argv = [sys.executable, str(here), "--sub", "--topic", topic, "--qos", qos, "--out", str(out),
                    "--timeout", str(60 + frames / 30 + audio_s)]
        if ours:
            sub_argv.append("--ours")
        if audio_s:
            sub_argv.append("--audio")
        spinner = (subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None)
        sub = subprocess.Popen(sub_argv, env=_env(sub_profile), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs = [subprocess.Popen([sys.executable, "-m", "axcl_ros_testing.camera_publisher", "--topic", topic,
                                   "--frames", str(frames), "--fps", "30", "--width", str(w), "--height", str(h),
                                   "--qos", qos], env=_env(pub_profile), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)]
        if audio_s:
            wav = Path(tmp) / "tone.wav"
            _write_tone(wav, audio_s)
            procs.append(subprocess.Popen([sys.executable, "-m", "axcl_ros.nodes.wav_publisher", "--ros-args",
                                           "-p", f"wav_path:={wav}", "-p", "topic:=/bench_audio", "-p",
                                           "exit_when_done:=true"], env=_env(pub_profile),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            for p in procs:
                p.wait(timeout=90 + frames / 30 + audio_s)
            sub.wait(timeout=30)
        except subprocess.TimeoutExpired:
            for p in [*procs, sub]:
                p.kill()
            return None
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
        return json.loads(out.read_text()) if out.is_file() else None


def _write_tone(path: Path, seconds: float) -> None:
    import wave

    import numpy as np

    sr = 16000
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((3000 * np.sin(np.arange(int(sr * seconds)) * 2 * np.pi * 440 / sr)).astype("<i2").tobytes())


def _median(values) -> Optional[float]:
    return float(values[len(values) // 2]) if values else None


def run(quick: bool = False) -> List[Row]:
    """The transport rows (see the module docstring)."""
    frames = 30 if quick else 150
    rows: List[Row] = []
    for size in SIZES:
        for qos in ("best_effort", "reliable"):
            base: Optional[dict] = None
            for profile in PROFILES:
                r = _case(size, qos, profile, frames)
                if r is None:
                    rows.append(Row("transport", f"{size} bgr8 {qos} pub, {profile}", None, note="failed: no result"))
                    continue
                base = base or (r if profile == "defaults" else None)
                delivered = 100.0 * r["received"] / frames
                med = _median(r["latency_ms"])
                bd = 100.0 * base["received"] / frames if base else None
                rows.append(Row("transport", f"{size} bgr8 {qos} pub, {profile}: delivered", delivered, "%", bd,
                                "defaults", ratio(delivered, bd),
                                f"{r['received']}/{frames} frames at 30 fps; bare echo subscriber; median latency "
                                f"{med if med is None else round(med, 2)} ms"))
                if med is not None and base and base["latency_ms"]:
                    bm = _median(base["latency_ms"])
                    rows.append(Row("transport", f"{size} bgr8 {qos} pub, {profile}: median latency", med, "ms", bm,
                                    "defaults", ratio(med, bm), "stamp (send) -> subscriber callback"))
    floor = _case("640x480", "best_effort", "profile both sides", frames)
    ours = _case("640x480", "best_effort", "profile both sides", frames, ours=True)
    if floor and ours:
        fm, om = _median(floor["latency_ms"]), _median(ours["latency_ms"])
        rows.append(Row("transport", "640x480 best_effort, profile both sides: axcl_ros CameraInputs (auto) delivered",
                        100.0 * ours["received"] / frames, "%", 100.0 * floor["received"] / frames, "bare echo",
                        ratio(ours["received"], floor["received"]),
                        f"median latency ours {om:.2f} ms vs echo {fm:.2f} ms; lost events {ours.get('lost_event')}"))
    busy_base = None
    for profile in ("defaults", "profile both sides"):  # one core kept busy by a spinning process
        r = _case("640x480", "best_effort", profile, frames, busy=True)
        if r is None:
            rows.append(Row("transport", f"640x480 best_effort, one core busy, {profile}", None, note="failed"))
            continue
        busy_base = busy_base or r
        d, bd = 100.0 * r["received"] / frames, 100.0 * busy_base["received"] / frames
        rows.append(Row("transport", f"640x480 bgr8 best_effort pub, one core busy, {profile}: delivered", d, "%", bd,
                        "defaults, busy", ratio(d, bd),
                        f"{r['received']}/{frames}; median latency {_median(r['latency_ms'])} ms; a spinning process "
                        "keeps one core busy"))
    audio_s = 3.0 if quick else 20.0
    cam_frames = int(audio_s * 30) + 60
    for profile in ("defaults", "profile both sides"):
        r = _case("640x480", "best_effort", profile, cam_frames, audio_s=audio_s)
        if r is None:
            rows.append(Row("transport", f"audio 16 kHz with 30 fps camera, {profile}", None, note="failed"))
            continue
        expected = int(audio_s * 10)
        rows.append(Row("transport", f"audio 16 kHz (wav_publisher, reliable) + 640x480 30 fps camera, {profile}: "
                        "audio gaps", r.get("audio_gaps", 0), "gaps", None, "", None,
                        f"{r.get('audio_chunks')}/{expected} chunks of 100 ms in {audio_s:g} s, lost events "
                        f"{r.get('audio_lost_event')}; camera {r['received']}/{cam_frames} frames (best effort)"))
    return rows


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--sub", action="store_true")
    ap.add_argument("--ours", action="store_true")
    ap.add_argument("--audio", action="store_true")
    ap.add_argument("--topic")
    ap.add_argument("--qos")
    ap.add_argument("--out")
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args()
    if a.sub:
        _subscriber(a)
    else:
        for row in run(quick=True):
            print(row)
