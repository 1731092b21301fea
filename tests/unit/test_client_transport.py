"""The SDK's keep-alive transport against a real HTTP server on 127.0.0.1 (stdlib, in a thread)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from minik8s import errors
from minik8s.client import transport
from minik8s.client.sdk import Client
from minik8s.client.transport import Transport, TransportError


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def _stream(self) -> None:
        """A watch: chunked JSON lines, split across chunks as a real server may, then (maybe) an ERROR."""
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w", "namespace": "default"},
               "spec": {"containers": [{"name": "a", "image": "busybox"}]}}
        lines = [json.dumps({"type": "ADDED", "object": pod}).encode() + b"\n", b"\n",
                 json.dumps({"type": "MODIFIED", "object": pod}).encode() + b"\n"]
        if "gone" in self.path:
            lines.append(json.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                                                 "message": "too old resource version: 1"}}).encode()
                         + b"\n")
        data = b"".join(lines)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(data), 37):
            part = data[i:i + 37]
            self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def _answer(self) -> None:
        if self.path.startswith("/api/v1/namespaces/default/pods?watch"):
            self._stream()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server: Any = self.server
        server.seen.append({"method": self.command, "path": self.path, "body": body,
                            "auth": self.headers.get("Authorization"), "ctype": self.headers.get("Content-Type"),
                            "peer": self.client_address[1]})
        status = 404 if self.path.startswith("/missing") else 200
        out = json.dumps({"kind": "Status", "code": 404, "reason": "NotFound", "message": "nope"} if status == 404
                         else {"path": self.path}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
        if self.path.startswith("/close"):
            self.close_connection = True

    do_GET = do_POST = do_PATCH = _answer

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def server() -> Iterator[Any]:
    srv: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.seen = []
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv: Any) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


def test_reuses_one_connection_and_sends_headers_query_and_body(server: Any) -> None:
    tr = Transport(_url(server), {"Authorization": "Bearer t"}, timeout=5)
    for i in range(3):
        resp = tr.request("POST", "/api/v1/x", params={"watch": True, "n": i, "skip": None}, body=b'{"a":1}',
                          headers={"Content-Type": "application/json"})
        assert resp.status == 200
    tr.close()
    assert [s["path"] for s in server.seen] == [f"/api/v1/x?watch=true&n={i}" for i in range(3)]
    assert {s["peer"] for s in server.seen} == {server.seen[0]["peer"]}  # one keep-alive connection
    assert all(s["auth"] == "Bearer t" and s["body"] == b'{"a":1}' for s in server.seen)


def test_a_connection_the_server_closed_is_not_reused(server: Any) -> None:
    tr = Transport(_url(server), {}, timeout=5)
    assert tr.request("GET", "/close").status == 200  # the server closes after answering
    assert tr.request("GET", "/after").status == 200
    assert server.seen[0]["peer"] != server.seen[1]["peer"]


def test_an_idle_connection_closed_by_the_server_is_replaced(server: Any) -> None:
    tr = Transport(_url(server), {}, timeout=5)
    tr.request("GET", "/first")
    conn, _ = tr._idle[0]
    assert conn.sock is not None
    conn.sock.shutdown(socket.SHUT_RDWR)  # as if the server had timed the idle connection out
    assert tr.request("GET", "/second").status == 200
    assert len(server.seen) == 2 and server.seen[1]["path"] == "/second"


def test_stale_connections_past_the_idle_timeout_are_dropped(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tr = Transport(_url(server), {}, timeout=5)
    tr.request("GET", "/a")
    monkeypatch.setattr(transport, "IDLE_TIMEOUT_S", 0.0)
    tr.request("GET", "/b")
    assert server.seen[0]["peer"] != server.seen[1]["peer"]


def test_unreachable_server_is_a_transport_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        tr = Transport(f"http://127.0.0.1:{port}", {}, timeout=2)
        with pytest.raises(TransportError):
            tr.request("GET", "/")


def test_bad_server_address_is_rejected() -> None:
    with pytest.raises(errors.BadRequest, match=r"must be http\(s\)://HOST\[:PORT\], not '127.0.0.1:6443'"):
        Client("127.0.0.1:6443")


def test_client_maps_statuses_and_errors(server: Any) -> None:
    c = Client(_url(server), "tok")
    assert c.request("GET", "/ok", params={"labelSelector": "a=b"}) == {"path": "/ok?labelSelector=a%3Db"}
    c.request("PATCH", "/p", content='{"x":1}', headers={"Content-Type": "application/merge-patch+json"})
    assert server.seen[-1]["ctype"] == "application/merge-patch+json" and server.seen[-1]["body"] == b'{"x":1}'
    c.request("POST", "/j", json={"é": [1, 2]})
    assert server.seen[-1]["ctype"] == "application/json" and json.loads(server.seen[-1]["body"]) == {"é": [1, 2]}
    with pytest.raises(errors.NotFound, match="nope"):
        c.request("GET", "/missing")
    c.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = Client(f"http://127.0.0.1:{s.getsockname()[1]}", None, timeout=2)
        with pytest.raises(errors.Unavailable, match="cannot reach the API server"):
            dead.get("Pod", "x")


def test_a_dead_connection_that_looked_alive_is_retried_once_on_a_new_one(server: Any,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    tr = Transport(_url(server), {}, timeout=5)
    tr.request("GET", "/first")
    conn, _ = tr._idle[0]
    assert conn.sock is not None
    conn.sock.shutdown(socket.SHUT_RDWR)
    monkeypatch.setattr(transport, "_readable", lambda _conn: False)  # closed between the check and the send
    assert tr.request("POST", "/second", body=b"{}").status == 200
    assert [s["path"] for s in server.seen] == ["/first", "/second"]  # sent once, not twice


def test_watch_reads_chunked_lines_into_events_and_maps_errors(server: Any) -> None:
    c = Client(_url(server), "tok")
    events = list(c.watch("Pod", "default", "5"))
    assert [(e.type, e.object.metadata.name) for e in events] == [("ADDED", "w"), ("MODIFIED", "w")]
    with pytest.raises(errors.Gone, match="too old resource version"):
        list(c.watch("Pod", "default", "5", label_selector="gone=1"))
    c.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = Client(f"http://127.0.0.1:{s.getsockname()[1]}", None, timeout=2)
        with pytest.raises(errors.Unavailable, match="watch on pods broke"):
            list(dead.watch("Pod", "default"))
