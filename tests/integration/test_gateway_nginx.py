"""A real Debian nginx running a rendered gateway config in front of two fake upstreams on 127.0.0.x.

Routing by host and longest path prefix, stripping and keepPrefix, X-Forwarded-*, 503 for a
missing Service until it appears, and a reload under a request loop that drops nothing.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from minik8s.gateway import config as gw
from minik8s.gateway.localrun import LocalNginx
from tests.conftest import free_port, requires

pytestmark = requires("nginx")


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.dumps({"name": self.server.name, "path": self.path,  # type: ignore[attr-defined]
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        return


def start_echo(host: str, name: str) -> ThreadingHTTPServer:
    srv = ThreadingHTTPServer((host, free_port()), Echo)
    srv.daemon_threads = True
    srv.name = name  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def upstreams() -> Iterator[dict[str, ThreadingHTTPServer]]:
    servers = {"web": start_echo("127.0.0.2", "web"), "api": start_echo("127.0.0.3", "api")}
    yield servers
    for s in servers.values():
        s.shutdown()
        s.server_close()


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[LocalNginx]:
    n = LocalNginx(tmp_path, f"127.0.0.1:{free_port()}")
    yield n
    n.stop()


def backend(srv: ThreadingHTTPServer) -> gw.Backend:
    host, port = srv.server_address[:2]
    return gw.Backend(str(host), (int(port),), 1)


def port_of(srv: ThreadingHTTPServer) -> int:
    return int(srv.server_address[1])


def get(n: LocalNginx, host: str, path: str) -> tuple[int, Any]:
    addr, port = n.options.listen.rsplit(":", 1)
    conn = http.client.HTTPConnection(addr, int(port), timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, json.loads(body) if resp.getheader("Content-Type") == "application/json" else body
    finally:
        conn.close()


def shop(ups: dict[str, ThreadingHTTPServer], extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return [{"metadata": {"name": "shop", "namespace": "default", "creationTimestamp": "2024-01-01T00:00:00Z"},
             "spec": {"host": "shop.example.com", "paths": [
                 {"path": "/", "service": "web", "port": port_of(ups["web"])},
                 {"path": "/api", "service": "api", "port": port_of(ups["api"])},
                 {"path": "/api/raw", "service": "api", "port": port_of(ups["api"]), "keepPrefix": True},
                 {"path": "/later", "service": "later", "port": 80},
                 *(extra or [])]}}]


def test_routes_strip_headers_and_503(upstreams: dict[str, ThreadingHTTPServer], nginx: LocalNginx) -> None:
    backends = {("default", "web"): backend(upstreams["web"]), ("default", "api"): backend(upstreams["api"])}
    nginx.start(gw.render(shop(upstreams), backends, nginx.options))

    status, body = get(nginx, "shop.example.com", "/api/v1/items?x=1")
    assert status == 200 and body["name"] == "api" and body["path"] == "/v1/items?x=1"
    assert body["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert body["headers"]["x-forwarded-host"] == "shop.example.com"
    assert body["headers"]["x-forwarded-proto"] == "http"
    assert body["headers"]["host"] == "shop.example.com"
    assert get(nginx, "shop.example.com", "/api")[1]["path"] == "/"
    # longest prefix wins, and keepPrefix forwards the URI as it came
    status, body = get(nginx, "shop.example.com", "/api/raw/z")
    assert status == 200 and body["name"] == "api" and body["path"] == "/api/raw/z"
    # element-wise prefixes: /apix is not under /api, so "/" (web) serves it
    status, body = get(nginx, "shop.example.com", "/apix")
    assert status == 200 and body["name"] == "web" and body["path"] == "/apix"
    assert get(nginx, "SHOP.example.com:80", "/")[1]["name"] == "web"
    status, body = get(nginx, "shop.example.com", "/later/x")
    assert status == 503 and b"default/later does not exist" in body
    assert get(nginx, "other.example.com", "/api")[0] == 404

    # the Service appears: the next rendering routes it
    backends[("default", "later")] = gw.Backend("127.0.0.2", (port_of(upstreams["web"]),), 1)
    docs = shop(upstreams)
    docs[0]["spec"]["paths"][3]["port"] = port_of(upstreams["web"])
    nginx.reload(gw.render(docs, backends, nginx.options))
    deadline_ok = False
    for _ in range(100):
        status, body = get(nginx, "shop.example.com", "/later/x")
        if status == 200:
            deadline_ok = body["path"] == "/x"
            break
        threading.Event().wait(0.05)
    assert deadline_ok


def test_reload_under_load_drops_nothing(upstreams: dict[str, ThreadingHTTPServer], nginx: LocalNginx) -> None:
    backends = {("default", "web"): backend(upstreams["web"]), ("default", "api"): backend(upstreams["api"])}
    nginx.start(gw.render(shop(upstreams), backends, nginx.options))
    failures: list[str] = []
    counts = {"ok": 0}
    stop = threading.Event()

    def loop() -> None:
        for _ in range(5000):  # bounded
            if stop.is_set():
                return
            try:
                status, body = get(nginx, "shop.example.com", "/api/ping")
                if status != 200 or body["name"] != "api":
                    failures.append(f"{status}")
                else:
                    counts["ok"] += 1
            except (OSError, http.client.HTTPException) as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for th in threads:
        th.start()
    for i in range(10):  # ten config changes, each a graceful reload
        extra = [{"path": f"/v{i}", "service": "web", "port": port_of(upstreams["web"])}]
        nginx.reload(gw.render(shop(upstreams, extra), backends, nginx.options))
        threading.Event().wait(0.1)
    stop.set()
    for th in threads:
        th.join(30)
    assert counts["ok"] > 50
    assert failures == []
    assert get(nginx, "shop.example.com", "/v9/a")[1]["path"] == "/a"
