"""Endpoint selection and retry rules of the etcd store, with fake members (no etcd, no clock)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from pyetcd.etcdrpc import kv_pb2
from pyetcd.etcdrpc import rpc_pb2 as rpc

from minik8s.errors import AlreadyExists, BadRequest, Unavailable
from minik8s.store import EtcdStore
from minik8s.store.failover import FailoverConfig, Members, classify, grpc_target, normalize_endpoints

REFUSED = "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Connection refused"


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def refused() -> FakeRpcError:
    return FakeRpcError(grpc.StatusCode.UNAVAILABLE, REFUSED)


def no_leader() -> FakeRpcError:
    return FakeRpcError(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")


class FakeKV:
    """Answers Txn/Range from scripts: each script entry is an exception to raise or a reply."""

    def __init__(self) -> None:
        self.txn: list[Any] = []
        self.range: list[Any] = []
        self.calls: list[str] = []

    def _next(self, script: list[Any], name: str) -> Any:
        self.calls.append(name)
        item = script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def Txn(self, req: Any, timeout: float, metadata: Any = None) -> Any:  # noqa: N802 - gRPC stub name
        return self._next(self.txn, "txn")

    def Range(self, req: Any, timeout: float, metadata: Any = None) -> Any:  # noqa: N802 - gRPC stub name
        return self._next(self.range, "range")


class FakeMember:
    def __init__(self, endpoint: str, _timeout: float) -> None:
        self.endpoint = endpoint
        self.kv = FakeKV()

    def close(self) -> None:
        pass


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


URLS = ["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"]


def members(t: FakeTime, window_s: float = 10.0) -> Members:
    return Members(URLS, FailoverConfig(window_s=window_s), clock=t.clock, sleep=t.sleep, member=FakeMember)


def script(outcomes: dict[int, list[Any]]) -> Callable[[Any], str]:
    """An attempt that pops the next outcome of the member it is given."""

    def attempt(m: FakeMember) -> str:
        item = outcomes[URLS.index(m.endpoint)].pop(0)
        if isinstance(item, BaseException):
            raise item
        return str(item)

    return attempt


def test_endpoints_are_parsed_with_clear_errors() -> None:
    assert grpc_target("http://127.0.0.1:2379") == "127.0.0.1:2379"
    assert grpc_target("https://10.0.0.1:2379") == "10.0.0.1:2379"
    assert normalize_endpoints(" https://10.0.0.1:2379 , http://localhost:1,127.0.0.2:2") == [
        "https://10.0.0.1:2379", "http://localhost:1", "http://127.0.0.2:2"]
    for bad, msg in [("ftp://h:2379", "only http:// and https://"), ("10.0.0.1:2379", "plain HTTP to another machine"),
                     ("http://h:1", "use https:// with --etcd-cafile/--etcd-certfile/--etcd-keyfile"),
                     ("http://h", "HOST:PORT"), ("http://h:x", "HOST:PORT"),
                     ("http://h:1/p", "HOST:PORT"), ("", "no etcd endpoint"),
                     ("https://h:1,https://h:1", "listed twice")]:
        with pytest.raises(BadRequest, match=msg):
            normalize_endpoints(bad)


def test_errors_are_classified() -> None:
    assert classify(refused()) == "down"
    assert classify(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "Socket closed")) == "down"
    assert classify(no_leader()) == "busy"
    assert classify(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")) == "busy"
    assert classify(FakeRpcError(grpc.StatusCode.UNKNOWN, "context deadline exceeded")) == "busy"  # etcd's own timeout
    assert classify(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "bad")) is None
    assert classify(ValueError("x")) is None


def test_a_down_member_is_left_for_the_next_one_which_stays_in_use() -> None:
    t = FakeTime()
    m = members(t)
    assert m.call("range", script({0: [refused()], 1: ["from 1"]})) == "from 1"
    assert m.current == 1
    assert m.call("range", script({1: ["again 1"]})) == "again 1"
    assert t.sleeps == []


def test_the_ring_wraps_around_from_the_member_in_use() -> None:
    t = FakeTime()
    m = members(t)
    m.failed(0)
    m.failed(1)
    assert list(m.order()) == [2, 0, 1]
    m.failed(0)  # not the one in use: nothing changes
    assert m.current == 2
    assert m.call("range", script({2: [refused()], 0: ["from 0"]})) == "from 0"
    assert m.current == 0


def test_every_member_down_fails_at_once_without_waiting() -> None:
    t = FakeTime()
    m = members(t)
    with pytest.raises(Unavailable, match="etcd unavailable \\(range\\): failed to connect"):
        m.call("range", script({0: [refused()], 1: [refused()], 2: [refused()]}))
    assert t.sleeps == []


def test_an_election_is_waited_out_with_backoff() -> None:
    t = FakeTime()
    m = members(t)
    outcomes: dict[int, list[Any]] = {0: [refused(), refused(), refused()], 1: [no_leader(), no_leader(), "ok"],
                                      2: [no_leader(), no_leader()]}
    assert m.call("txn", script(outcomes)) == "ok"
    assert t.sleeps == [0.05, 0.1]
    assert m.current == 1


def test_waiting_stops_at_the_window() -> None:
    t = FakeTime()
    m = members(t, window_s=1.0)
    with pytest.raises(Unavailable, match="no leader"):
        m.call("txn", lambda _m: (_ for _ in ()).throw(no_leader()))
    assert sum(t.sleeps) <= 1.0 and len(t.sleeps) >= 3


def test_other_errors_are_not_retried() -> None:
    t = FakeTime()
    m = members(t)
    bad = FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided")
    with pytest.raises(Unavailable, match="etcd range failed: etcdserver: key is not provided"):
        m.call("range", script({0: [bad], 1: ["unused"]}))
    with pytest.raises(ZeroDivisionError):
        m.call("range", lambda _m: 1 // 0)
    assert m.current == 0


def test_on_retry_runs_before_each_further_attempt_only() -> None:
    t = FakeTime()
    m = members(t)
    seen: list[str] = []
    m.call("txn", script({0: [refused()], 1: [refused()], 2: ["ok"]}), on_retry=lambda e: seen.append(str(e)))
    assert len(seen) == 2


def store_with_fakes() -> tuple[EtcdStore, list[FakeMember]]:
    store = EtcdStore(URLS)
    store.close()
    store._members = Members(URLS, FailoverConfig(), member=FakeMember)  # noqa: SLF001 - fakes in place of gRPC
    return store, store._members.members  # noqa: SLF001


def kv(value: bytes, mod_revision: int) -> rpc.RangeResponse:
    return rpc.RangeResponse(kvs=[kv_pb2.KeyValue(key=b"k", value=value, mod_revision=mod_revision)])


def test_a_create_that_landed_unseen_is_recognised_as_this_create() -> None:
    store, (first, second, _) = store_with_fakes()
    obj = {"metadata": {"name": "p", "uid": "u1"}}
    first.kv.txn = [FakeRpcError(grpc.StatusCode.UNAVAILABLE, "Socket closed")]  # applied, then the member died
    second.kv.txn = [rpc.TxnResponse(succeeded=False)]  # the retry finds the key taken ...
    second.kv.range = [kv(b'{"metadata":{"name":"p","uid":"u1"}}', 42)]  # ... by this very write
    assert store.create("/registry/pods/default/p", obj)["metadata"]["resourceVersion"] == "42"
    assert second.kv.calls == ["txn", "range"]


def test_a_create_that_finds_another_object_is_already_exists() -> None:
    store, (first, second, _) = store_with_fakes()
    first.kv.txn = [refused()]
    second.kv.txn = [rpc.TxnResponse(succeeded=False)]
    second.kv.range = [kv(b'{"metadata":{"name":"p","uid":"someone-else"}}', 7)]
    with pytest.raises(AlreadyExists):
        store.create("/registry/pods/default/p", {"metadata": {"name": "p", "uid": "u1"}})


def test_a_first_attempt_that_fails_its_condition_is_not_second_guessed() -> None:
    store, (first, _, _) = store_with_fakes()
    first.kv.txn = [rpc.TxnResponse(succeeded=False)]
    with pytest.raises(AlreadyExists):
        store.create("/registry/pods/default/p", {"metadata": {"name": "p", "uid": "u1"}})
    assert first.kv.calls == ["txn"]


class FakeWatcher:
    """pyetcd's Watcher as ResumableWatch uses it: add_callback hands out ids, cancel records them."""

    def __init__(self) -> None:
        self.callbacks: dict[int, Callable[[Any], None]] = {}
        self.cancelled: list[int] = []
        self.starts: list[int] = []
        self.made = threading.Event()

    def add_callback(self, key: bytes, callback: Callable[[Any], None], **kw: Any) -> int:
        watch_id = len(self.callbacks) + 1
        self.callbacks[watch_id] = callback
        self.starts.append(kw["start_revision"])
        if watch_id > 1:
            self.made.set()
        return watch_id

    def cancel(self, watch_id: int) -> None:
        self.cancelled.append(watch_id)


class WatchingMember(FakeMember):
    def __init__(self, endpoint: str, timeout: float) -> None:
        super().__init__(endpoint, timeout)
        self._watcher = FakeWatcher()

    def watcher(self) -> FakeWatcher:
        return self._watcher


class Event:
    def __init__(self, key: bytes, revision: int) -> None:
        self.key, self.mod_revision = key, revision


class Response:
    def __init__(self, *events: Event) -> None:
        self.events = list(events)


def test_a_watch_handed_another_ranges_stream_is_made_again_from_where_it_was() -> None:
    """pyetcd pairs "created" answers with create requests in order, so after a timed-out create on a busy
    member a watch can get another watch's stream: its events are not delivered, it is made again."""
    from minik8s.store.failover import ResumableWatch

    delivered: list[Any] = []
    group = Members([URLS[0]], member=WatchingMember)
    watcher = group.members[0].watcher()
    watch = ResumableWatch(group, b"/registry/services/", b"/registry/services0", 7, delivered.append,
                           lambda rev: None)
    watch.start()
    watcher.callbacks[1](Response(Event(b"/registry/services/default/web", 8)))
    assert len(delivered) == 1  # its own range: delivered
    watcher.callbacks[1](Response(Event(b"/registry/replicasets/default/web-1", 9)))
    assert len(delivered) == 1 and watcher.cancelled == [1]
    assert watcher.made.wait(5)  # made again, from the revision after the last event it delivered
    watcher.callbacks[1](Response(Event(b"/registry/services/default/late", 10)))  # the stray stream: dropped
    watcher.callbacks[2](Response(Event(b"/registry/services/default/api", 10)))
    assert [r.events[0].key for r in delivered] == [b"/registry/services/default/web",
                                                    b"/registry/services/default/api"]
    assert watcher.starts == [7, 9]
    watch.cancel()


def test_a_watch_create_that_timed_out_costs_its_stream() -> None:
    """Its late "created" answer would be paired with the next create on the stream: the stream goes."""
    from pyetcd import exceptions as etcd_exc

    from minik8s.store.failover import Member, ResumableWatch

    member = Member("http://127.0.0.1:1", 3.0)  # no connection is made until a watch starts
    first = member.watcher()
    member.drop_watcher(first)
    second = member.watcher()
    assert second is not first
    member.drop_watcher(first)  # a stale stream: the current one stays
    assert member.watcher() is second
    member.close()

    class TimingOut(FakeWatcher):
        def add_callback(self, key: bytes, callback: Callable[[Any], None], **kw: Any) -> int:
            raise etcd_exc.WatchTimedOut()

    dropped: list[Any] = []

    class SlowMember(WatchingMember):
        def __init__(self, endpoint: str, timeout: float) -> None:
            super().__init__(endpoint, timeout)
            self._watcher = TimingOut()

        def drop_watcher(self, stale: Any) -> None:
            dropped.append(stale)

    t = FakeTime()
    group = Members([URLS[0]], FailoverConfig(window_s=1.0), clock=t.clock, sleep=t.sleep, member=SlowMember)
    watch = ResumableWatch(group, b"/registry/pods/", b"/registry/pods0", 1, lambda r: None, lambda rev: None)
    with pytest.raises(Unavailable):
        watch.start()
    assert dropped and all(w is group.members[0].watcher() for w in dropped)
