"""The kubelet's resource-metrics sampler: real usage from cgroup v1 files, pushed to the API server.

Every `interval_s` it reads, for each running container this node manages:
- cpu: `cpuacct.usage` (ns of CPU time); the rate between two samples is the usage in cores;
- memory working set: `memory.usage_in_bytes` − `total_inactive_file` (what the OOM killer looks at);
- block I/O: bytes read/written from `blkio.throttle.io_service_bytes`;
- network: rx/tx bytes of the pod's pause container (`/proc/<pid>/net/dev`, every interface but lo);
and the node's totals from `/proc/stat` and `/proc/meminfo`. The cgroup of a container comes from
`docker inspect` (State.Pid → `/proc/<pid>/cgroup`; cgroupfs fallback `<root>/<ctrl>/<parent>/<id>`),
looked up once per container. The latest window is PUT to the API server (``REPORT_PATH``), which
serves it as metrics.k8s.io PodMetrics/NodeMetrics. A container's first sample only primes the rate.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minik8s.errors import MiniK8sError
from minik8s.kubelet import labels as L
from minik8s.metrics.types import REPORT_PATH, format_cpu_usage, format_memory_usage, format_window, iso

log = logging.getLogger("minik8s.kubelet.metrics")

DEFAULT_INTERVAL_S = 15.0
DEFAULT_CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("cpuacct", "memory", "blkio")
USER_HZ = os.sysconf("SC_CLK_TCK")
NS_PER_S = 1e9
ANNOTATION_PREFIX = "metrics.minik8s.io/"


@dataclass
class ContainerUsage:
    namespace: str
    pod: str
    container: str
    cpu_cores: float
    memory_working_set: int
    blkio_read: int = 0
    blkio_write: int = 0


@dataclass
class PodNetwork:
    rx_bytes: int
    tx_bytes: int


@dataclass
class Window:
    """One sampling round: what is pushed."""

    timestamp: float
    window_s: float
    containers: list[ContainerUsage] = field(default_factory=list)
    networks: dict[tuple[str, str], PodNetwork] = field(default_factory=dict)
    node_cpu_cores: float | None = None
    node_memory_working_set: int | None = None


@dataclass
class _Tracked:
    namespace: str
    pod: str
    container: str
    sandbox: bool
    pid: int
    paths: dict[str, Path]
    last_cpu_ns: int | None = None
    last_at: float | None = None


def _read_int(path: Path) -> int:
    return int(path.read_text().split()[0])


def memory_working_set(memory_dir: Path) -> int:
    usage = _read_int(memory_dir / "memory.usage_in_bytes")
    inactive = 0
    for line in (memory_dir / "memory.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "total_inactive_file":
            inactive = int(value)
            break
    return max(0, usage - inactive)


def blkio_bytes(blkio_dir: Path) -> tuple[int, int]:
    read = write = 0
    try:
        text = (blkio_dir / "blkio.throttle.io_service_bytes").read_text()
    except OSError:
        return 0, 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:  # noqa: PLR2004 - "<major:minor> <op> <bytes>"
            if parts[1] == "Read":
                read += int(parts[2])
            elif parts[1] == "Write":
                write += int(parts[2])
    return read, write


def net_dev(pid: int, proc: Path = Path("/proc")) -> PodNetwork:
    rx = tx = 0
    for line in (proc / str(pid) / "net" / "dev").read_text().splitlines()[2:]:
        iface, _, rest = line.partition(":")
        if iface.strip() == "lo":
            continue
        cols = rest.split()
        rx += int(cols[0])
        tx += int(cols[8])
    return PodNetwork(rx, tx)


def proc_cgroup_paths(pid: int, root: Path, proc: Path = Path("/proc")) -> dict[str, Path]:
    """cgroup v1 directories of a process, per controller we read."""
    out: dict[str, Path] = {}
    for line in (proc / str(pid) / "cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        for ctrl in ctrls.split(","):
            if ctrl in CONTROLLERS:
                mount = root / ctrl
                if not mount.exists():  # co-mounted, e.g. cpu,cpuacct
                    mount = next((p for p in root.iterdir() if ctrl in p.name.split(",")), mount)
                out[ctrl] = mount / path.lstrip("/")
    return out


def node_cpu_jiffies(proc: Path = Path("/proc")) -> tuple[int, int]:
    """(busy, total) jiffies from the first line of /proc/stat."""
    fields = [int(x) for x in (proc / "stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # noqa: PLR2004 - idle + iowait
    total = sum(fields[:8])
    return total - idle, total


def node_memory_working_set(proc: Path = Path("/proc")) -> int:
    info: dict[str, int] = {}
    for line in (proc / "meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        info[key] = int(value.split()[0]) * 1024
    return info.get("MemTotal", 0) - info.get("MemAvailable", 0)


class MetricsSampler:
    """Samples the node's managed containers; `run` pushes a window every `interval_s` until stopped."""

    def __init__(self, docker_client: Any, node_name: str, client: Any = None,
                 interval_s: float = DEFAULT_INTERVAL_S, cgroup_root: Path = DEFAULT_CGROUP_ROOT,
                 pod_labels: Callable[[str, str], dict[str, str] | None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.docker = docker_client
        self.node_name = node_name
        self.client = client
        self.interval_s = interval_s
        self.cgroup_root = cgroup_root
        self.pod_labels = pod_labels
        self.clock = clock
        self._tracked: dict[str, _Tracked] = {}
        self._node_prev: tuple[float, int] | None = None
        self._last_round: float | None = None

    # --- sampling -------------------------------------------------------------------------------
    def _track(self, cid: str) -> _Tracked | None:
        try:
            attrs = self.docker.api.inspect_container(cid)
        except Exception as exc:  # gone between list and inspect
            log.debug("inspect failed", extra={"container": cid, "error": str(exc)})
            return None
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        pid = int((attrs.get("State") or {}).get("Pid") or 0)
        if not pid:
            return None
        try:
            paths = proc_cgroup_paths(pid, self.cgroup_root)
        except OSError:
            parent = ((attrs.get("HostConfig") or {}).get("CgroupParent") or "docker").strip("/")
            paths = {ctrl: self.cgroup_root / ctrl / parent / attrs["Id"] for ctrl in CONTROLLERS}
        return _Tracked(labels.get(L.POD_NAMESPACE, "default"), labels.get(L.POD_NAME, ""),
                        labels.get(L.CONTAINER_NAME, ""), labels.get(L.CONTAINER_TYPE) == L.TYPE_SANDBOX,
                        pid, paths)

    def sample(self) -> Window:
        now = self.clock()
        running = self.docker.api.containers(filters={"label": [f"{L.MANAGED}=true", f"{L.NODE}={self.node_name}"],
                                                      "status": "running"})
        ids = {c["Id"] for c in running}
        for gone in set(self._tracked) - ids:
            del self._tracked[gone]
        window = Window(time.time(), now - self._last_round if self._last_round else 0.0)
        self._last_round = now
        for cid in ids:
            tr = self._tracked.get(cid)
            if tr is None:
                tr = self._track(cid)
                if tr is None:
                    continue
                self._tracked[cid] = tr
            try:
                self._sample_one(tr, now, window)
            except (OSError, ValueError) as exc:  # the container exited mid-read
                log.debug("sample failed", extra={"pod": tr.pod, "container": tr.container, "error": str(exc)})
                self._tracked.pop(cid, None)
        self._sample_node(now, window)
        return window

    def _sample_one(self, tr: _Tracked, now: float, window: Window) -> None:
        if tr.sandbox:
            window.networks[(tr.namespace, tr.pod)] = net_dev(tr.pid)
            return
        cpu_ns = _read_int(tr.paths["cpuacct"] / "cpuacct.usage")
        prev_ns, prev_at = tr.last_cpu_ns, tr.last_at
        tr.last_cpu_ns, tr.last_at = cpu_ns, now
        if prev_ns is None or prev_at is None or now <= prev_at:
            return  # first sample primes the rate
        cores = max(0, cpu_ns - prev_ns) / NS_PER_S / (now - prev_at)
        read, write = blkio_bytes(tr.paths["blkio"]) if "blkio" in tr.paths else (0, 0)
        window.containers.append(ContainerUsage(tr.namespace, tr.pod, tr.container, cores,
                                                memory_working_set(tr.paths["memory"]), read, write))

    def _sample_node(self, now: float, window: Window) -> None:
        try:
            busy, _ = node_cpu_jiffies()
            window.node_memory_working_set = node_memory_working_set()
        except OSError as exc:
            log.warning("node sample failed", extra={"error": str(exc)})
            return
        if self._node_prev is not None and now > self._node_prev[0]:
            window.node_cpu_cores = max(0, busy - self._node_prev[1]) / USER_HZ / (now - self._node_prev[0])
        self._node_prev = (now, busy)

    # --- reporting ------------------------------------------------------------------------------
    def report_body(self, w: Window) -> dict[str, Any]:
        stamp, span = iso(w.timestamp), format_window(w.window_s)
        pods: dict[tuple[str, str], dict[str, Any]] = {}
        for c in w.containers:
            pm = pods.setdefault((c.namespace, c.pod), {
                "metadata": {"name": c.pod, "namespace": c.namespace}, "timestamp": stamp, "window": span,
                "containers": [], "_io": [0, 0]})
            usage = {"cpu": format_cpu_usage(c.cpu_cores), "memory": format_memory_usage(c.memory_working_set)}
            pm["containers"].append({"name": c.container, "usage": usage})
            pm["_io"][0] += c.blkio_read
            pm["_io"][1] += c.blkio_write
        for (ns, name), pm in pods.items():
            io = pm.pop("_io")
            notes = {f"{ANNOTATION_PREFIX}blkio-read-bytes": str(io[0]),
                     f"{ANNOTATION_PREFIX}blkio-write-bytes": str(io[1])}
            net = w.networks.get((ns, name))
            if net is not None:
                notes[f"{ANNOTATION_PREFIX}network-rx-bytes"] = str(net.rx_bytes)
                notes[f"{ANNOTATION_PREFIX}network-tx-bytes"] = str(net.tx_bytes)
            pm["metadata"]["annotations"] = notes
            labels = self.pod_labels(ns, name) if self.pod_labels else None
            if labels:
                pm["metadata"]["labels"] = labels
            pm["containers"].sort(key=lambda c: c["name"])
        body: dict[str, Any] = {"pods": list(pods.values())}
        if w.node_cpu_cores is not None and w.node_memory_working_set is not None:
            body["node"] = {"timestamp": stamp, "window": span,
                            "usage": {"cpu": format_cpu_usage(w.node_cpu_cores),
                                      "memory": format_memory_usage(w.node_memory_working_set)}}
        return body

    def push(self, w: Window) -> None:
        if self.client is None:
            return
        self.client.request("PUT", REPORT_PATH.format(node=self.node_name), json=self.report_body(w))

    def run(self, stop: threading.Event) -> None:
        """Sample and push every interval until `stop` is set; errors are logged, never fatal."""
        while not stop.is_set():
            try:
                self.push(self.sample())
            except MiniK8sError as exc:
                log.warning("metrics push failed", extra={"node": self.node_name, "error": exc.message})
            except Exception:
                log.exception("metrics sampling failed", extra={"node": self.node_name})
            stop.wait(self.interval_s)
