"""`up` leaves no resident `ray start` behind (issue 19, footprint: ~75 MiB PSS each): every Ray pidfile
names the node's own daemon (gcs_server for the head, the raylet for a node), `minik8s status` reports
that pid, and no `ray start` CLI lives on in any Ray process group minik8s started."""

from __future__ import annotations

import json
import os
from typing import Any

from minik8s.cluster.config import ClusterConfig
from minik8s.cluster.procs import cmdline, pid_alive, session_members
from minik8s.cluster.rayproc import program_of
from tests.e2e.conftest import run

NODES = ("node-1", "node-2", "node-3")
#: (status row, pidfile, the daemon it names)
RAY = (("ray-head", "ray-head.pid", "gcs_server"), *((f"{n}/raylet", f"{n}_raylet.pid", "raylet") for n in NODES))


def _status_rows() -> dict[str, dict[str, Any]]:
    proc = run("status", "-o", "json", check=False, timeout=180)
    return {row["name"]: row for row in json.loads(proc.stdout)["components"]}


def test_ray_pidfiles_name_the_daemons_and_no_ray_start_stays_resident(cluster: None) -> None:
    cfg = ClusterConfig()
    rows = _status_rows()
    for row, pidfile, daemon in RAY:
        pid = int((cfg.run_dir / pidfile).read_text())
        assert pid_alive(pid) and program_of(cmdline(pid) or []) == daemon, (pidfile, cmdline(pid))
        assert rows[row]["healthy"] and rows[row]["detail"].startswith(f"pid {pid},"), rows[row]
        session = {p: cmdline(p) or [] for p in session_members(os.getsid(pid))}
        assert len(session) >= 3, session  # the daemon, its agents (and workers) share the session
        leftovers = {p: args for p, args in session.items() if program_of(args) == "ray" or "--block" in args}
        assert not leftovers, (pidfile, leftovers)
