"""``axcl_ros smi``: device samples as a table like AXERA's ``axcl-smi``."""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence

from .health import OK, DeviceSample, Thresholds, evaluate, hex_id


def _mib(used_kb: int, total_kb: int) -> str:
    return f"{used_kb // 1024} / {total_kb // 1024} MiB" if total_kb else "-"


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.1f} %"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Iterable[int] = ()) -> List[str]:
    right = set(right)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells):
        return "|" + "|".join(f" {c.rjust(w) if i in right else c.ljust(w)} "
                              for i, (c, w) in enumerate(zip(cells, widths))) + "|"

    return [rule, line(headers), rule.replace("-", "="), *(line(r) for r in rows), rule]


def format_smi_table(samples: Sequence[DeviceSample], thresholds: Optional[Thresholds] = None,
                     header: str = "") -> str:
    """An ``axcl-smi``-like table of ``samples``, followed by one line per problem with how to fix it."""
    thresholds = thresholds or Thresholds()
    headers = ("Card", "Device ID", "Name", "Firmware", "Temp", "CPU", "NPU", "Memory-Usage", "CMM-Usage", "State")
    rows, problems, notes = [], [], []
    for s in samples:
        ev = evaluate(s, thresholds)
        dev_id = "host" if s.kind == "host" else (f"{s.device_id} ({hex_id(s.device_id)})" if s.device_id >= 0
                                                  else "-")
        temp = "-" if s.temperature_c is None else f"{s.temperature_c:.1f} C"
        rows.append((str(s.index), dev_id, s.name or "-", s.firmware or "-", temp, _pct(s.cpu_load_percent),
                     _pct(s.npu_load_percent), _mib(s.memory_used_kb, s.memory_total_kb),
                     _mib(s.cmm_used_kb, s.cmm_total_kb), ev.level_name))
        if ev.level != OK:
            problems.append(f"{ev.level_name} {s.label}: {ev.message}")
            if s.fix:
                problems.append(f"    fix: {s.fix}")
        notes += [f"note {s.label}: {n}" for n in s.notes]
    lines = [header] if header else []
    lines += _table(headers, rows, right=(0, 4, 5, 6, 7, 8))
    lines += problems + notes
    return "\n".join(lines)
