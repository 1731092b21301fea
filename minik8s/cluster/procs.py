"""Detached, pidfile-managed daemons (etcd, registry, dockerd, raylets).

Each :class:`ManagedProcess` is started as the leader of a new session (``setsid``), so it outlives
the ``minik8s`` process that started it and is never hit by its signals. Its pid is kept in
``<state>/run/<name>.pid`` and its output in ``<state>/logs/<name>.log``. ``start`` is idempotent (a
live process named in the pidfile is adopted), and ``stop`` ends the whole session the process
leads, so helpers it forked (dockerd's containerd) go with it. Ray's ``ray start`` exits once its
daemons run: :mod:`.rayproc` tracks those. The cleanup helpers below find what a daemon leaves when
it dies badly: mounts under its dirs, processes naming its dirs, and processes of its containers.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

#: How long a started child may take to exec into its program (nsenter, then the daemon).
EXEC_TIMEOUT_S = 10.0
EXEC_POLL_S = 0.01

NETNS_DIR = Path("/var/run/netns")
MNT_DETACH = 2
#: cgroup v1 hierarchies; dockerd's cgroupfs driver puts containers in ``<hierarchy>/docker/<id>``.
CGROUP_ROOT = Path("/sys/fs/cgroup")
ORPHAN_KILL_WAIT_S = 5.0
#: Programs our daemons start in sessions of their own, found by the dirs they name.
DAEMON_HELPER_PREFIXES = ("containerd", "dockerd", "docker-proxy", "runc", "raylet", "gcs_server", "ray")
#: How often ``wait_ready`` / ``stop`` poll.
POLL_INTERVAL_S = 0.1
#: How many trailing log lines an error message quotes.
LOG_TAIL_LINES = 20


class ProcessError(RuntimeError):
    """A managed process died or did not become ready in time."""


# ---- /proc helpers ---------------------------------------------------------------------------------


def _read_stat(pid: int) -> tuple[str, int] | None:
    """(state, session id) of ``pid`` from /proc/PID/stat, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return rest[0], int(rest[3])


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    st = _read_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _all_pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def session_members(sid: int) -> list[int]:
    """Live processes whose session id is ``sid`` (the leader included, if alive)."""
    out = []
    for pid in _all_pids():
        st = _read_stat(pid)
        if st is not None and st[1] == sid and st[0] not in ("Z", "X"):
            out.append(pid)
    return out


def pids_with_arg_containing(needle: str) -> list[int]:
    """Live processes with an argument containing ``needle`` (e.g. a state-dir path), self excluded."""
    me = os.getpid()
    out = []
    for pid in _all_pids():
        if pid == me:
            continue
        args = cmdline(pid)
        if args and any(needle in a for a in args) and pid_alive(pid):
            out.append(pid)
    return out


def pids_in_cgroups(names: set[str]) -> list[int]:
    """Live processes in a cgroup whose last path component is in ``names`` (any hierarchy).

    Docker names a container's cgroup after its id, so this finds a container's processes
    even when its dockerd, containerd and shim are gone.
    """
    out = []
    for pid in _all_pids():
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if any(line.rsplit("/", 1)[-1] in names for line in lines) and pid_alive(pid):
            out.append(pid)
    return out


def clear_stale_pidfile(path: Path) -> None:
    """Remove a daemon's own pidfile whose pid is dead (dockerd refuses to start while it exists)."""
    try:
        pid = int(path.read_text().strip())
    except FileNotFoundError:
        return
    except ValueError:
        pid = None
    if pid is None or not pid_alive(pid):
        log.info("removing stale pidfile %s", path, extra={"path": str(path)})
        path.unlink(missing_ok=True)


def kill_pids(pids: Sequence[int], timeout: float, what: str) -> None:
    """SIGTERM ``pids``, wait up to ``timeout``, then SIGKILL the survivors."""
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    left = [p for p in pids if pid_alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
        left = [p for p in left if pid_alive(p)]
    if left:
        log.warning("SIGKILL %s survivors %s", what, left, extra={"pids": left})
        _signal_all(left, signal.SIGKILL)


def _signal_all(pids: Sequence[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


# ---- leftovers: mounts, processes, containers -------------------------------------------------


def _mounts_under(path: Path) -> list[str]:
    root = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            # mountinfo escapes space, tab, newline and backslash as octal.
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return found


def unmount_under(path: Path) -> int:
    """Lazily unmount every mount at or below ``path``, deepest first.  Returns how many."""
    libc = ctypes.CDLL(None, use_errno=True)
    points = sorted(set(_mounts_under(path)), key=lambda p: p.count("/"), reverse=True)
    for point in points:
        if libc.umount2(point.encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            log.warning("umount %s failed: %s", point, os.strerror(err), extra={"mount": point})
        else:
            log.info("unmounted %s", point, extra={"mount": point})
    return len(points)


def _is_daemon_helper(args: list[str]) -> bool:
    """Is this one of the helpers our daemons spawn (so never a user's ``tail -f`` on a log)?"""
    progs = [os.path.basename(a) for a in args[:2]]
    return any(p.startswith(DAEMON_HELPER_PREFIXES) for p in progs) or any(
        "/site-packages/ray/" in a for a in args[:2]
    )


def kill_processes_using(directory: Path, timeout: float) -> None:
    """Stop daemon helpers outside the daemon's session that name its dirs: containerd and its
    shims (they run in sessions of their own), and stray Ray processes."""
    dirs = {str(directory), os.path.realpath(directory)}
    found = {p for d in dirs for p in pids_with_arg_containing(d + "/")}
    pids = sorted(p for p in found if _is_daemon_helper(cmdline(p) or []))
    if pids:
        log.warning("stopping leftover processes using %s: %s", directory, pids, extra={"pids": pids})
        kill_pids(pids, timeout, str(directory))


def kill_orphan_containers(data_root: Path) -> None:
    """Kill processes of containers whose dockerd is gone, and remove their empty cgroups.

    Normally dockerd removed them all; this covers a dockerd that crashed or was killed (its
    shims may be gone too, but container processes live on in their own pid namespaces).
    """
    cdir = data_root / "containers"
    ids = {d.name for d in cdir.iterdir()} if cdir.is_dir() else set()
    if not ids:
        return
    pids = pids_in_cgroups(ids)
    if pids:
        log.warning("killing processes of orphaned containers under %s: %s", data_root, pids)
        # Nobody will reap state for them any more: no grace period is useful.
        kill_pids(pids, 0.0, "orphaned containers")
        deadline = time.monotonic() + ORPHAN_KILL_WAIT_S
        while pids_in_cgroups(ids) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_S)
    for cid in ids:
        for cg in CGROUP_ROOT.glob(f"*/docker/{cid}"):
            try:
                cg.rmdir()
            except OSError as e:
                log.warning("cannot remove cgroup %s: %s", cg, e)


# ---- the managed process ---------------------------------------------------------------------------


@dataclass
class ManagedProcess:
    """A daemon started detached, optionally inside a network namespace, tracked by a pidfile."""

    name: str
    """Unique within the state dir; names the pidfile and the log (``/`` is allowed, becomes ``_``)."""
    argv: list[str]
    state_dir: Path
    netns: str | None = None
    """Run inside ``/var/run/netns/<netns>`` (entered with ``nsenter --net``, which keeps /sys)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Added to the caller's environment."""
    cwd: Path | None = None
    program: str | None = None
    """What identifies the process among its first arguments; None: the basename of ``argv[0]``.  Set it
    for ``python -m MODULE`` (the interpreter's path differs between a venv's ``python`` and ``python3``)."""

    @property
    def _slug(self) -> str:
        return self.name.replace("/", "_")

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "run" / f"{self._slug}.pid"

    @property
    def logfile(self) -> Path:
        return self.state_dir / "logs" / f"{self._slug}.log"

    # -- identity -------------------------------------------------------------------------------

    def _read_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _is_ours(self, pid: int) -> bool:
        """Does ``pid`` run our program?  Guards against pid reuse after a reboot or crash.

        Interpreters put themselves first (``python …/ray start``, ``python -m MODULE``), so the
        program is looked for among the first three arguments.  Other arguments may differ (the
        config changed while it ran): that is still our daemon (see :meth:`start`).
        """
        args = cmdline(pid)
        if not args or not pid_alive(pid):
            return False
        prog = self.program or os.path.basename(self.argv[0])
        return prog in (os.path.basename(a) for a in args[:3])

    def _same_args(self, pid: int) -> bool:
        args = cmdline(pid) or []
        n = len(self.argv) - 1
        return n == 0 or args[-n:] == self.argv[1:]

    def matches_config(self) -> bool:
        """Is our process running with exactly the configured arguments?  False if it is not running."""
        pid = self.pid()
        return pid is not None and self._same_args(pid)

    def pid(self) -> int | None:
        """The pid of our live process, or None."""
        pid = self._read_pid()
        return pid if pid is not None and self._is_ours(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    # -- lifecycle ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _start_lock(self) -> Iterator[None]:
        """Serialise starts across processes (``up`` and a node's supervisor may both find it down)."""
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        with open(self.pidfile.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def start(self, prepare: Callable[[], None] | None = None) -> int:
        """Start the process unless ours is already running (then adopt it).  Returns its pid.

        ``prepare`` runs only when a new process is about to start, under the same lock as the
        start itself: the place to clear what a dead predecessor left (stale pidfiles).
        """
        with self._start_lock():
            return self._start_locked(prepare)

    def _start_locked(self, prepare: Callable[[], None] | None) -> int:
        pid = self.pid()
        if pid is not None:
            log.info("adopting %s (pid %d)", self.name, pid, extra={"component": self.name, "pid": pid})
            if not self._same_args(pid):
                log.warning(
                    "%s (pid %d) runs with other arguments than configured; restart it to apply",
                    self.name, pid, extra={"component": self.name, "pid": pid},
                )
            return pid
        if prepare is not None:
            prepare()
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        argv = list(self.argv)
        if self.netns is not None:
            ns_path = NETNS_DIR / self.netns
            if not ns_path.exists():
                raise ProcessError(f"{self.name}: network namespace {self.netns} does not exist")
            # nsenter execs the program (no fork for --net), so the pid we get is the daemon's.
            argv = ["nsenter", f"--net={ns_path}", "--", *argv]
        env = {**os.environ, **self.env}
        with open(self.logfile, "ab") as logf:
            logf.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {argv}\n".encode())
            logf.flush()
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                env=env, cwd=self.cwd, start_new_session=True, close_fds=True,
            )
        # Reap it if it dies while we live (a long-lived caller would otherwise keep a zombie).
        threading.Thread(target=proc.wait, name=f"reap-{self._slug}", daemon=True).start()
        self.pidfile.write_text(f"{proc.pid}\n")
        # Until the child has exec'd (through nsenter, when in a netns) its command line is not yet
        # our program's, and running() would call it dead: wait for the exec, or for its exit.
        deadline = time.monotonic() + EXEC_TIMEOUT_S
        while not self._is_ours(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(EXEC_POLL_S)
        log.info("started %s (pid %d)", self.name, proc.pid, extra={"component": self.name, "pid": proc.pid})
        return proc.pid

    def stop(self, timeout: float = 15.0) -> bool:
        """SIGTERM the process, wait up to ``timeout``, then SIGKILL everything left in its session.

        Returns True if something was stopped.  A pidfile naming a pid that is now some other
        program is only removed: that process and its session are not ours.
        """
        pid = self._read_pid()
        if pid is None:
            return False
        stopped = False
        leader_alive = pid_alive(pid)
        if leader_alive and not self._is_ours(pid):
            log.warning("%s: pid %d is not ours any more; leaving it", self.name, pid)
        else:
            if leader_alive:
                log.info("stopping %s (pid %d)", self.name, pid, extra={"component": self.name, "pid": pid})
                _signal_all([pid], signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(POLL_INTERVAL_S)
                stopped = True
            # The session outlives its leader: children the leader failed to stop are still in it.
            left = session_members(pid)
            if left:
                log.warning("SIGKILL %s session %d: %s", self.name, pid, left, extra={"pids": left})
                _signal_all(left, signal.SIGKILL)
                deadline = time.monotonic() + timeout
                while any(pid_alive(p) for p in left) and time.monotonic() < deadline:
                    time.sleep(POLL_INTERVAL_S)
                stopped = True
        self.pidfile.unlink(missing_ok=True)
        return stopped

    def wait_ready(self, check: Callable[[], bool], timeout: float, what: str = "ready") -> None:
        """Poll ``check`` until it returns True.  Raises :class:`ProcessError` with the log's tail
        if the process dies first or ``timeout`` passes.  Exceptions from ``check`` count as False.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except Exception as e:  # noqa: BLE001 - any failure of a probe means "not yet"
                log.debug("%s not %s yet: %s", self.name, what, e)
            if not self.running():
                raise ProcessError(f"{self.name} exited before it was {what}; log tail:\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise ProcessError(
                    f"{self.name} not {what} after {timeout:.0f}s; log tail:\n{self.log_tail()}"
                )
            time.sleep(POLL_INTERVAL_S)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


# ---- memory footprint ----------------------------------------------------------------------------


def pss_bytes(pid: int) -> int:
    """Proportional set size of ``pid`` (shared pages divided among their users), 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        pass
    return 0


def _parent(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return int(raw[raw.rindex(")") + 2 :].split()[1])


def in_container(pid: int) -> bool:
    """Whether ``pid`` runs in a Docker container (cgroupfs: ``.../docker/<id>``; systemd: ``docker-<id>.scope``)."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return "/docker/" in text or "/docker-" in text


def process_trees(roots: Mapping[str, int | Sequence[int]]) -> dict[str, list[int]]:
    """Each named root pid (or pids) with all its descendants, leaving out container processes (a pod's are
    not the cluster's own). A pid under two roots goes to the nearest."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        parent = _parent(pid)
        if parent is not None:
            children.setdefault(parent, []).append(pid)
    owner: dict[int, str] = {}
    depth: dict[int, int] = {}
    for name, root in roots.items():
        stack = [(r, 0) for r in ([root] if isinstance(root, int) else root)]
        while stack:
            pid, d = stack.pop()
            if pid in depth and depth[pid] <= d:
                continue
            if in_container(pid):
                continue
            owner[pid], depth[pid] = name, d
            stack.extend((c, d + 1) for c in children.get(pid, []))
    trees: dict[str, list[int]] = {name: [] for name in roots}
    for pid, name in owner.items():
        if pid_alive(pid):
            trees[name].append(pid)
    return trees
