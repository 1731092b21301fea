"""Talking to an etcd cluster through several endpoints: use one member, move on when it fails.

Each endpoint gets its own gRPC channel. A call goes to the member that served the last call;
when that member is unreachable (connection refused or reset, or the attempt's deadline passed) or
answers that it cannot serve now (`etcdserver: no leader`, `leader changed`, its own request
timeout), the call moves on to the next member in ring order and that member becomes the one in
use. After a round in which some member was alive but could not serve (an election), the call
waits a little and goes round again until its time window has passed; a round in which every
member was unreachable ends the call at once, so a stopped etcd is reported fast.

Requests carry etcd's `hasleader` metadata, so a member that has lost its leader refuses at once
instead of holding the request until its own timeout (7 s with etcd's defaults).

Whether a retried request is safe is the caller's business: reads are, conditional writes are made
safe by :meth:`EtcdStore._txn` (it checks whether the first attempt landed), see there.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
from pyetcd import etcdrpc
from pyetcd import exceptions as etcd_exc
from pyetcd.watch import Watcher

from minik8s.errors import BadRequest, Unavailable

log = logging.getLogger("minik8s.store")

T = TypeVar("T")

#: etcd's gRPC metadata asking a member to refuse requests while it has no leader.
REQUIRE_LEADER = (("hasleader", "true"),)
#: Prefix of the messages etcd itself sends (the member is up but cannot serve right now).
ETCD_SERVER_PREFIX = "etcdserver:"
#: Cap on gRPC's reconnect backoff, so a member that comes back is usable again within about this long.
RECONNECT_BACKOFF_MAX_MS = 1000
#: Largest answer taken from etcd. gRPC's default (4 MiB) fails a range over a few thousand pods; etcd's
#: own server side sends up to math.MaxInt32, and kube-apiserver's etcd client takes as much.
MAX_RECEIVE_MESSAGE_BYTES = 2**31 - 1
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
                   ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES)]


#: How long a watch create may wait for etcd's answer. Longer than a request's attempt: a create that
#: times out costs the whole shared stream (see Member.drop_watcher), and a dead member fails the
#: stream at once anyway; only a member that hangs without failing waits this long.
WATCH_CREATE_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class FailoverConfig:
    """How long calls try (defaults documented here, used by :class:`EtcdStore`)."""

    attempt_timeout_s: float = 3.0
    """One attempt on one member; shorter than etcd's own 7 s request timeout, which a request
    forwarded to a leader that just died would otherwise wait out."""
    window_s: float = 10.0
    """A call starts no new round of attempts after this long (an election takes about 1-3 s)."""
    backoff_min_s: float = 0.05
    backoff_max_s: float = 0.5


class MemberUnavailable(Exception):
    """An attempt failed for a reason other than a gRPC error; `busy` as in :func:`classify`."""

    def __init__(self, message: str, busy: bool) -> None:
        super().__init__(message)
        self.busy = busy


#: the flag a plain-HTTP endpoint to another machine is refused under, and the ones that make TLS work
ENDPOINTS_FLAG = "--etcd-endpoints"
TLS_FLAGS = "--etcd-cafile/--etcd-certfile/--etcd-keyfile"
SCHEMES = ("http", "https")


@dataclass(frozen=True)
class EtcdTLS:
    """How the API server speaks TLS to https:// etcd members (kube-apiserver's --etcd-cafile, --etcd-certfile,
    --etcd-keyfile): the CA that signed the members' serving certificates (None: the system's roots) and the
    client certificate and key a member started with `--client-cert-auth` checks against its trusted CA."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise BadRequest("--etcd-certfile and --etcd-keyfile go together: give both or neither")

    def _read(self, path: str | None, flag: str) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise BadRequest(f"{flag} {path}: {exc.strerror or exc}") from None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self._read(self.ca_file, "--etcd-cafile"),
                                            private_key=self._read(self.key_file, "--etcd-keyfile"),
                                            certificate_chain=self._read(self.cert_file, "--etcd-certfile"))

    def ssl_context(self) -> ssl.SSLContext:
        """The same trust and identity for etcd's HTTP endpoints (/health, the status probe)."""
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def _split(endpoint: str) -> tuple[str, str, str]:
    """(scheme, host, host:port) of an endpoint, with a clear error for anything not `http(s)://HOST:PORT`."""
    parts = urlsplit(endpoint if "//" in endpoint else f"http://{endpoint}")
    if parts.scheme not in SCHEMES:
        raise BadRequest(f'etcd endpoint "{endpoint}": only http:// and https:// endpoints are supported')
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path not in ("", "/") or parts.query:
        raise BadRequest(f'etcd endpoint "{endpoint}" is not of the form http(s)://HOST:PORT')
    return parts.scheme, parts.hostname, parts.netloc


def grpc_target(endpoint: str) -> str:
    """`http(s)://host:port` (or `host:port`) -> `host:port`, with a clear error for anything else."""
    return _split(endpoint)[2]


def is_tls(endpoint: str) -> bool:
    return _split(endpoint)[0] == "https"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_endpoints(text: str) -> list[str]:
    """A comma-separated endpoint list, as a user types it, as `http(s)://host:port` URLs.

    Plain HTTP is refused to anything but loopback: etcd over HTTP has no authentication, and whoever can
    reach it reads every Secret and rewrites any object, skipping the API's authorization. kube-apiserver
    itself would connect, but every Kubernetes installer (kubeadm's external etcd, k3s, kops) puts remote
    etcd behind TLS with client certificates, which is what a user expects the cluster to insist on."""
    endpoints = [e.strip() for e in text.split(",") if e.strip()]
    if not endpoints:
        raise BadRequest("no etcd endpoint given: expected https://HOST:PORT[,https://HOST:PORT...]")
    urls = []
    for e in endpoints:
        scheme, host, netloc = _split(e)
        if scheme == "http" and not is_loopback(host):
            raise BadRequest(f'{ENDPOINTS_FLAG} "{e}" is plain HTTP to another machine: anyone who reaches it can '
                             f"read and rewrite every object; use https:// with {TLS_FLAGS}")
        urls.append(f"{scheme}://{netloc}")
    if len(set(urls)) != len(urls):
        raise BadRequest(f"an etcd endpoint is listed twice: {','.join(endpoints)}")
    return urls


#: a member that timed out a request itself (a read waiting for a quorum that is gone) answers with these,
#: under any gRPC code: busy, as a client-side deadline is
SERVER_TIMEOUTS = ("context deadline exceeded", "etcdserver: request timed out")


def classify(exc: BaseException) -> str | None:
    """`None`: not a member failure (raise it). `"down"`: the member is unreachable. `"busy"`: the
    member, or the cluster behind it, cannot serve right now but may soon (election, overload)."""
    if isinstance(exc, MemberUnavailable):
        return "busy" if exc.busy else "down"
    if not isinstance(exc, grpc.RpcError):
        return None
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = exc.details() if callable(getattr(exc, "details", None)) else ""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED or any(t in (details or "") for t in SERVER_TIMEOUTS):
        return "busy"
    if code == grpc.StatusCode.UNAVAILABLE:
        return "busy" if (details or "").startswith(ETCD_SERVER_PREFIX) else "down"
    return None


def describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "details", None)):
        return str(exc.details())
    return str(exc)


class Member:
    """One etcd endpoint: its channel, KV stub and (made on first use) its shared watch stream."""

    def __init__(self, endpoint: str, attempt_timeout_s: float, tls: EtcdTLS | None = None) -> None:
        self.endpoint = endpoint
        if is_tls(endpoint):  # verifies the member's certificate (its names must include the endpoint's host)
            creds = (tls or EtcdTLS()).credentials()
            self.channel = grpc.secure_channel(grpc_target(endpoint), creds, options=CHANNEL_OPTIONS)
        else:
            self.channel = grpc.insecure_channel(grpc_target(endpoint), options=CHANNEL_OPTIONS)
        self.kv = etcdrpc.KVStub(self.channel)
        self._attempt_timeout_s = attempt_timeout_s
        self._watcher: Watcher | None = None
        self._lock = threading.Lock()

    def watcher(self) -> Watcher:
        with self._lock:
            if self._watcher is None:
                self._watcher = Watcher(etcdrpc.WatchStub(self.channel),
                                        timeout=max(self._attempt_timeout_s, WATCH_CREATE_TIMEOUT_S),
                                        metadata=REQUIRE_LEADER)
            return self._watcher

    def drop_watcher(self, stale: Watcher) -> None:
        """End the shared watch stream `stale` (if still the current one) after a create on it timed out:
        pyetcd pairs "created" answers with create requests in order, so that create's late answer would
        be taken for the next watch's. Every watch on the stream resumes on a new one (ResumableWatch)."""
        with self._lock:
            current = self._watcher
            if current is None or current is not stale:
                return
            self._watcher = None
        current.close()

    def close(self) -> None:
        with self._lock:
            if self._watcher is not None:
                self._watcher.close()
        self.channel.close()


class Members:
    """The endpoints of one etcd cluster and which of them is in use."""

    def __init__(self, endpoints: list[str], config: FailoverConfig | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 member: Callable[[str, float], Any] = Member) -> None:
        if not endpoints:
            raise BadRequest("no etcd endpoint given")
        self.config = config or FailoverConfig()
        self.members = [member(e, self.config.attempt_timeout_s) for e in endpoints]
        self._current = 0
        self._clock, self._sleep = clock, sleep
        self.closed = False

    @property
    def current(self) -> int:
        return self._current

    def order(self) -> Iterator[int]:
        """Member indices to try: the one in use first, then the others in ring order."""
        start, n = self._current, len(self.members)
        return ((start + k) % n for k in range(n))

    def failed(self, index: int) -> None:
        """`index` failed: if it was the one in use, the next one in the ring is now."""
        if self._current == index:
            self._current = (index + 1) % len(self.members)

    def call(self, what: str, attempt: Callable[[Any], T],
             on_retry: Callable[[BaseException], None] | None = None) -> T:
        """`attempt(member)` on the member in use, then on the others as described in the module doc.

        `on_retry(error)` runs before each further attempt (the caller may note that an earlier one
        may have been applied). Raises Unavailable when the window has passed or every member is down,
        and at once for any other gRPC error (etcd refused the request: no other member would take it).
        """
        cfg = self.config
        deadline = self._clock() + cfg.window_s
        backoff = cfg.backoff_min_s
        last: BaseException | None = None
        while True:
            busy = False
            for index in self.order():
                if last is not None:
                    if self._clock() > deadline:
                        break
                    if on_retry is not None:
                        on_retry(last)
                member = self.members[index]
                try:
                    return attempt(member)
                except Exception as exc:  # noqa: BLE001 - classified below; anything else is re-raised
                    kind = classify(exc)
                    if kind is None and isinstance(exc, grpc.RpcError):  # etcd refused the request itself
                        raise Unavailable(f"etcd {what} failed: {describe(exc)}") from exc
                    if kind is None:
                        raise
                    last = exc
                    busy |= kind == "busy"
                    log.info("etcd %s failed on %s (%s): trying another member", what, member.endpoint,
                             describe(exc), extra={"endpoint": member.endpoint, "error": describe(exc)})
                    self.failed(index)
            if not busy or self._clock() + backoff > deadline:
                assert last is not None
                raise Unavailable(f"etcd unavailable ({what}): {describe(last)}") from last
            self._sleep(backoff)
            backoff = min(backoff * 2, cfg.backoff_max_s)

    def close(self) -> None:
        self.closed = True
        for m in self.members:
            m.close()


#: a watch creation slower than this is logged: the member, or this client's shared stream, is backed up
SLOW_CREATE_S = 2.0


class Compacted(Exception):
    def __init__(self, revision: int) -> None:
        super().__init__(f"revision compacted at {revision}")
        self.revision = revision


class ResumableWatch:
    """A watch on a key range that survives the loss of its member: when its stream breaks it is made
    again on another member from the revision after the last event it delivered, so no event is lost
    or repeated. `deliver(response)` gets pyetcd watch responses (on a pyetcd thread); `fail(rev)` is
    called once when the watch ends by itself: with the compacted revision when the history it needs
    is gone (a Gone for the client), with 0 when no member would take it within the window."""

    def __init__(self, members: Members, key: bytes, range_end: bytes, start_revision: int,
                 deliver: Callable[[Any], None], fail: Callable[[int], None]) -> None:
        self._members = members
        self._key, self._range_end = key, range_end
        self._next_revision = start_revision
        self._deliver, self._fail = deliver, fail
        self._lock = threading.Lock()
        self._generation = 0
        self._watcher: Watcher | None = None  # the stream the watch is on (a dropped one is not the member's)
        self._member_index = 0
        self._watch_id: int | None = None
        self._cancelled = False

    def start(self) -> None:
        """Create the watch; raises Compacted or Unavailable."""
        self._establish()

    def _establish(self) -> None:
        with self._lock:
            self._generation += 1
            generation = self._generation
            start = self._next_revision

        def on_response(resp: Any) -> None:
            self._on_response(generation, resp)

        def attempt(member: Member) -> tuple[Watcher, int]:
            with self._lock:  # before the stream can break, so its break is charged to this member
                self._member_index = self._members.members.index(member)
            watcher = member.watcher()
            try:
                watch_id = watcher.add_callback(self._key, on_response, range_end=self._range_end,
                                                start_revision=start, prev_kv=True)
            except etcd_exc.RevisionCompactedError as exc:
                raise Compacted(exc.compacted_revision) from exc
            except etcd_exc.WatchTimedOut as exc:
                member.drop_watcher(watcher)
                raise MemberUnavailable("watch creation timed out", busy=True) from exc
            except TypeError as exc:  # pyetcd raises None when the stream ended without a gRPC error
                raise MemberUnavailable("watch stream closed", busy=False) from exc
            return watcher, int(watch_id)

        began = time.monotonic()
        watcher, watch_id = self._members.call("watch", attempt)
        if time.monotonic() - began > SLOW_CREATE_S:
            log.warning("etcd watch creation took %.1fs", time.monotonic() - began,
                        extra={"key": self._key.decode(errors="replace"), "revision": start})
        with self._lock:
            self._watcher, self._watch_id = watcher, watch_id
            cancelled = self._cancelled
        if cancelled:
            watcher.cancel(watch_id)

    def _on_response(self, generation: int, resp: Any) -> None:
        with self._lock:
            if generation != self._generation or self._cancelled:
                return  # a leftover of a stream this watch has already left
        if isinstance(resp, etcd_exc.RevisionCompactedError):
            self._end(resp.compacted_revision)
            return
        if resp is None or isinstance(resp, Exception):
            if self._members.closed:  # the store closed its streams: nothing to resume, nobody to tell
                with self._lock:
                    self._cancelled = True
                return
            log.info("etcd watch stream broke: resuming on another member",
                     extra={"error": describe(resp) if resp else "closed", "revision": self._next_revision})
            self._members.failed(self._member_index)
            threading.Thread(target=self._resume, name="etcd-watch-resume", daemon=True).start()
            return
        if any(not self._covers(ev.key) for ev in resp.events):
            self._misrouted()
            return
        self._deliver(resp)
        if resp.events:
            with self._lock:
                self._next_revision = int(resp.events[-1].mod_revision) + 1

    def _covers(self, key: bytes) -> bool:
        if not self._range_end:
            return key == self._key
        return self._key <= key and (self._range_end == b"\0" or key < self._range_end)

    def _misrouted(self) -> None:
        """pyetcd pairs a stream's "created" answers with create requests in order: the answer to a request
        that timed out on a busy member can be taken for the next one, made by another watch, which then
        gets the first watch's key range. Such a watch is made again, from the revision after the last
        event it delivered, and the stray stream is cancelled."""
        with self._lock:
            watcher, watch_id = self._watcher, self._watch_id
            self._generation += 1  # whatever else the stray stream sends is dropped
        log.warning("etcd watch got events of another key range: making it again",
                    extra={"key": self._key.decode(errors="replace"), "revision": self._next_revision})
        if watcher is not None and watch_id is not None:
            try:
                watcher.cancel(watch_id)
            except Exception as exc:  # noqa: BLE001 - the stream may already be gone with its member
                log.debug("cancel watch failed: %s", exc)
        threading.Thread(target=self._resume, name="etcd-watch-remake", daemon=True).start()

    def _resume(self) -> None:
        try:
            self._establish()
        except Compacted as exc:
            self._end(exc.revision)
        except Unavailable as exc:
            log.warning("etcd watch could not resume: %s", exc.message, extra={"revision": self._next_revision})
            self._end(0)
        except Exception:  # noqa: BLE001 - e.g. the store closed meanwhile; the client must relist
            log.exception("etcd watch could not resume", extra={"revision": self._next_revision})
            self._end(0)

    def _end(self, revision: int) -> None:
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
        self._fail(revision)

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            watcher, watch_id = self._watcher, self._watch_id
        if watcher is not None and watch_id is not None:
            try:
                watcher.cancel(watch_id)
            except Exception as exc:  # noqa: BLE001 - the stream may already be gone with its member
                log.debug("cancel watch failed: %s", exc)
