"""Shared fixtures: a real etcd (temp dir, free ports) and a real API server in-process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ETCD_START_TIMEOUT_S = 20.0
TEST_TOKEN = "test-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def etcd_endpoint() -> Iterator[str]:
    if not shutil.which("etcd"):
        pytest.fail("etcd is not installed: run `make install` (Debian package etcd-server)")
    data = Path(tempfile.mkdtemp(prefix="minik8s-etcd-"))
    client_port, peer_port = free_port(), free_port()
    url = f"http://127.0.0.1:{client_port}"
    proc = subprocess.Popen(
        ["etcd", "--data-dir", str(data / "data"), "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
         "--initial-cluster", f"default=http://127.0.0.1:{peer_port}"],
        stdout=subprocess.DEVNULL, stderr=open(data / "etcd.log", "wb"), env={**os.environ, "ETCD_NAME": "default"})
    deadline = time.monotonic() + ETCD_START_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"etcd did not start: {(data / 'etcd.log').read_text()[-2000:]}")
        time.sleep(0.1)
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
