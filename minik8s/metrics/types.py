"""metrics.k8s.io/v1beta1 shapes and quantity formats, as metrics-server writes them.

CPU usage is written in nanocores (`123456789n`), memory in kibibytes (`12345Ki`); readers parse any
Kubernetes quantity back.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from minik8s.api.quantity import QuantityError, parse_quantity

GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
#: Where a kubelet PUTs its node's latest window (JSON: {"node": NodeMetrics-like, "pods": [PodMetrics...]}).
REPORT_PATH = "/minik8s/metrics/v1/nodes/{node}"
NANO = 1_000_000_000
KI = 1024
MI = 1024 * 1024

Obj = dict[str, Any]


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_cpu_usage(cores: float) -> str:
    """Cores as metrics-server writes them: nanocores."""
    return f"{max(0, round(cores * NANO))}n"


def format_memory_usage(nbytes: int) -> str:
    return f"{max(0, int(nbytes) // KI)}Ki"


def cpu_nanocores(value: str | int | float | None) -> int:
    if value is None:
        return 0
    try:
        return int(parse_quantity(value) * NANO)
    except QuantityError:
        return 0


def memory_usage_bytes(value: str | int | float | None) -> int:
    if value is None:
        return 0
    try:
        return int(parse_quantity(value))
    except QuantityError:
        return 0


def top_cpu(nanocores: int) -> str:
    """kubectl top's CPU(cores) column: millicores."""
    return f"{nanocores // 1_000_000}m"


def top_memory(nbytes: int) -> str:
    """kubectl top's MEMORY(bytes) column: mebibytes."""
    return f"{nbytes // MI}Mi"


def window_s(window: str | None) -> float:
    """`15s`, `1m0s`, `15.2s` → seconds."""
    if not window:
        return 0.0
    total, num = 0.0, ""
    for ch in window:
        if ch.isdigit() or ch == ".":
            num += ch
        elif num:
            total += float(num) * {"h": 3600, "m": 60, "s": 1}.get(ch, 0)
            num = ""
    return total + (float(num) if num else 0.0)


def format_window(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
