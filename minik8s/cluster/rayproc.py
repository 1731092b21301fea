"""Ray head and raylets without a resident ``ray start --block`` parent (~75 MiB PSS each).

:class:`RayProcess` runs ``ray start`` *without* ``--block`` as the leader of a new session, the way
:class:`~minik8s.cluster.procs.ManagedProcess` starts any daemon.  ``ray start`` (the *launcher*)
starts Ray's daemons and exits; they keep its session id (Ray makes no sessions of its own), so the
session is the node's set of Ray processes, with nothing resident to watch over them.

Files, in ``<state>/run``:

* ``<name>.pid`` names the launcher while it runs, then the node's main daemon (``gcs_server`` for
  the head, ``raylet`` for a node; both carry minik8s's environment, e.g. the Ray token settings).
* ``<name>.session`` (JSON) records the session id, the ``ray start`` argv, and the pid of each
  *required* daemon (head: ``gcs_server`` and ``raylet``; node: ``raylet``).

The pidfile is repointed at the daemon ("settled") by whoever next asks for the pid after the
launcher exited (:meth:`RayProcess.pid`; ``wait_ready`` does it before ``up`` returns).  A
``ray start --block`` that an older minik8s left running is adopted as a launcher that never exits.

Liveness is what ``--block`` gave: the node runs while every required daemon is alive, in the
recorded session, with the right program.  When one dies, the node counts as down, and ``start``
first clears the rest of its old session (agents, workers, a surviving GCS) and then starts it
afresh, as the ``--block`` parent killed its remaining processes when one of them died.

``stop`` stops the session in order: the launcher (a start in progress), the raylet (it stops its
workers and agents), everything else but the GCS (the autoscaler monitor hangs on SIGTERM once the
GCS is gone), then the GCS; each step SIGTERM, then SIGKILL after a second (what Ray's own shutdown
gives each process). Only members of the recorded session that run Ray (a Ray path or a ``ray::``
title among their first arguments) are ever signalled, never processes found by name.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from minik8s.cluster import procs
from minik8s.cluster.procs import ManagedProcess, ProcessError

log = logging.getLogger(__name__)

#: The raylet stops first (as in Ray's ``Node.kill_all_processes``), so it can stop its workers and
#: agents itself; the GCS last, since the others (the autoscaler monitor) hang on SIGTERM without it.
FIRST, LAST = "raylet", "gcs_server"
#: The daemons a head needs alive; a node needs only its raylet.
HEAD_DAEMONS = ("gcs_server", "raylet")
NODE_DAEMONS = ("raylet",)
POLL_S = 0.1
#: How long each step of ``stop`` waits after SIGTERM before SIGKILL: what Ray's own ``kill_all_processes``
#: (the ``--block`` parent's) gives each process.  A raylet whose GCS is gone never exits on SIGTERM.
STOP_GRACE_S = 1.0


class ProcTable(Protocol):
    """The process table, as :class:`RayProcess` reads and signals it (a fake one in unit tests)."""

    def cmdline(self, pid: int) -> list[str] | None: ...
    def sid(self, pid: int) -> int | None: ...
    def session(self, sid: int) -> list[int]: ...
    def kill(self, pid: int, sig: signal.Signals) -> None: ...


class LiveProcTable:
    """This machine's /proc."""

    def cmdline(self, pid: int) -> list[str] | None:
        return procs.cmdline(pid) if procs.pid_alive(pid) else None

    def sid(self, pid: int) -> int | None:
        try:
            return os.getsid(pid)
        except (ProcessLookupError, PermissionError):
            return None

    def session(self, sid: int) -> list[int]:
        return procs.session_members(sid)

    def kill(self, pid: int, sig: signal.Signals) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def program_of(args: Sequence[str]) -> str:
    """The program a Ray process runs: ``raylet``, ``gcs_server``, ``ray`` (the CLI, run by python), a
    script's or module's name; the interpreter and its options are skipped."""
    rest = list(args[:4])
    while rest and (os.path.basename(rest[0]).startswith("python") or rest[0] == "-u"):
        rest.pop(0)
    if rest[:1] == ["-m"]:
        rest.pop(0)
    return os.path.basename(rest[0]) if rest else ""


def is_ray(args: Sequence[str]) -> bool:
    """Does this command line run Ray (its CLI, a daemon, an agent, a worker)?  Guards a stale session
    id: a reused id never gets anyone but Ray's processes signalled."""
    return any("/ray/" in a or a.startswith("ray::") or os.path.basename(a) == "ray" for a in args[:3])


@dataclass
class RayProcess(ManagedProcess):
    """A ``ray start`` (head or node) whose daemons are tracked by session (see the module docstring)."""

    daemons: tuple[str, ...] = NODE_DAEMONS
    """The daemons that must be alive; the first is the one the pidfile names."""
    table: ProcTable = field(default_factory=LiveProcTable, repr=False, compare=False)

    @property
    def sessionfile(self) -> Path:
        return self.pidfile.with_suffix(".session")

    # -- records ------------------------------------------------------------------------------------

    def _record(self) -> dict[str, Any]:
        try:
            data = json.loads(self.sessionfile.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, path: Path, text: str) -> None:
        """Atomically: ``status`` in another process may read it at any time."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(path)

    def _session_id(self) -> int | None:
        sid = self._record().get("sid")
        return sid if isinstance(sid, int) else None

    # -- identity -----------------------------------------------------------------------------------

    def _runs(self, pid: int, program: str, sid: int | None) -> bool:
        args = self.table.cmdline(pid)
        return bool(args) and program_of(args or []) == program and (sid is None or self.table.sid(pid) == sid)

    def _is_launcher(self, pid: int) -> bool:
        """Is ``pid`` our ``ray start``, still running?  It leads its own session."""
        return self._runs(pid, "ray", pid)

    def _is_resident(self, pid: int) -> bool:
        """Is ``pid`` a ``ray start --block`` left by an older minik8s?  It never exits: it is adopted as
        it is (pidfile and all) until the node is stopped, and restarted the new way."""
        return "--block" in (self.table.cmdline(pid) or [])

    def _daemons_alive(self, rec: dict[str, Any]) -> bool:
        pids = rec.get("daemons") or {}
        sid = rec.get("sid")
        return all(isinstance(pids.get(d), int) and self._runs(pids[d], d, sid) for d in self.daemons)

    def _sid(self) -> int | None:
        """Our session: as recorded, else the one a live launcher leads (it predates records)."""
        sid = self._session_id()
        if sid is None:
            pid = self._read_pid()
            sid = pid if pid is not None and self._is_launcher(pid) else None
        return sid

    def members(self, sid: int | None = None) -> list[int]:
        """Every live Ray process of our session (launcher, daemons, agents, workers)."""
        sid = sid if sid is not None else self._sid()
        if sid is None:
            return []
        return [p for p in self.table.session(sid) if is_ray(self.table.cmdline(p) or [])]

    def pid(self) -> int | None:
        """The launcher while it runs, then the main daemon while every required daemon lives; else None."""
        pid = self._read_pid()
        if pid is None:
            return None
        if self._is_launcher(pid):
            return pid
        rec = self._record()
        if rec.get("daemons") and self._daemons_alive(rec):
            return int(rec["daemons"][self.daemons[0]])
        return self._settle(rec)

    def _settle(self, rec: dict[str, Any]) -> int | None:
        """The launcher has exited: find the required daemons in its session and point the files at them."""
        sid = rec.get("sid")
        if not isinstance(sid, int) or rec.get("daemons"):
            return None  # never started here, or settled before and a daemon has died since
        found: dict[str, int] = {}
        for p in self.table.session(sid):
            prog = program_of(self.table.cmdline(p) or [])
            if prog in self.daemons and prog not in found:
                found[prog] = p
        if set(found) != set(self.daemons):
            return None
        self._write(self.sessionfile, json.dumps({**rec, "daemons": found}))
        self._write(self.pidfile, f"{found[self.daemons[0]]}\n")
        log.info("%s runs as %s", self.name, found, extra={"component": self.name, "pids": list(found.values())})
        return found[self.daemons[0]]

    def _same_args(self, pid: int) -> bool:
        return bool(self._record().get("argv") == self.argv)

    # -- lifecycle ------------------------------------------------------------------------------------

    def _start_locked(self, prepare: Callable[[], None] | None) -> int:
        if self.pid() is None:
            # What a dead start left (a daemon died, or the launcher failed halfway): clear it first.
            self._stop_session(procs.EXEC_TIMEOUT_S)
            self.sessionfile.unlink(missing_ok=True)
        pid = super()._start_locked(prepare)
        if not self.sessionfile.exists():
            self._write(self.sessionfile, json.dumps({"sid": pid, "argv": self.argv}))
        return pid

    def wait_ready(self, check: Callable[[], bool], timeout: float, what: str = "ready") -> None:
        """As :meth:`ManagedProcess.wait_ready`, then until ``ray start`` has exited and the pidfile names
        the daemon (so that whoever reads the pidfile after ``up`` finds the daemon)."""
        deadline = time.monotonic() + timeout
        super().wait_ready(check, timeout, what)
        while True:
            pid = self.pid()
            if pid is None:
                raise ProcessError(f"{self.name}: ray start exited without its daemons; log tail:\n{self.log_tail()}")
            if not self._is_launcher(pid) or self._is_resident(pid):
                return
            if time.monotonic() >= deadline:
                raise ProcessError(f"{self.name}: ray start still running after {timeout:.0f}s")
            time.sleep(POLL_S)

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop every Ray process of the session (see the module docstring for the order).  True if
        something was stopped."""
        stopped = self._stop_session(timeout)
        self.pidfile.unlink(missing_ok=True)
        self.sessionfile.unlink(missing_ok=True)
        return stopped

    def _stop_session(self, timeout: float) -> bool:
        sid = self._sid()
        members = self.members(sid)
        if sid is None or not members:
            return False
        progs = {p: program_of(self.table.cmdline(p) or []) for p in members}
        launcher = [p for p in members if progs[p] == "ray" and self.table.sid(p) == p]
        log.info("stopping %s: %s", self.name, members, extra={"component": self.name, "pids": members})
        self._terminate(launcher, timeout)
        self._terminate([p for p in members if progs[p] == FIRST], timeout)
        self._terminate([p for p in self.members(sid) if progs.get(p) != LAST], timeout)  # agents, workers...
        self._terminate(self.members(sid), timeout)  # the GCS, and whatever started meanwhile
        return True

    def _terminate(self, pids: list[int], timeout: float) -> None:
        """SIGTERM ``pids``, wait up to :data:`STOP_GRACE_S` (at most ``timeout``), then SIGKILL the
        survivors and wait up to ``timeout`` for them."""
        if not pids:
            return
        for sig, wait in ((signal.SIGTERM, min(STOP_GRACE_S, timeout)), (signal.SIGKILL, timeout)):
            for p in pids:
                self.table.kill(p, sig)
            deadline = time.monotonic() + wait
            pids = [p for p in pids if self.table.cmdline(p) is not None]
            while pids and time.monotonic() < deadline:
                time.sleep(POLL_S)
                pids = [p for p in pids if self.table.cmdline(p) is not None]
            if not pids:
                return
            left = {p: program_of(self.table.cmdline(p) or []) for p in pids}
            log.log(logging.INFO if sig == signal.SIGTERM else logging.WARNING, "%s: %s survived %s",
                    self.name, left, sig.name, extra={"pids": pids})
