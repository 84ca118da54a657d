"""The detector on the CPU through ROS, quiet and with one core kept busy, against a plain baseline in the same run.

Three processes per run, as on a robot: the camera (``bench_camera.py``: publishes a 640×480 bgr8 frame at 10 or
30 Hz, reliable keep-last input, stamps it just before publishing, and receives the detections), the node under test
(``bench_ros_node.py``: our ``DetectorNode`` or the plain baseline node — a minimal rclpy node with onnxruntime's
default session and straightforward numpy pre/post), and, for the busy rows, a process spinning on one core.
Model: NudeNet's YOLOv8n (``320n.onnx``, real weights from PyPI) at 640×640 unless ``--model`` names another ONNX.
0 boxes: a grey frame at confidence 0.25. ~300 boxes: the astronaut photo at confidence 1e-4 (``--conf300``), IoU 0.7,
at most 300 detections (both nodes output 300). Ours and the baseline alternate within each scenario.

Figures per run: out Hz (detections received ÷ seconds), dropped (1 − received ÷ sent), latency p50/p90/p99
(receive time − input stamp), CPU % of one core and CPU ms per processed frame (utime + stime of the node's process
tree over the counted period, from ``/proc``), threads and resident memory of the process tree at the end. Each run
starts with ``--warmup`` seconds of uncounted frames (model warm-up, lazy initialisation). Every row is an impl beside
the reference (default: ours beside the plain baseline) with the ratio impl ÷ reference; with ``--rounds N`` the impls
alternate N times per scenario (order rotating), the rows give medians and the range of the per-round ratios.

    python bench/bench_ros_detector.py                      # all 8 scenarios, 8 s each
    python bench/bench_ros_detector.py --seconds 4 --load busy --fps 10 --boxes 0
    python bench/bench_ros_detector.py --impls ours ours:single ours:4 --reference ours --boxes 300   # rclpy executor
    python bench/bench_ros_detector.py --impls baseline ours ours_square     # rectangular vs square input

**Another node beside ours** (off by default; ``make bench`` and CI never run it): ``--external CMD`` starts
``CMD`` per run — a command template whose ``{ns}`` (the namespace: the node must subscribe ``{ns}/image_raw`` with
reliable-compatible QoS and publish ``{ns}/detections``), ``{model}`` (``--external-model``), ``{conf}``, ``{iou}``,
``{max_det}`` and ``{size}`` are filled in — and ``--impls ... external`` runs it interleaved with ours. Its output
type is ``--external-type`` (default ``yolo_msgs/msg/DetectionArray``: source the workspace that provides it before
running the bench); it counts as ready once it subscribes (up to 180 s). For example, with a yolo_ros install
(its ``yolo_node`` takes the model, device and thresholds as parameters) and the same network as ``.pt`` and ONNX::

    python bench/bench_ros_detector.py --impls ours external --reference external --rounds 3 \
      --model yolo11n.onnx --external-model yolo11n.pt --conf300 1e-5 \
      --external "ros2 run yolo_ros yolo_node --ros-args -r __ns:={ns} -p model:={model} -p device:=cpu \
                  -p threshold:={conf} -p iou:={iou} -p max_det:={max_det} -p image_reliability:=1"

``--conf300`` is the confidence that gives ~300 boxes with the chosen model (1e-4 for the default NudeNet model,
1e-5 for a random-weight yolo11n); the rows' notes give the median detections per output of both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from bench_common import Row, percentiles, ratio, ros_available

HERE = Path(__file__).resolve().parent
TOPIC = "ros detector"
_TICK = os.sysconf("SC_CLK_TCK")


def _children() -> Dict[int, List[int]]:
    kids: Dict[int, List[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _tree(pid: int) -> List[int]:
    """``pid`` and its descendants (an external node started through ``ros2 run`` or a wrapper script)."""
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def _proc_cpu_s(pids: List[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15 of stat)
    return total


def _proc_status(pids: List[int]) -> Dict[str, float]:
    out = {"threads": 0.0, "rss_mib": 0.0}
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(":")
            if key == "Threads":
                out["threads"] += float(value.split()[0])
            elif key == "VmRSS":
                out["rss_mib"] += float(value.split()[0]) / 1024.0
    return out


def _frames(folder: Path) -> Dict[str, str]:
    import cv2

    from axcl_ros_testing.sample_inputs import skimage_image

    grey = np.full((480, 640, 3), 96, np.uint8)
    photo = grey.copy()
    rgb = skimage_image("astronaut")
    photo[:, 80:560] = cv2.resize(np.ascontiguousarray(rgb[:, :, ::-1]), (480, 480))
    paths = {}
    for name, img in (("grey", grey), ("photo", photo)):
        paths[name] = str(folder / f"{name}.npy")
        np.save(paths[name], img)
    return paths


#: boxes scenario → (frame, confidence, IoU); the 300-box confidence depends on the model (``--conf300``)
BOXES = {0: ("grey", 0.25, 0.45), 300: ("photo", 1e-4, 0.7)}

#: --impls names → what ``bench_ros_node.py`` runs (``ours:<executor>`` runs our node on another rclpy executor)
LABELS = {"baseline": "plain node", "ours": "ours", "ours_square": "ours, square input", "external": "external node"}
#: impls that are our node with other parameters
OUR_VARIANTS = {"ours_square": ["rect_input=false"]}


@dataclass
class External:
    """A node that is not ours, started per run from a command template (see the module doc)."""

    command: str
    model: str
    output_type: str = "yolo_msgs/msg/DetectionArray"
    name: str = "external node"
    wait: float = 180.0


def label(impl: str, external: Optional[External] = None) -> str:
    """How ``impl`` is called in the rows."""
    if impl == "external" and external is not None:
        return external.name
    if impl.startswith("ours:"):
        return f"ours, rclpy executor {impl[5:]}"
    return LABELS[impl]


def _node_command(impl: str, model: str, ns: str, conf: float, iou: float,
                  external: Optional[External]) -> List[str]:
    if impl == "external":
        if external is None:
            raise ValueError("impl 'external' needs --external")
        return shlex.split(external.command.format(ns=ns, model=external.model, conf=conf, iou=iou, max_det=300,
                                                   size=640))
    kind, _, executor = impl.partition(":")
    params = OUR_VARIANTS.get(kind, [])
    cmd = [sys.executable, str(HERE / "bench_ros_node.py"), "--impl", "ours" if params else kind, "--model", model,
           "--topic", f"{ns}/image_raw", "--conf", str(conf), "--iou", str(iou), "--max-det", "300"]
    return cmd + (["--executor", executor] if executor else []) + [f"--param={p}" for p in params]


def run_one(impl: str, model: str, fps: float, seconds: float, boxes: int, frames: Dict[str, str],
            index: int, conf300: float = 1e-4, external: Optional[External] = None, warmup: float = 2.0,
            logdir: Optional[Path] = None) -> dict:
    """One run: start the node process, stream (``warmup`` s uncounted, then ``seconds``), measure; returns the
    figures. CPU is the node's process tree's utime + stime over the counted period (sampled every 10 ms)."""
    from bench_harness import run_cameras

    frame, conf, iou = BOXES[boxes]
    conf = conf300 if boxes == 300 else conf
    ns = f"/bench{index}_{impl.replace(':', '_')}"
    topic = f"{ns}/image_raw"
    log = open((logdir or Path(tempfile.gettempdir())) / f"node{index}_{impl.replace(':', '_')}.log", "w")
    ours = impl != "external"
    node = subprocess.Popen(_node_command(impl, model, ns, conf, iou, external),
                            stdout=subprocess.PIPE if ours else log, stderr=log, text=True, env=dict(os.environ))
    load = os.getloadavg()[0]
    try:
        if ours and node.stdout.readline().strip() != "ready":
            node.wait(timeout=15)
            log.flush()
            raise RuntimeError(f"{impl} node did not start: {Path(log.name).read_text()[-800:]}")
        samples: List[tuple] = []
        tree = {"pids": [node.pid], "at": 0.0}

        def sampler():
            now = time.monotonic()
            if now - tree["at"] > 1.0:
                tree["pids"], tree["at"] = _tree(node.pid), now
            samples.append((time.time(), _proc_cpu_s(tree["pids"])))

        report = run_cameras([topic], fps, seconds, sampler=sampler, qos="reliable", image=frames[frame],
                             output_type=external.output_type if not ours else "", warmup=warmup,
                             wait=external.wait if not ours else 30.0)
        status = _proc_status(_tree(node.pid))
        if node.poll() is not None:
            raise RuntimeError(f"{impl} node exited ({node.returncode}): {Path(log.name).read_text()[-800:]}")
    finally:
        for pid in reversed(_tree(node.pid)) if node.poll() is None else ():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            node.wait(timeout=15)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
        log.close()
    outs = report["outputs"][topic]
    sent = report["sent"][topic]
    lat = [o[1] * 1e3 for o in outs]
    pct = percentiles(lat) if lat else {"p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
    t0, t1 = report["start"], report["start"] + seconds
    inside = [c for t, c in samples if t0 <= t <= t1]
    cpu_s = inside[-1] - inside[0] if len(inside) > 1 else float("nan")
    return {"impl": impl, "out_hz": len(outs) / seconds, "drop_pct": 100.0 * (1.0 - len(outs) / max(sent, 1)),
            "p50_ms": pct["p50"], "p90_ms": pct["p90"], "p99_ms": pct["p99"],
            "cpu_pct": 100.0 * cpu_s / seconds, "cpu_ms_per_frame": 1e3 * cpu_s / max(len(outs), 1),
            "threads": status.get("threads"), "rss_mib": status.get("rss_mib"), "sent": sent,
            "received": len(outs), "load1": load, "boxes": _median(o[5] for o in outs)}


def _busy() -> subprocess.Popen:
    """A process that keeps one core busy (the robot's other software)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


METRICS = (("out_hz", "out Hz", "Hz"), ("drop_pct", "dropped", "%"), ("p50_ms", "latency p50", "ms"),
           ("p90_ms", "latency p90", "ms"), ("p99_ms", "latency p99", "ms"), ("cpu_pct", "CPU", "% of a core"),
           ("cpu_ms_per_frame", "CPU per processed frame", "ms"), ("threads", "threads", ""),
           ("rss_mib", "resident memory", "MiB"))


def _median(values) -> float:
    vals = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.median(vals)) if vals else float("nan")


def scenario_rows(what: str, runs: Dict[str, List[dict]], reference: str, seconds: float,
                  external: Optional[External] = None) -> List[Row]:
    """Rows of one scenario: every impl but ``reference`` beside it (medians over the rounds, ratio of medians;
    with several rounds the note gives the range of the per-round ratios)."""
    rows = []
    base_runs = runs[reference]
    for impl, mine in runs.items():
        if impl == reference:
            continue
        suffix = "" if impl == "ours" else f" [{label(impl, external)}]"
        for key, name, unit in METRICS:
            value, base = _median(r[key] for r in mine), _median(r[key] for r in base_runs)
            notes = []
            if key == "out_hz":
                notes.append(" + ".join(f"{r['received']}/{r['sent']}" for r in mine) + " vs " +
                             " + ".join(f"{r['received']}/{r['sent']}" for r in base_runs) +
                             f" frames, {seconds:g} s per run, boxes {_median(r['boxes'] for r in mine):g} vs "
                             f"{_median(r['boxes'] for r in base_runs):g}, load1 " +
                             ", ".join(f"{r['load1']:.1f}" for r in mine + base_runs))
            if len(mine) > 1:
                per_round = [ratio(a[key], b[key]) for a, b in zip(mine, base_runs)]
                per_round = [x for x in per_round if x is not None and not np.isnan(x)]
                if per_round:
                    notes.append(f"per-round ratio {min(per_round):.2f}–{max(per_round):.2f}")
            rows.append(Row(TOPIC, f"{what}: {name}{suffix}", value, unit, base, label(reference, external),
                            ratio(value, base), note="; ".join(notes)))
    return rows


def run(quick: bool = False, seconds: Optional[float] = None, loads=("quiet", "busy"), rates=(10.0, 30.0),
        box_counts=(0, 300), impls=("baseline", "ours"), reference: str = "baseline", model: str = "",
        conf300: float = 1e-4, external: Optional[External] = None, rounds: int = 1, warmup: float = 2.0,
        raw: Optional[List[dict]] = None, logdir: Optional[Path] = None) -> List[Row]:
    """Measure and return the rows of this topic (``quick``: 4 s per run instead of 8).

    ``impls`` run alternately (the order rotates every round), ``rounds`` times per scenario; every other impl is
    reported beside ``reference``. ``raw``, when given, receives every run's figures."""
    reason = ros_available()
    if reason:
        return [Row(TOPIC, "all", None, note=f"skipped: {reason}")]
    from axcl_ros import assets

    seconds = seconds or (4.0 if quick else 8.0)
    model = model or str(assets.nudenet_yolov8n_onnx())
    if reference not in impls:
        raise ValueError(f"reference {reference!r} is not among {impls}")
    rows: List[Row] = []
    index = 0
    with tempfile.TemporaryDirectory() as tmp:
        frames = _frames(Path(tmp))
        for load in loads:
            busy = _busy() if load == "busy" else None
            try:
                for fps in rates:
                    for boxes in box_counts:
                        runs: Dict[str, List[dict]] = {impl: [] for impl in impls}
                        what = f"{load}, {fps:g} Hz, {boxes} boxes"
                        for _ in range(rounds):
                            shift = index % len(impls)
                            for impl in impls[shift:] + impls[:shift]:
                                res = run_one(impl, model, fps, seconds, boxes, frames, index, conf300, external,
                                              warmup, logdir or Path(tmp))
                                runs[impl].append(res)
                                if raw is not None:
                                    raw.append(dict(res, scenario=what))
                                index += 1
                        rows += scenario_rows(what, runs, reference, seconds, external)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=8.0, help="counted seconds per run")
    p.add_argument("--warmup", type=float, default=2.0, help="uncounted seconds of frames before each run")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds per scenario")
    p.add_argument("--load", nargs="+", choices=("quiet", "busy"), default=["quiet", "busy"])
    p.add_argument("--fps", nargs="+", type=float, default=[10.0, 30.0])
    p.add_argument("--boxes", nargs="+", type=int, choices=sorted(BOXES), default=sorted(BOXES))
    p.add_argument("--impls", nargs="+", default=["baseline", "ours"],
                   help="baseline, ours, ours_square (rect_input false), ours:single, ours:multi, ours:<threads>, "
                        "external")
    p.add_argument("--reference", default="baseline", help="the impl every other one is compared with")
    p.add_argument("--model", default="", help="ONNX model of our and the plain node (default: NudeNet YOLOv8n)")
    p.add_argument("--conf300", type=float, default=1e-4, help="confidence threshold of the ~300-box rows")
    p.add_argument("--external", default="", help="command template of an external node (see the module doc)")
    p.add_argument("--external-model", default="", help="{model} of the external command (default: --model)")
    p.add_argument("--external-type", default="yolo_msgs/msg/DetectionArray", help="its output message type")
    p.add_argument("--external-name", default="yolo_ros", help="its name in the rows")
    p.add_argument("--json", default="", help="write the rows and every run's figures here")
    p.add_argument("--md", default="", help="write the rows as a results table (bench/results format) here")
    p.add_argument("--logs", default="", help="keep the node processes' logs in this folder")
    args = p.parse_args(argv)
    external = None
    if args.external:
        external = External(args.external, args.external_model or args.model, args.external_type, args.external_name)
    elif "external" in args.impls:
        p.error("--impls external needs --external")
    raw: List[dict] = []
    logdir = Path(args.logs) if args.logs else None
    if logdir:
        logdir.mkdir(parents=True, exist_ok=True)
    rows = run(seconds=args.seconds, loads=args.load, rates=args.fps, box_counts=args.boxes, impls=list(args.impls),
               reference=args.reference, model=args.model, conf300=args.conf300, external=external,
               rounds=args.rounds, warmup=args.warmup, raw=raw, logdir=logdir)
    for r in rows:
        base = "-" if r.baseline is None else f"{r.baseline:.4g}"
        val = "-" if r.value is None else f"{r.value:.4g}"
        rat = "-" if r.ratio is None else f"{r.ratio:.3f}"
        print(f"{r.metric:70s} {val:>9s}  vs {base:>9s}  ratio {rat:>6s}  {r.unit} {r.note}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": [r.as_dict() for r in rows], "runs": raw}, indent=1))
    if args.md:
        Path(args.md).write_text(results_markdown(rows, sys.argv if argv is None else ["bench_ros_detector.py"] + argv))
    return 0


def results_markdown(rows: List[Row], argv: List[str]) -> str:
    """``rows`` as a ``bench/results`` table (``run_all``'s format) headed by the command that measured them."""
    from bench_common import machine_info
    from run_all import markdown

    command = shlex.join(["python", "bench/" + Path(argv[0]).name] + list(argv[1:]))
    return markdown(machine_info(), rows, quick=False).replace("\n\nMethod:", f"\n- command: `{command}`\n\nMethod:", 1)


if __name__ == "__main__":
    sys.exit(main())
