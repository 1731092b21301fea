"""Naming a network namespace: ``None`` (the caller's own), a name under /var/run/netns, or a path.

Every function in this package takes such a ``netns`` so the same code runs inside a node
(the agent lives there) and from the root netns (tests, the cluster code).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

NETNS_RUN_DIR = Path("/var/run/netns")
SYSCTL_TIMEOUT_S = 10.0


def netns_path(netns: str) -> str:
    """``/var/run/netns/NAME`` for a bare name; a path (``/proc/PID/ns/net``) is used as is."""
    return netns if "/" in netns else str(NETNS_RUN_DIR / netns)


def nsenter_argv(netns: str | None, argv: list[str]) -> list[str]:
    """``argv`` run in ``netns``; ``nsenter --net`` switches only the network namespace."""
    if netns is None:
        return argv
    return ["nsenter", f"--net={netns_path(netns)}", "--", *argv]


def read_sysctl(key: str, netns: str | None = None) -> str:
    """A ``net.*`` sysctl as seen in ``netns`` (``/proc/sys/net`` is per netns of the reader)."""
    if netns is None:
        return Path("/proc/sys", *key.split(".")).read_text().strip()
    res = subprocess.run(nsenter_argv(netns, ["sysctl", "-n", key]), capture_output=True, text=True,
                         timeout=SYSCTL_TIMEOUT_S, check=True)
    return res.stdout.strip()


def write_sysctl(key: str, value: str, netns: str | None = None) -> None:
    if netns is None:
        Path("/proc/sys", *key.split(".")).write_text(value)
        return
    subprocess.run(nsenter_argv(netns, ["sysctl", "-qw", f"{key}={value}"]), capture_output=True,
                   timeout=SYSCTL_TIMEOUT_S, check=True)


def exists(netns: str) -> bool:
    return os.path.exists(netns_path(netns))
