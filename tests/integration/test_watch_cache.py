"""The API server's watch cache on a real etcd: one etcd watch per resource, fanned out to client watches.

Store-level tests drive `WatchCache` directly (keys of their own, a window small enough to overrun);
the API-level ones watch through HTTP as clients do.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import pytest

from minik8s import Client, errors
from minik8s.errors import Gone
from minik8s.store import EtcdStore, StoreEvent
from minik8s.store.watchcache import WINDOW_EVENTS, WatchCache
from tests.conftest import uniq

WAIT_S = 10.0


@pytest.fixture
def store(etcd_endpoint: str) -> Iterator[EtcdStore]:
    s = EtcdStore([etcd_endpoint])
    yield s
    s.close()


class Feed:
    """A callback that keeps (type, key) of what it was handed, and waits for a count of them."""

    def __init__(self) -> None:
        self.events: queue.Queue[StoreEvent] = queue.Queue()

    def __call__(self, ev: StoreEvent) -> None:
        self.events.put(ev)

    def take(self, count: int) -> list[tuple[str, str]]:
        return [(ev.type, ev.key) for ev in (self.events.get(timeout=WAIT_S) for _ in range(count))]

    def quiet(self) -> bool:
        try:
            self.events.get(timeout=0.3)
        except queue.Empty:
            return True
        return False


def obj(name: str) -> dict[str, object]:
    return {"metadata": {"name": name}}


def test_one_etcd_watch_serves_every_namespace_in_order(store: EtcdStore) -> None:
    resource = f"/registry/{uniq('things')}/"
    cache = WatchCache(store)
    start = store.revision() + 1
    a, b, everything = Feed(), Feed(), Feed()
    cancels = [cache.watch(resource, resource + "a/", start, a), cache.watch(resource, resource + "b/", start, b),
               cache.watch(resource, resource, start, everything)]
    try:
        store.create(resource + "a/x", obj("x"))
        store.create(resource + "b/y", obj("y"))
        x = store.get(resource + "a/x")
        store.update(resource + "a/x", {**x, "data": 1}, None)
        store.delete(resource + "b/y")
        assert a.take(2) == [("ADDED", resource + "a/x"), ("MODIFIED", resource + "a/x")]
        assert b.take(2) == [("ADDED", resource + "b/y"), ("DELETED", resource + "b/y")]
        assert [t for t, _ in everything.take(4)] == ["ADDED", "ADDED", "MODIFIED", "DELETED"]
        assert a.quiet() and b.quiet()
        assert cache.stats() == {resource: (3, 4)} and cache.direct_watches == 0
    finally:
        for cancel in cancels:
            cancel()
        cache.stop()
    assert cache.stats() == {}


def test_a_late_watch_replays_the_window_from_its_revision_then_goes_live(store: EtcdStore) -> None:
    resource = f"/registry/{uniq('things')}/"
    cache = WatchCache(store)
    first = Feed()
    cancel = cache.watch(resource, resource, store.revision() + 1, first)
    try:
        revisions = [int(store.create(resource + f"n/{i}", obj(str(i)))["metadata"]["resourceVersion"])
                     for i in range(5)]
        assert len(first.take(5)) == 5
        late = Feed()
        cancel_late = cache.watch(resource, resource, revisions[2], late)  # as a client that listed at [1]
        assert late.take(3) == [("ADDED", resource + f"n/{i}") for i in (2, 3, 4)]
        store.create(resource + "n/5", obj("5"))
        assert late.take(1) == [("ADDED", resource + "n/5")] and late.quiet()  # live, and nothing twice
        cancel_late()
        store.create(resource + "n/6", obj("6"))
        assert late.quiet() and len(first.take(2)) == 2  # a cancelled watch hears nothing more
        assert cache.direct_watches == 0
    finally:
        cancel()
        cache.stop()


def test_a_watch_from_a_little_before_the_first_one_is_served_from_the_window(store: EtcdStore) -> None:
    """A control plane starting: one informer listed, another listed a moment later and watched first."""
    resource = f"/registry/{uniq('things')}/"
    cache = WatchCache(store)
    early = int(store.create(resource + "n/early", obj("early"))["metadata"]["resourceVersion"])
    first = Feed()
    cancels = [cache.watch(resource, resource, store.revision() + 1, first)]
    try:
        earlier = Feed()
        cancels.append(cache.watch(resource, resource, early, earlier))
        store.create(resource + "n/late", obj("late"))
        assert earlier.take(2) == [("ADDED", resource + "n/early"), ("ADDED", resource + "n/late")]
        assert first.take(1) == [("ADDED", resource + "n/late")] and first.quiet()
        assert cache.direct_watches == 0
    finally:
        for c in cancels:
            c()
        cache.stop()


def test_a_watch_from_before_the_window_gets_its_own_etcd_watch(store: EtcdStore) -> None:
    resource = f"/registry/{uniq('things')}/"
    cache = WatchCache(store, window=3)
    old = store.revision() + 1
    live = Feed()
    cancel = cache.watch(resource, resource, old, live)
    cancels = [cancel]
    try:
        for i in range(6):
            store.create(resource + f"n/{i}", obj(str(i)))
        assert len(live.take(6)) == 6
        behind = Feed()
        cancels.append(cache.watch(resource, resource, old, behind))  # 6 events ago; the window holds 3
        assert behind.take(6) == [("ADDED", resource + f"n/{i}") for i in range(6)]
        assert cache.direct_watches == 1
    finally:
        for c in cancels:
            c()
        cache.stop()


def test_on_compacted_history_the_shared_watch_starts_where_history_is_kept(store: EtcdStore) -> None:
    """The backfill reaches into compacted history: the shared watch starts at the client's revision instead
    of ending under its clients; a watch from a compacted revision is a Gone (shared) or an ERROR (its own)."""
    resource, fresh = f"/registry/{uniq('things')}/", f"/registry/{uniq('things')}/"
    for i in range(3):
        store.create(resource + f"n/{i}", obj(str(i)))
    store.compact(store.revision())
    cache = WatchCache(store)
    live = Feed()
    cancels = [cache.watch(resource, resource, store.revision() + 1, live)]
    try:
        store.create(resource + "n/new", obj("new"))
        assert live.take(1) == [("ADDED", resource + "n/new")] and live.quiet()
        with pytest.raises(Gone):
            cache.watch(fresh, fresh, 2, Feed())
        old = Feed()
        cancels.append(cache.watch(resource, resource, 2, old))  # before the window: etcd's own answer
        assert [t for t, _ in old.take(1)] == ["ERROR"]
        assert live.quiet() and cache.stats()[resource][0] == 1
    finally:
        for c in cancels:
            c()
        cache.stop()


def test_concurrent_first_watches_share_one_start(store: EtcdStore) -> None:
    resource = f"/registry/{uniq('things')}/"
    cache = WatchCache(store)
    start = store.revision() + 1
    feeds = [Feed() for _ in range(20)]
    cancels: list[object] = []
    threads = [threading.Thread(target=lambda f=f: cancels.append(cache.watch(resource, resource, start, f)))
               for f in feeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    try:
        store.create(resource + "n/a", obj("a"))
        assert all(f.take(1) == [("ADDED", resource + "n/a")] for f in feeds)
        assert cache.stats() == {resource: (20, 1)} and cache.direct_watches == 0
    finally:
        cache.stop()


def test_a_watch_older_than_compaction_and_the_window_is_gone(client: Client, etcd_endpoint: str) -> None:
    """Through the API: a resourceVersion the cache's window no longer reaches and etcd compacted is a 410."""
    namespace = uniq("wc")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    old = client.list("ConfigMap", namespace).resource_version
    live = client.watch("ConfigMap", namespace, old, timeout_seconds=30)
    client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c0"}}, namespace)
    assert next(iter(live)).object.metadata.name == "c0"  # the shared watch on ConfigMaps is running now
    for i in range(1, WINDOW_EVENTS + 1):  # and its window has moved past `old`
        client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}}, namespace)
    store = EtcdStore([etcd_endpoint])
    try:
        store.compact(store.revision())
    finally:
        store.close()
    with pytest.raises(errors.Gone):
        next(iter(client.watch("ConfigMap", namespace, old, timeout_seconds=3)))
