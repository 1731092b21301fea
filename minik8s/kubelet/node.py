"""What a kubelet reports about its machine: capacity, addresses, conditions, system info."""

from __future__ import annotations

import logging
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from minik8s.api.quantity import format_memory
from minik8s.api.types import (
    Condition,
    DaemonEndpoint,
    NodeAddress,
    NodeDaemonEndpoints,
    NodeStatus,
    NodeSystemInfo,
)
from minik8s.version import KUBE_VERSION

log = logging.getLogger(__name__)

KIB = 1024
DEFAULT_MAX_PODS = 110
KUBELET_VERSION = KUBE_VERSION
MEMINFO = Path("/proc/meminfo")
OS_RELEASE = Path("/etc/os-release")
MACHINE_ID = Path("/etc/machine-id")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
#: MemoryPressure when less than this much memory is available (Kubernetes' default eviction threshold).
MEMORY_PRESSURE_BYTES = 100 * 1024 * 1024
#: DiskPressure when the pods dir's filesystem has less than this fraction free (nodefs.available<10%).
DISK_PRESSURE_FRACTION = 0.10
#: PIDPressure when fewer than this fraction of pid_max remain.
PID_PRESSURE_FRACTION = 0.05
PID_MAX = Path("/proc/sys/kernel/pid_max")
PROC = Path("/proc")
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def meminfo(field: str) -> int:
    """A /proc/meminfo field in bytes (0 if unavailable)."""
    for line in _read(MEMINFO).splitlines():
        name, _, rest = line.partition(":")
        if name == field:
            return int(rest.split()[0]) * KIB
    return 0


def os_image() -> str:
    for line in _read(OS_RELEASE).splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


@dataclass
class Capacity:
    cpu: str
    memory: str
    pods: int

    def as_dict(self) -> dict[str, str | int | float]:
        return {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods)}


def machine_capacity(cpu: str | None, memory: str | None, pods: int | None) -> Capacity:
    return Capacity(
        cpu=cpu or str(os.cpu_count() or 1),
        memory=memory or format_memory(meminfo("MemTotal")),
        pods=pods or DEFAULT_MAX_PODS,
    )


def _condition(
    ctype: str, true: bool, reason: str, message: str, now: str, previous: list[Condition]
) -> Condition:
    status: Literal["True", "False"] = "True" if true else "False"
    since = next((c.lastTransitionTime for c in previous if c.type == ctype and c.status == status), None)
    return Condition(
        type=ctype,
        status=status,
        reason=reason,
        message=message,
        lastHeartbeatTime=now,
        lastTransitionTime=since or now,
    )


def _disk_pressed(pods_dir: Path) -> bool:
    try:
        usage = shutil.disk_usage(pods_dir if pods_dir.exists() else pods_dir.anchor or "/")
    except OSError:
        return False
    return usage.free < usage.total * DISK_PRESSURE_FRACTION


def _pid_pressed() -> bool:
    limit = _read(PID_MAX)
    if not limit.isdigit():
        return False
    procs = sum(1 for p in PROC.iterdir() if p.name.isdigit())
    return procs > int(limit) * (1 - PID_PRESSURE_FRACTION)


def node_conditions(
    runtime_ok: bool, runtime_error: str, pods_dir: Path, now: str, previous: list[Condition]
) -> list[Condition]:
    available = meminfo("MemAvailable")
    memory = 0 < available < MEMORY_PRESSURE_BYTES
    disk = _disk_pressed(pods_dir)
    pid = _pid_pressed()
    return [
        _condition(
            "MemoryPressure",
            memory,
            "KubeletHasInsufficientMemory" if memory else "KubeletHasSufficientMemory",
            f"kubelet has {'in' if memory else ''}sufficient memory available",
            now,
            previous,
        ),
        _condition(
            "DiskPressure",
            disk,
            "KubeletHasDiskPressure" if disk else "KubeletHasNoDiskPressure",
            f"kubelet has {'' if disk else 'no '}disk pressure",
            now,
            previous,
        ),
        _condition(
            "PIDPressure",
            pid,
            "KubeletHasInsufficientPID" if pid else "KubeletHasSufficientPID",
            f"kubelet has {'in' if pid else ''}sufficient PID available",
            now,
            previous,
        ),
        _condition(
            "Ready",
            runtime_ok,
            "KubeletReady" if runtime_ok else "KubeletNotReady",
            "kubelet is posting ready status"
            if runtime_ok
            else f"container runtime is down: {runtime_error}",
            now,
            previous,
        ),
    ]


def node_status(
    *,
    node_ip: str,
    hostname: str,
    capacity: Capacity,
    port: int,
    runtime_version: str,
    runtime_ok: bool,
    runtime_error: str,
    pods_dir: Path,
    now: str,
    previous: NodeStatus | None,
) -> NodeStatus:
    old = list(previous.conditions or []) if previous else []
    uname = os.uname()
    return NodeStatus(
        capacity=capacity.as_dict(),
        allocatable=capacity.as_dict(),
        conditions=node_conditions(runtime_ok, runtime_error, pods_dir, now, old),
        addresses=[
            NodeAddress(type="InternalIP", address=node_ip),
            NodeAddress(type="Hostname", address=hostname),
        ],
        daemonEndpoints=NodeDaemonEndpoints(kubeletEndpoint=DaemonEndpoint(Port=port)),
        nodeInfo=NodeSystemInfo(
            machineID=_read(MACHINE_ID),
            systemUUID=_read(MACHINE_ID),
            bootID=_read(BOOT_ID),
            kernelVersion=uname.release,
            osImage=os_image(),
            containerRuntimeVersion=runtime_version,
            kubeletVersion=KUBELET_VERSION,
            kubeProxyVersion=KUBELET_VERSION,
            operatingSystem="linux",
            architecture=ARCHITECTURES.get(uname.machine, uname.machine),
        ),
        phase=None,
    )
