"""Run every benchmark and print one results table (markdown) with the machine, date and method.

Usage (``make bench`` runs the first form inside the project environment)::

    python bench/run_all.py                 # all topics, full length (~6 min on 2 cores)
    python bench/run_all.py --quick         # shorter runs, for a smoke test
    python bench/run_all.py --only overload multicam
    python bench/run_all.py --only rosdetector hostpath   # the CPU detector figures of the README

Each topic runs in its own Python process (a crash or a leak in one cannot skew the next) and returns its rows as
JSON. The table goes to stdout and to ``bench/results/latest.md``; the rows, with the machine information, to
``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_common import Row, fmt, machine_info  # noqa: E402

#: topic name → module (in run order: the cheap, quiet ones first)
TOPICS: Dict[str, str] = {
    "hostpath": "bench_hostpath",
    "transport": "bench_transport",
    "lifecycle": "bench_lifecycle",
    "overload": "bench_overload",
    "multicam": "bench_multicam",
    "whisper": "bench_whisper",
    "pipeline": "bench_pipeline",
    "scheduling": "bench_scheduling",
    "llm": "bench_llm",
    "rosdetector": "bench_ros_detector",
    "tracking": "bench_tracking",
    "tasks": "bench_tasks",
}

METHOD = """\
Method: every number is a median (or the stated percentile) measured in this run; each ratio divides by a baseline
measured in the same run, on the same machine, minutes apart (absolute times on these shared 2-core machines move
by 2x between runs, the ratios much less). Host-path timings alternate ours and the floor block by block. ROS
measurements go through real DDS (Fast DDS, localhost) inside one process per topic; the AXCL rows use the C stub
runtime (a test double of the documented AXCL API whose execute sleeps for the model time), not the card. The
"ros detector" rows run the camera, the node and (busy rows) a one-core spinner as separate processes; their
baseline is a plain rclpy node with onnxruntime's default session on the same model, run alternately with ours."""


def _run_topic(topic: str, quick: bool, timeout: float) -> List[Row]:
    module = TOPICS[topic]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        code = (f"import sys, json; sys.path.insert(0, {str(HERE)!r}); import {module} as m; "
                f"rows = m.run(quick={quick!r}); "
                f"json.dump([r.as_dict() for r in rows], open({str(out)!r}, 'w'))")
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        t0 = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, "-c", code], env=env, timeout=timeout, capture_output=True,
                                  text=True, check=False)
        except subprocess.TimeoutExpired:
            return [Row(topic, "all", None, note=f"failed: timed out after {timeout:.0f} s")]
        took = time.monotonic() - t0
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return [Row(topic, "all", None, note=f"failed (exit {proc.returncode}): {' | '.join(tail)}")]
        rows = [Row(**d) for d in json.loads(out.read_text())]
    print(f"[bench] {topic}: {len(rows)} rows in {took:.0f} s", file=sys.stderr)
    return rows


def markdown(info: Dict[str, str], rows: List[Row], quick: bool) -> str:
    """The results as a markdown document: header, method, table."""
    lines = ["# axcl_ros benchmarks", "",
             f"- date: {info['date']}; commit {info['commit']}{' (quick run)' if quick else ''}",
             f"- machine: {info['cpu']}, {info['cores']} cores, {info['memory']}, {info['os']}",
             f"- software: Python {info['python']}, numpy {info['numpy']}, OpenCV {info['opencv']}, "
             f"onnxruntime {info['onnxruntime']}, rclpy {info['rclpy']}, faster-whisper {info['faster-whisper']}",
             "", METHOD, "",
             "| topic | metric | value | unit | baseline (same run) | ratio | notes |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        base = f"{fmt(r.baseline)} ({r.baseline_name})" if r.baseline is not None else "-"
        note = r.note.replace("|", "/")
        lines.append(f"| {r.topic} | {r.metric} | {fmt(r.value)} | {r.unit} | {base} | {fmt(r.ratio)} | {note} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """Entry point; returns the exit status (1 when a topic failed)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="shorter runs (smoke test)")
    p.add_argument("--only", nargs="+", choices=sorted(TOPICS), help="run only these topics")
    p.add_argument("--out", default=str(HERE / "results"), help="folder for latest.md / latest.json")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per topic before it is stopped")
    args = p.parse_args(argv)
    info = machine_info()
    rows: List[Row] = []
    for topic in args.only or list(TOPICS):
        print(f"[bench] running {topic} ...", file=sys.stderr)
        rows += _run_topic(topic, args.quick, args.timeout)
    text = markdown(info, rows, args.quick)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(text)
    (out / "latest.json").write_text(json.dumps({"machine": info, "quick": args.quick, "method": METHOD,
                                                 "rows": [r.as_dict() for r in rows]}, indent=1))
    failed = [r for r in rows if r.note.startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
