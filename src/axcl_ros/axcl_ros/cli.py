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
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, TextIO

from . import device_report as dr
from . import model_catalogue
from .models.llm import convert_cli as convert_llm
from .runtime.registry import backend_names

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
    smi.add_argument("--backend", choices=backend_names(), default="axcl",
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

    model_catalogue.add_parser(sub)
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
COMMANDS = {"smi": _cmd_smi, "doctor": _cmd_doctor, "convert-whisper": _cmd_convert,
            model_catalogue.COMMAND: model_catalogue.run, convert_llm.COMMAND: convert_llm.run}


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
