"""Run an ASGI app with uvicorn on several addresses, in a background thread."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from typing import Any

import uvicorn

from minik8s.apiserver.spdy_upgrade import UpgradingHttpProtocol
from minik8s.auth.x509 import PeerCertMixin, PeerCertWebSocketProtocol

log = logging.getLogger("minik8s.apiserver")

START_TIMEOUT_S = 30.0
POLL_S = 0.05


def bind_sockets(hosts: list[str], port: int) -> list[socket.socket]:
    socks = []
    for host in hosts:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(1024)
        s.set_inheritable(True)
        socks.append(s)
    return socks


class ApiHttpProtocol(PeerCertMixin, UpgradingHttpProtocol):
    """kubectl's SPDY upgrades, and the client certificate of the connection in every request's scope."""


def no_session_tickets(config: uvicorn.Config) -> None:
    """TLS 1.3 servers send session tickets right after the handshake. A client that reads on one thread
    while it writes its first request on another (websockets' sync client: `minik8s exec`/`cp`; the
    `kubernetes` client's stream()) then drives one SSL object from two threads at once, which Python's
    ssl does not support: about one upgrade in fifty hung with the request lost. minik8s clients never
    resume sessions, so the server sends none (`SSLContext.num_tickets`)."""
    if config.ssl_certfile:
        config.load()  # makes config.ssl; uvicorn's serve() skips a config already loaded
        if config.ssl is not None:
            config.ssl.num_tickets = 0


class ServerThread:
    """uvicorn in a daemon thread; `start()` returns once it accepts connections."""

    def __init__(self, app: Any, hosts: list[str], port: int, name: str = "http", tls_cert: str | None = None,
                 tls_key: str | None = None, client_ca: str | None = None) -> None:
        """`client_ca`: ask TLS clients for a certificate chaining to this CA (optional for them: bearer
        tokens still work); the verified one is in each request's scope (minik8s.auth.x509)."""
        self.hosts, self.port, self.name = hosts, port, name
        # loop "auto" and the httptools parser: uvloop and httptools (dependencies), half the CPU per request
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                                    timeout_graceful_shutdown=1, ssl_certfile=tls_cert,
                                                    http=ApiHttpProtocol, ws=PeerCertWebSocketProtocol,
                                                    ssl_keyfile=tls_key, ssl_ca_certs=client_ca,
                                                    ssl_cert_reqs=ssl.CERT_OPTIONAL if client_ca else ssl.CERT_NONE))
        no_session_tickets(self.server.config)
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        socks = bind_sockets(self.hosts, self.port)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": socks}, name=self.name,
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} server did not start on {self.hosts}:{self.port}")
            time.sleep(POLL_S)
        log.info("serving", extra={"server": self.name, "hosts": self.hosts, "port": self.port})

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread:
            self.thread.join(timeout=5)

    def alive(self) -> bool:
        return bool(self.thread and self.thread.is_alive() and self.server.started)
