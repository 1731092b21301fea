"""The cluster's DNS records as an immutable snapshot, and the answer to one question over it.

A snapshot is rebuilt from the informers' caches on every change and swapped in whole
(Ray Serve's long-poll shape: the data plane gets pushed a snapshot, it never asks the API).
Answers are built with dnslib; `Snapshot.respond` caches the packed answer per question, so a
repeated query costs a dict lookup and a splice, not a parse and a pack.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dnslib import QTYPE, RCODE, RR, SOA, SRV, A, DNSHeader, DNSQuestion, DNSRecord

HEADER_LEN = 12
MAX_UDP_PAYLOAD = 512  # without EDNS; our answers fit, a bigger one goes out truncated (TC)
FLAG_QR, FLAG_AA, FLAG_TC, FLAG_RD, FLAG_RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
OPCODE_MASK = 0x7800
SOA_REFRESH_S, SOA_RETRY_S, SOA_EXPIRE_S = 7200, 1800, 86400


@dataclass(frozen=True)
class SrvTarget:
    port: int
    target: str  # the Service's own name, answered with its A record in the additional section


@dataclass
class Snapshot:
    """Names are lowercase, without the trailing dot."""

    domain: str = "cluster.local"
    ttl: int = 5
    a: dict[str, list[str]] = field(default_factory=dict)
    srv: dict[str, list[SrvTarget]] = field(default_factory=dict)
    #: Ingress wildcard hosts: `*.apps.example.com` is stored as "apps.example.com" and answers
    #: names exactly one label below it (as Kubernetes matches wildcard hosts); exact names win
    wildcard: dict[str, list[str]] = field(default_factory=dict)
    #: every name that exists (records' owners and their parents inside the domain): a question
    #: for one of these with no record of its type is NODATA (NOERROR, empty), not NXDOMAIN
    names: set[str] = field(default_factory=set)
    max_cached: int = 10000
    _cache: dict[bytes, tuple[int, bytes]] = field(default_factory=dict, repr=False)

    # --- answering ---------------------------------------------------------------------------
    def answer(self, qname: str, qtype: int) -> DNSRecord:
        """The full reply (id 0, no RD) to one question; `qname` as asked."""
        name = qname.lower().rstrip(".")
        reply = DNSRecord(DNSHeader(id=0, qr=1, aa=1, ra=1), q=DNSQuestion(qname, qtype))
        ttl = self.ttl
        addresses = self.a.get(name)
        if addresses is None and "." in name and name.split(".", 1)[1] in self.wildcard:
            addresses = self.wildcard[name.split(".", 1)[1]]
        if qtype in (QTYPE.A, QTYPE.ANY) and addresses:
            for ip in addresses:
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(ip), ttl=ttl))
        if qtype in (QTYPE.SRV, QTYPE.ANY) and name in self.srv:
            for t in self.srv[name]:
                reply.add_answer(RR(qname, QTYPE.SRV, rdata=SRV(0, 100, t.port, t.target + "."), ttl=ttl))
                for ip in self.a.get(t.target, []):
                    reply.add_ar(RR(t.target + ".", QTYPE.A, rdata=A(ip), ttl=ttl))
        if reply.rr:
            return reply
        if name not in self.names and addresses is None:
            reply.header.rcode = RCODE.NXDOMAIN
        if self.in_domain(name):  # the zone's SOA lets resolvers cache the negative answer for `ttl`
            reply.add_auth(RR(self.domain + ".", QTYPE.SOA, ttl=ttl, rdata=SOA(
                f"ns.dns.{self.domain}.", f"hostmaster.{self.domain}.",
                (0, SOA_REFRESH_S, SOA_RETRY_S, SOA_EXPIRE_S, ttl))))
        return reply

    def in_domain(self, name: str) -> bool:
        return name == self.domain or name.endswith("." + self.domain)

    def respond(self, query: bytes, max_len: int | None = None) -> bytes | None:
        """The wire reply to a wire query, or None for something not worth an answer (a response, garbage).

        Only the question matters: EDNS and other additional records are ignored (RFC 6891 lets a
        responder that does not speak EDNS answer without an OPT record)."""
        query = bytes(query)  # dnslib packs to bytearray, which cannot key the cache
        if len(query) < HEADER_LEN + 5:
            return None
        ident, flags, qdcount = struct.unpack_from("!HHH", query)
        if flags & FLAG_QR:
            return None
        end = _question_end(query)
        if flags & OPCODE_MASK or qdcount != 1 or end is None:
            return _error(query, RCODE.NOTIMP if flags & OPCODE_MASK else RCODE.FORMERR)
        question = query[HEADER_LEN:end]
        key = question.lower()
        hit = self._cache.get(key)
        if hit is None:
            hit = self._build(query[:end])
            if len(self._cache) >= self.max_cached:  # random names must not grow memory without bound
                self._cache.clear()
            self._cache[key] = hit
        hflags, rest = hit
        reply = struct.pack("!HH", ident, hflags | (flags & FLAG_RD)) + rest[:8] + question + rest[8:]
        if max_len is not None and len(reply) > max_len:
            reply = struct.pack("!HH", ident, hflags | (flags & FLAG_RD) | FLAG_TC) + rest[:2] + b"\0" * 6 + question
        return reply

    def _build(self, head: bytes) -> tuple[int, bytes]:
        """(flags, counts + everything after the question) of the reply; the id, RD and the
        question bytes (with the asker's letter case) are spliced in per query."""
        q = DNSRecord.parse(head).q
        wire = self.answer(str(q.qname), q.qtype).pack()
        (hflags,) = struct.unpack_from("!H", wire, 2)
        end = _question_end(wire)
        assert end is not None
        return hflags, wire[4:HEADER_LEN] + wire[end:]


def _question_end(msg: bytes) -> int | None:
    """Offset just past the first question (an uncompressed name, type, class), or None if malformed."""
    i, n = HEADER_LEN, len(msg)
    while i < n:
        length = msg[i]
        if length == 0:
            return i + 5 if i + 5 <= n else None
        if length & 0xC0:
            return None
        i += length + 1
    return None


def _error(query: bytes, rcode: int) -> bytes:
    ident, flags = struct.unpack_from("!HH", query)
    return struct.pack("!HHHHHH", ident, FLAG_QR | (flags & (OPCODE_MASK | FLAG_RD)) | FLAG_RA | rcode, 0, 0, 0, 0)


# --- building ----------------------------------------------------------------------------------

def _add_name(snap: Snapshot, name: str) -> None:
    snap.names.add(name)
    while snap.in_domain(name) and name != snap.domain:
        name = name.split(".", 1)[1]
        snap.names.add(name)


def _dashed(ip: str) -> str:
    """An endpoint without a hostname is named by its address, `10-1-2-3` (as CoreDNS names it)."""
    return ip.replace(".", "-").replace(":", "-")


def _add_headless(snap: Snapshot, fqdn: str, endpoints: Any) -> None:
    """A headless Service's records from its Endpoints' ready addresses: the Service's name → every address,
    `<hostname>.<svc>…` → that address (a pod with `hostname` and `subdomain: <svc>`; else the dashed IP),
    and SRV per named port → those per-endpoint names."""
    ips: list[str] = []
    for subset in endpoints.subsets or []:
        for addr in subset.addresses or []:
            own = f"{(addr.hostname or _dashed(addr.ip)).lower()}.{fqdn}"
            if addr.ip not in snap.a.setdefault(own, []):
                snap.a[own].append(addr.ip)
            _add_name(snap, own)
            if addr.ip not in ips:
                ips.append(addr.ip)
            for port in subset.ports or []:
                if port.name:
                    srv_name = f"_{port.name}._{(port.protocol or 'TCP').lower()}.{fqdn}"
                    snap.srv.setdefault(srv_name, []).append(SrvTarget(port.port, own))
                    _add_name(snap, srv_name)
    if ips:
        snap.a[fqdn] = ips


def build_snapshot(services: Iterable[Any], dnses: Iterable[Any], domain: str = "cluster.local", ttl: int = 5,
                   gateway: str = "kube-system/gateway", ingress_hosts: Iterable[str] = (),
                   endpoints: Iterable[Any] = ()) -> Snapshot:
    """Records from typed Service, Endpoints and DNS objects.

    - `<svc>.<ns>.svc.<domain>` A → the ClusterIP; for a headless Service → its ready endpoints' addresses,
      and `<hostname>.<svc>.<ns>.svc.<domain>` → one endpoint's (see `_add_headless`);
    - `_<port name>._<proto>.<svc>.<ns>.svc.<domain>` SRV → port + the Service's name, for named ports;
    - each DNS object's `spec.host` A → the ClusterIP of the `gateway` Service, when it has one;
    - so is each host of the Ingresses the gateway serves (`ingress_hosts`; `*.x` answers one label below x)."""
    snap = Snapshot(domain=domain.lower().rstrip("."), ttl=ttl)
    snap.names.add(snap.domain)
    ips: dict[str, str] = {}
    by_service = {f"{ep.metadata.namespace or 'default'}/{ep.metadata.name}": ep for ep in endpoints}
    for svc in services:
        ns, name = svc.metadata.namespace or "default", svc.metadata.name
        ip = svc.spec.clusterIP
        fqdn = f"{name}.{ns}.svc.{snap.domain}".lower()
        _add_name(snap, fqdn)
        if ip == "None" and f"{ns}/{name}" in by_service:
            _add_headless(snap, fqdn, by_service[f"{ns}/{name}"])
        if not ip or ip == "None":
            continue
        ips[f"{ns}/{name}"] = ip
        snap.a[fqdn] = [ip]
        for port in svc.spec.ports or []:
            if port.name:
                srv_name = f"_{port.name}._{(port.protocol or 'TCP').lower()}.{fqdn}"
                snap.srv.setdefault(srv_name, []).append(SrvTarget(port.port, fqdn))
                _add_name(snap, srv_name)
    gateway_ip = ips.get(gateway)
    for obj in dnses:
        host = obj.spec.host.lower().rstrip(".")
        if gateway_ip and host:
            snap.a[host] = [gateway_ip]
            snap.names.add(host)
    for host in ingress_hosts:
        host = host.lower().rstrip(".")
        if not gateway_ip or not host:
            continue
        if host.startswith("*."):
            snap.wildcard[host[2:]] = [gateway_ip]
        else:
            snap.a[host] = [gateway_ip]
            snap.names.add(host)
    return snap
