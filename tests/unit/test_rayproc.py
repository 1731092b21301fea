"""RayProcess: finding Ray's daemons in the `ray start` session, the pidfile that names them, and the stop
order, against a fake process table (the real one: tests/integration/test_rayproc.py)."""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from minik8s.cluster.rayproc import HEAD_DAEMONS, NODE_DAEMONS, RayProcess, is_ray, program_of

PY = "/venv/bin/python"
RAY = "/venv/bin/ray"
PKG = "/venv/lib/python3.11/site-packages/ray"
GCS = [f"{PKG}/core/src/ray/gcs/gcs_server", "--gcs_server_port=6379"]
RAYLET = [f"{PKG}/core/src/ray/raylet/raylet", "--raylet_socket_name=x"]
AGENT = [PY, "-u", f"{PKG}/dashboard/agent.py", "--node-ip-address=10.0.0.1"]
WORKER = ["ray::KubeletActor"]
LAUNCHER = [PY, RAY, "start", "--head"]


@dataclass
class FakeTable:
    """Processes as pid -> (cmdline, session id); kill() records the signal and ends the process."""

    procs: dict[int, tuple[list[str], int]] = field(default_factory=dict)
    signals: list[tuple[int, signal.Signals]] = field(default_factory=list)
    ignores_term: set[int] = field(default_factory=set)

    def cmdline(self, pid: int) -> list[str] | None:
        return self.procs[pid][0] if pid in self.procs else None

    def sid(self, pid: int) -> int | None:
        return self.procs[pid][1] if pid in self.procs else None

    def session(self, sid: int) -> list[int]:
        return sorted(p for p, (_, s) in self.procs.items() if s == sid)

    def kill(self, pid: int, sig: signal.Signals) -> None:
        self.signals.append((pid, sig))
        if sig == signal.SIGKILL or pid not in self.ignores_term:
            self.procs.pop(pid, None)


def head(tmp_path: Path, table: FakeTable) -> RayProcess:
    return RayProcess("ray-head", [RAY, "start", "--head"], tmp_path, daemons=HEAD_DAEMONS, table=table)


def launched(tmp_path: Path, table: FakeTable, proc: RayProcess, sid: int = 100) -> None:
    """As start() leaves it: the pidfile and the session record name the launcher."""
    proc.pidfile.parent.mkdir(parents=True, exist_ok=True)
    proc.pidfile.write_text(f"{sid}\n")
    proc.sessionfile.write_text(json.dumps({"sid": sid, "argv": proc.argv}))


def ray_session(table: FakeTable, sid: int = 100) -> None:
    """What `ray start --head` leaves once it has exited: its daemons, an agent and a worker in its session."""
    table.procs.update({101: (GCS, sid), 102: (RAYLET, sid), 103: (AGENT, sid), 104: (WORKER, sid)})


def test_programs_are_told_apart_through_the_interpreter() -> None:
    assert program_of(LAUNCHER) == "ray" and program_of(AGENT) == "agent.py"
    assert program_of([PY, "-m", "ray.util.client.server"]) == "ray.util.client.server"
    assert program_of(GCS) == "gcs_server" and program_of(RAYLET) == "raylet"
    assert all(is_ray(a) for a in (LAUNCHER, GCS, RAYLET, AGENT, WORKER))
    assert not is_ray(["sleep", "300"]) and not is_ray([PY, "-m", "http.server"])


def test_the_pidfile_names_the_launcher_while_it_runs(tmp_path: Path) -> None:
    table = FakeTable({100: (LAUNCHER, 100)})
    proc = head(tmp_path, table)
    launched(tmp_path, table, proc)
    assert proc.pid() == 100
    assert proc.pidfile.read_text() == "100\n"


def test_after_the_launcher_exits_the_pidfile_is_pointed_at_the_main_daemon(tmp_path: Path) -> None:
    table = FakeTable()
    ray_session(table)
    proc = head(tmp_path, table)
    launched(tmp_path, table, proc)
    assert proc.pid() == 101  # gcs_server, for a head
    assert proc.pidfile.read_text() == "101\n"
    assert json.loads(proc.sessionfile.read_text())["daemons"] == {"gcs_server": 101, "raylet": 102}
    assert proc.running() and proc.matches_config()


def test_a_node_is_named_by_its_raylet(tmp_path: Path) -> None:
    table = FakeTable({202: (RAYLET, 200), 203: (AGENT, 200)})
    proc = RayProcess("node-1/raylet", [RAY, "start"], tmp_path, daemons=NODE_DAEMONS, table=table)
    launched(tmp_path, table, proc, sid=200)
    assert proc.pid() == 202
    assert (tmp_path / "run" / "node-1_raylet.pid").read_text() == "202\n"


def test_a_session_missing_a_required_daemon_is_not_running(tmp_path: Path) -> None:
    table = FakeTable({101: (GCS, 100), 103: (AGENT, 100)})  # the head's raylet never came up
    proc = head(tmp_path, table)
    launched(tmp_path, table, proc)
    assert proc.pid() is None
    assert proc.pidfile.read_text() == "100\n"  # nothing settled


def test_a_dead_daemon_makes_the_node_down_even_while_others_live(tmp_path: Path) -> None:
    table = FakeTable()
    ray_session(table)
    proc = head(tmp_path, table)
    launched(tmp_path, table, proc)
    assert proc.pid() == 101
    del table.procs[102]  # the head's raylet dies; the GCS lives on
    assert proc.pid() is None
    table.procs[105] = (RAYLET, 100)  # a raylet it was not started with does not count
    assert proc.pid() is None


def test_a_reused_pid_in_another_session_is_not_ours(tmp_path: Path) -> None:
    table = FakeTable()
    ray_session(table)
    proc = head(tmp_path, table)
    launched(tmp_path, table, proc)
    assert proc.pid() == 101
    table.procs[101] = (GCS, 999)  # another cluster's GCS got the pid
    assert proc.pid() is None
    table.procs[100] = (["sleep", "300"], 100)  # and the launcher's pid leads some other session
    assert proc.pid() is None


def test_stop_goes_raylet_then_the_rest_then_gcs_and_forgets_the_node(tmp_path: Path) -> None:
    table = FakeTable()
    ray_session(table)
    table.procs[500] = (["sleep", "300"], 100)  # not Ray: never signalled, whatever its session
    proc = head(tmp_path, table)
    launched(tmp_path, table, proc)
    assert proc.pid() == 101
    assert proc.stop(timeout=0.0)
    assert [p for p, _ in table.signals] == [102, 103, 104, 101]
    assert {s for _, s in table.signals} == {signal.SIGTERM}
    assert 500 in table.procs
    assert not proc.pidfile.exists() and not proc.sessionfile.exists()
    assert not proc.stop(timeout=0.0)  # nothing left to stop


def test_stop_during_start_ends_the_launcher_first(tmp_path: Path) -> None:
    table = FakeTable({100: (LAUNCHER, 100), 101: (GCS, 100)})
    proc = head(tmp_path, table)
    launched(tmp_path, table, proc)
    assert proc.stop(timeout=0.0)
    assert [p for p, _ in table.signals] == [100, 101]


def test_stop_sigkills_what_ignores_sigterm(tmp_path: Path) -> None:
    table = FakeTable(ignores_term={102})
    ray_session(table)
    proc = head(tmp_path, table)
    launched(tmp_path, table, proc)
    assert proc.stop(timeout=0.0)
    assert table.signals[:2] == [(102, signal.SIGTERM), (102, signal.SIGKILL)]
    assert not table.procs


def test_start_clears_what_a_dead_start_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = FakeTable({101: (GCS, 100), 103: (AGENT, 100)})  # the raylet died; its GCS and agent live
    proc = head(tmp_path, table)
    launched(tmp_path, table, proc)
    proc.pidfile.write_text("102\n")
    started: list[int] = []

    def fake_launch(self: RayProcess, prepare: object) -> int:
        started.append(len(table.procs))
        self.pidfile.write_text("300\n")
        table.procs[300] = (LAUNCHER, 300)
        return 300

    monkeypatch.setattr("minik8s.cluster.procs.ManagedProcess._start_locked", fake_launch)
    assert proc.start() == 300
    assert started == [0]  # the old session was gone before the new launch
    assert json.loads(proc.sessionfile.read_text()) == {"sid": 300, "argv": proc.argv}
    assert proc.pid() == 300


def test_a_resident_parent_left_by_an_older_minik8s_is_adopted_and_stopped(tmp_path: Path) -> None:
    table = FakeTable({100: ([*LAUNCHER, "--block"], 100)})
    ray_session(table)
    proc = head(tmp_path, table)
    proc.pidfile.parent.mkdir(parents=True)
    proc.pidfile.write_text("100\n")  # no session record: it predates them
    assert proc.pid() == 100 and not proc.matches_config()  # `up` says: restart it to apply
    proc.wait_ready(lambda: True, timeout=0.0)  # ready, though it never exits
    assert proc.stop(timeout=0.0)
    assert [p for p, _ in table.signals] == [100, 102, 103, 104, 101]
    assert not table.procs
