"""Shared fixtures: a real etcd (temp dir, free ports) and a real API server in-process."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ETCD_START_TIMEOUT_S = 20.0
TEST_TOKEN = "test-token-0123456789"


def free_port() -> int:
    """An ephemeral loopback port (so always outside Ray's worker-port range, 10002-19999)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def wait_for(cond: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll `cond` until it returns something truthy, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def start_etcd(data: Path, name: str, client_port: int, peer_port: int,
               initial_cluster: str | None = None) -> subprocess.Popen[bytes]:
    """One etcd member on 127.0.0.1 with its data and log under `data`; the caller stops it by PID.
    `initial_cluster` (name=peerURL,...) makes it a member of a new multi-member cluster."""
    if not shutil.which("etcd"):
        pytest.fail("etcd is not installed: run `make install` (Debian package etcd-server)")
    url, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    log = data / f"{name}.log"
    return subprocess.Popen(
        ["etcd", "--name", name, "--data-dir", str(data / name), "--listen-client-urls", url,
         "--advertise-client-urls", url, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
         "--initial-cluster", initial_cluster or f"{name}={peer}", "--initial-cluster-state", "new"],
        stdout=subprocess.DEVNULL, stderr=open(log, "wb"))


def wait_etcd_healthy(url: str, procs: list[subprocess.Popen[bytes]], data: Path) -> None:
    """Until `url` reports healthy (a member with a leader); kills `procs` if it does not in time."""
    deadline = time.monotonic() + ETCD_START_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            logs = "".join(f.read_text()[-1000:] for f in sorted(data.glob("*.log")))
            raise RuntimeError(f"etcd did not start: {logs}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def etcd_endpoint() -> Iterator[str]:
    data = Path(tempfile.mkdtemp(prefix="minik8s-etcd-"))
    client_port = free_port()
    url = f"http://127.0.0.1:{client_port}"
    proc = start_etcd(data, "default", client_port, free_port())
    wait_etcd_healthy(url, [proc], data)
    yield url
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def apiserver(etcd_endpoint: str) -> Iterator[str]:
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    port = free_port()
    # a wide pod network so each test module can give its nodes their own /24s
    api = ApiServer(ApiServerConfig(etcd_endpoints=[etcd_endpoint], token=TEST_TOKEN, port=port, pod_cidr="10.0.0.0/8"))
    server = ServerThread(api.app, ["127.0.0.1"], port, name="test-apiserver")
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def client(apiserver: str):  # type: ignore[no-untyped-def]
    from minik8s import Client

    c = Client(apiserver, TEST_TOKEN)
    yield c
    c.close()
