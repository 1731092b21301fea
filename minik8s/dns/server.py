"""The DNS server: UDP and TCP on each listen address, answering from the current snapshot.

One asyncio loop in its own thread; `set_snapshot` (from any thread) swaps the snapshot
reference, which is atomic, so a query sees either the old records or the new ones.
Nothing is ever forwarded: a name we do not hold is NXDOMAIN at once.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import struct
import threading
from dataclasses import dataclass, field
from typing import cast

from minik8s.dns.records import MAX_UDP_PAYLOAD, Snapshot

log = logging.getLogger("minik8s.dns")

TCP_LENGTH = struct.Struct("!H")


@dataclass
class DnsConfig:
    """Defaults for the cluster DNS server (the DnsActor overrides `listen`)."""

    #: "host:port" pairs; each gets a UDP and a TCP socket. Never a wildcard address.
    listen: list[str] = field(default_factory=lambda: ["127.0.0.1:53"])
    domain: str = "cluster.local"
    ttl: int = 5
    #: DNS objects' hosts resolve to this Service's ClusterIP ("namespace/name").
    gateway_service: str = "kube-system/gateway"
    #: a TCP client that sends nothing for this long is dropped
    tcp_idle_s: float = 10.0
    #: the last N questions are kept (`DnsServer.recent`) so tests and benchmarks can count queries
    recent_queries: int = 1000
    resync_s: float = 30.0


PORT_ZERO_TRIES = 20


def split_hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.server.handle(data, MAX_UDP_PAYLOAD)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class DnsServer:
    def __init__(self, config: DnsConfig | None = None, snapshot: Snapshot | None = None) -> None:
        self.config = config or DnsConfig()
        self.snapshot = snapshot or Snapshot(domain=self.config.domain, ttl=self.config.ttl)
        self.queries = 0
        self.recent: collections.deque[bytes] = collections.deque(maxlen=self.config.recent_queries)
        self.bound: list[tuple[str, int]] = []  # (host, port) actually bound, for port 0 in tests
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._closers: list[asyncio.BaseTransport | asyncio.base_events.Server] = []

    # --- data path ------------------------------------------------------------------------
    def set_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def handle(self, data: bytes, max_len: int | None) -> bytes | None:
        self.queries += 1
        self.recent.append(data[12:])
        try:
            return self.snapshot.respond(data, max_len)
        except Exception:  # a malformed packet dnslib rejects must not stop the server
            log.debug("unparseable query dropped", exc_info=True)
            return None

    def recent_names(self) -> list[str]:
        """The names of the recent questions (lowercase, dotted), oldest first."""
        out = []
        for q in list(self.recent):
            labels, i = [], 0
            while i < len(q) and q[i]:
                labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace").lower())
                i += q[i] + 1
            out.append(".".join(labels))
        return out

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), self.config.tcp_idle_s)
                data = await asyncio.wait_for(reader.readexactly(TCP_LENGTH.unpack(head)[0]), self.config.tcp_idle_s)
                reply = self.handle(data, None)
                if reply is None:
                    break
                writer.write(TCP_LENGTH.pack(len(reply)) + reply)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away or went quiet: nothing to report
        finally:
            writer.close()

    # --- lifecycle -------------------------------------------------------------------------
    async def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        for item in self.config.listen:
            host, wanted = split_hostport(item)
            # Port 0 (tests): TCP takes the port UDP got, which a TCP socket may already hold;
            # then both are tried again on another port. A fixed port fails at once.
            for attempt in range(1 if wanted else PORT_ZERO_TRIES):
                transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(host, wanted))
                port = transport.get_extra_info("sockname")[1]
                try:
                    tcp = await asyncio.start_server(self._tcp, host, port, reuse_address=True)
                except OSError as exc:
                    transport.close()
                    if wanted or exc.errno != errno.EADDRINUSE or attempt == PORT_ZERO_TRIES - 1:
                        raise
                    continue
                self._closers += [transport, tcp]
                break
            self.bound.append((host, port))
            log.info("dns listening", extra={"host": host, "port": port})

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._bind())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            for c in self._closers:
                c.close()
            loop.close()

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="dns-server", daemon=True)
        self._thread.start()
        self._ready.wait(timeout)
        if self._error is not None:
            raise self._error

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._error is None

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
