"""Cluster DNS benchmark: queries/s and latency for a cluster name, and queries per lookup.

(a) closed-loop UDP load from `--clients` processes (each keeps `--window` queries in flight) for
    `--seconds`, against an in-process server holding `--services` Services (or `--server IP` for a
    live cluster's DNS); the baseline, in the same run, is a bare asyncio UDP echo server on the
    same harness, so the ratio says what the DNS logic costs over the socket path;
(b) how many queries a pod's resolver sends for `svc`, `svc.ns`, a full name and external names
    with the search path and ndots the kubelet configures (glibc's rules, `minik8s.dns.resolver`),
    counted at the server.

Usage: python -m benchmarks.dns [--services 100] [--seconds 5] [--clients 2] [--window 8] [--server IP[:PORT]]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import multiprocessing as mp
import socket
import threading
import time
from typing import Any

from dnslib import RCODE, DNSRecord

from benchmarks import smoke
from minik8s.api.services import Service
from minik8s.dns.records import build_snapshot
from minik8s.dns.resolver import ResolverConf, lookup_names
from minik8s.dns.server import DnsConfig, DnsServer

SERVICE_CIDR = "10.96.0.0/16"
RECV_TIMEOUT_S = 1.0


def services(n: int) -> list[Service]:
    net = ipaddress.IPv4Network(SERVICE_CIDR)
    return [Service.model_validate({"metadata": {"name": f"s{i}", "namespace": "default"},
                                    "spec": {"clusterIP": str(net[20 + i]),
                                             "ports": [{"name": "http", "port": 80}]}}) for i in range(n)]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def _client(addr: tuple[str, int], name: str, seconds: float, window: int, out: Any) -> None:
    """Keep `window` queries in flight; record each one's round trip."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(RECV_TIMEOUT_S)
    templates = []
    for i in range(window):
        q = DNSRecord.question(name)
        q.header.id = i
        templates.append(bytes(q.pack()))
    sent_at: dict[int, float] = {}
    lat: list[float] = []
    lost = 0
    end = time.monotonic() + seconds
    for i in range(window):
        sent_at[i] = time.perf_counter()
        sock.sendto(templates[i], addr)
    while time.monotonic() < end:
        try:
            data = sock.recv(512)
        except TimeoutError:
            lost += len(sent_at)
            for i in range(window):
                sent_at[i] = time.perf_counter()
                sock.sendto(templates[i], addr)
            continue
        ident = int.from_bytes(data[:2], "big")
        start = sent_at.pop(ident, None)
        if start is None:
            continue
        now = time.perf_counter()
        lat.append(now - start)
        sent_at[ident] = now
        sock.sendto(templates[ident], addr)
    out.put((lat, lost))


def load(addr: tuple[str, int], name: str, seconds: float, clients: int, window: int) -> dict[str, float]:
    ctx = mp.get_context("fork")
    out: Any = ctx.Queue()
    procs = [ctx.Process(target=_client, args=(addr, name, seconds, window, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    lat: list[float] = []
    lost = 0
    for _ in procs:
        part, part_lost = out.get()
        lat += part
        lost += part_lost
    for p in procs:
        p.join()
    return {"qps": round(len(lat) / seconds), "p50_ms": round(pct(lat, 0.5) * 1e3, 3),
            "p99_ms": round(pct(lat, 0.99) * 1e3, 3), "lost": lost}


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


def echo_server() -> tuple[str, int]:
    """The baseline: a UDP echo on the same kind of asyncio loop, in a thread."""
    ready: list[tuple[str, int]] = []
    started = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        transport, _ = loop.run_until_complete(loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0)))
        ready.append(transport.get_extra_info("sockname")[:2])
        started.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True, name="echo").start()
    started.wait(5)
    return ready[0]


def queries_per_lookup(server: DnsServer, addr: tuple[str, int], namespace: str, svc: str) -> dict[str, int]:
    conf = ResolverConf.for_pod(namespace)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(RECV_TIMEOUT_S)
    counts = {}
    for label, asked in (("svc", svc), ("svc.ns", f"{svc}.{namespace}"),
                         ("full", f"{svc}.{namespace}.svc.cluster.local"),
                         ("external (1 dot)", "example.com"), ("external (2 dots)", "www.example.com")):
        before = server.queries
        for candidate in lookup_names(asked, conf):
            sock.sendto(DNSRecord.question(candidate).pack(), addr)
            if DNSRecord.parse(sock.recv(4096)).header.rcode != RCODE.NXDOMAIN:
                break
        counts[label] = server.queries - before
    sock.close()
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--server", help="a live cluster DNS (IP or IP:PORT) instead of the in-process server")
    ap.add_argument("--name", default="s42.default.svc.cluster.local")
    args = smoke.parse(ap, services=10, seconds=1.0, clients=1)
    result: dict[str, Any] = {"services": args.services, "clients": args.clients, "window": args.window}
    server = None
    if args.server:
        host, _, port = args.server.partition(":")
        addr = (host, int(port or 53))
    else:
        server = DnsServer(DnsConfig(listen=["127.0.0.1:0"]))
        server.set_snapshot(build_snapshot(services(args.services), []))
        server.start()
        addr = server.bound[0]
    result["dns"] = load(addr, args.name, args.seconds, args.clients, args.window)
    result["echo_baseline"] = load(echo_server(), args.name, args.seconds, args.clients, args.window)
    result["qps_ratio_vs_echo"] = round(result["dns"]["qps"] / max(1, result["echo_baseline"]["qps"]), 3)
    if server is not None:
        result["queries_per_lookup"] = queries_per_lookup(server, addr, "default", "s42")
        server.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
