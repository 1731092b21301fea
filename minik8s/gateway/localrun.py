"""Run a real nginx with a rendered gateway config on this machine (tests and benchmarks).

Its own prefix, pid file, temp paths and listen address; stopped by its PID, never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from minik8s.gateway import config as gw

START_TIMEOUT_S = 10.0
POLL_S = 0.02


class LocalNginx:
    def __init__(self, workdir: Path, listen: str, workers: str = "1") -> None:
        self.dir = workdir
        self.conf = workdir / "nginx.conf"
        self.pid_file = workdir / "nginx.pid"
        self.options = gw.RenderOptions(listen=listen, pid=str(self.pid_file), error_log=str(workdir / "error.log"),
                                        user=None, worker_processes=workers, temp_dir=str(workdir / "tmp"))
        self.pid: int | None = None

    @staticmethod
    def binary() -> str | None:
        return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)

    def write(self, text: str) -> None:
        tmp = self.conf.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.conf)

    def _run(self, *args: str) -> None:
        nginx = self.binary()
        if nginx is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
        proc = subprocess.run([nginx, "-p", str(self.dir), "-c", str(self.conf), *args], capture_output=True,
                              text=True, timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"nginx {' '.join(args)} failed: {proc.stderr.strip()}")

    def start(self, text: str) -> None:
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir / "tmp", 0o777)  # workers may run as nobody
        (self.dir / "logs").mkdir(exist_ok=True)  # nginx opens <prefix>/logs/error.log before reading the config
        self.write(text)
        self._run("-t", "-q")
        self._run()  # daemonises; the master writes its pid file
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.pid_file.exists() or not self.pid_file.read_text().strip():
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {(self.dir / 'error.log').read_text()[-2000:]}")
            time.sleep(POLL_S)
        self.pid = int(self.pid_file.read_text())

    def reload(self, text: str) -> None:
        """Check the new config, then SIGHUP the master: what the pod's loop does with `nginx -s reload`."""
        self.write(text)
        self._run("-t", "-q")
        assert self.pid is not None
        os.kill(self.pid, signal.SIGHUP)

    def stop(self) -> None:
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGQUIT)  # graceful; workers follow their master
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                os.kill(self.pid, 0)
                time.sleep(POLL_S)
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.pid = None
