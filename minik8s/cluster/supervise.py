"""A node's supervisor: restarts the node's dockerd whenever it exits, as systemd's ``Restart=always``
does for docker.service on a machine.

It runs as a managed process of its own (``<node>/supervisor``), which ``minik8s up`` starts after the
node's dockerd answers and ``minik8s down`` stops before the dockerd.  It needs nothing but this
machine (no Ray, no API, no etcd), so a node heals while the control plane is down too.  The node's
dockerd runs with ``--live-restore``: the containers keep running while it is gone and the restarted
dockerd adopts them, so pods neither restart nor drop traffic; meanwhile the kubelet reports the
node NotReady ("container runtime is down").

Usage (what ``up`` runs)::

    python -m minik8s.cluster.supervise --name node-1/dockerd --state-dir DIR --socket SOCK [--netns NS] \
        -- dockerd ARGS…
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Protocol

from minik8s.cluster.procs import ManagedProcess

log = logging.getLogger("minik8s.cluster.supervise")  # also when run as __main__


@dataclass
class RestartPolicy:
    """When to restart; the defaults follow Debian's docker.service (``RestartSec=2``)."""

    delay_s: float = 2.0
    """Wait this long after finding the daemon gone before the first restart (the kubelet notices
    and reports the node meanwhile; a daemon that exits at once is not restarted in a hot loop)."""
    max_delay_s: float = 60.0
    """Each restart that does not last doubles the delay, up to this."""
    reset_after_s: float = 10.0
    """A daemon that has run this long since its restart started fine: the delay goes back to ``delay_s``
    (one killed now and then is restarted as fast as the first time; one that keeps dying backs off)."""
    check_interval_s: float = 1.0
    """How often the daemon is checked."""


class Supervised(Protocol):
    """What the supervisor keeps running."""

    name: str

    def running(self) -> bool: ...

    def restart(self) -> None:
        """Start it and wait until it serves; raise if it does not."""


class Supervisor:
    """Keeps one daemon running: one :meth:`step` per check, with a restart delay that backs off."""

    def __init__(self, target: Supervised, policy: RestartPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self.policy = policy or RestartPolicy()
        self.clock = clock
        self.restarts = 0
        self._attempts = 0  # restarts since the daemon last ran for reset_after_s
        self._down_since: float | None = None
        self._up_since: float | None = None

    def delay(self) -> float:
        """How long the next restart waits after the daemon was found gone."""
        return float(min(self.policy.delay_s * 2 ** self._attempts, self.policy.max_delay_s))

    def step(self) -> float:
        """Check once, restarting the daemon if it has been gone for :meth:`delay`; returns how long to
        wait before the next step."""
        now = self.clock()
        if self.target.running():
            if self._up_since is None:
                self._up_since = now
            elif self._attempts and now - self._up_since >= self.policy.reset_after_s:
                self._attempts = 0
            self._down_since = None
            return self.policy.check_interval_s
        self._up_since = None
        if self._down_since is None:
            self._down_since = now
            log.warning("%s is not running: restarting it in %.1fs", self.target.name, self.delay(),
                        extra={"component": self.target.name})
        wait = self._down_since + self.delay() - now
        if wait > 0:
            return min(wait, self.policy.check_interval_s)
        self._attempts += 1
        try:
            self.target.restart()
        except Exception as exc:  # noqa: BLE001 - a failed start is retried after a longer delay
            self._down_since = self.clock()
            log.error("restarting %s failed (next try in %.1fs): %s", self.target.name, self.delay(), exc,
                      extra={"component": self.target.name})
            return self.policy.check_interval_s
        self.restarts += 1
        self._down_since = None
        self._up_since = self.clock()
        log.info("restarted %s in %.1fs", self.target.name, self._up_since - now,
                 extra={"component": self.target.name, "restarts": self.restarts})
        return self.policy.check_interval_s

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.step()):
            pass


class DockerdTarget:
    """A node's dockerd as :func:`minik8s.cluster.local.start_node` starts it: same pidfile, log and netns."""

    def __init__(self, proc: ManagedProcess, socket: Path, ready_timeout_s: float) -> None:
        self.proc = proc
        self.name = proc.name
        self.socket = socket
        self.ready_timeout_s = ready_timeout_s

    def running(self) -> bool:
        return self.proc.running()

    def restart(self) -> None:
        from minik8s.cluster import local

        self.proc.start(prepare=lambda: local.clear_dockerd_pidfiles(self.proc.argv))
        self.proc.wait_ready(lambda: local.docker_healthy(self.socket), self.ready_timeout_s, "answering ping")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minik8s.cluster.supervise", description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True, help="the daemon's managed-process name, e.g. node-1/dockerd")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--netns", default=None, help="start it inside this network namespace")
    parser.add_argument("--socket", required=True, type=Path, help="its API socket, pinged after a restart")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds a restart may take")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- dockerd ARGS…")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("the daemon's command line is missing (after --)")
    logging.basicConfig(level=os.environ.get("MINIK8S_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    proc = ManagedProcess(args.name, command, args.state_dir, netns=args.netns)
    target = DockerdTarget(proc, args.socket, args.ready_timeout)
    log.info("supervising %s", args.name, extra={"component": args.name})
    Supervisor(target).run(stop)


if __name__ == "__main__":
    main()
