"""One etcd watch per resource, shared by every client watch on it (kube-apiserver's watch cache).

Without it every `?watch=true` request opened its own etcd watch. pyetcd runs all of an API server's
watches on one gRPC stream whose creates are serialized and whose single thread decodes every event
for every watch: with a few dozen informers (controllers, kubelets, DNS, tests) a create waited
seconds and held an API worker thread meanwhile. Here the first watch on a resource starts one etcd
watch on the whole resource prefix; its events are decoded once, kept in a bounded window and handed
to each client watch whose key prefix and start revision they match. A client watch costs no etcd
round trip; a late joiner replays the window from its start revision. The shared watch starts a
little before its first client's revision, so clients that listed a moment earlier (a control plane
starting its informers together) are in the window too.

A watch that starts before the window (an old resourceVersion) is served by its own etcd watch, as
before, so it still gets every event or a 410 from etcd. When the shared watch ends (its history was
compacted, or no member would take it back) each client watch gets the ERROR event and ends; the next
client watch on the resource starts a new shared one.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from minik8s.errors import Gone
from minik8s.store.etcd import EtcdStore, StoreEvent

log = logging.getLogger("minik8s.store.watchcache")

#: events kept per resource for watches that start behind the newest one (kube-apiserver kept 100)
WINDOW_EVENTS = 256
#: how far back (in etcd revisions) the shared watch starts before its first client's revision. Small: a
#: revision may hold many events (a transaction of 100 writes), and all of them are decoded on the one
#: thread that also answers this API server's watch creations (1,000 revisions of bulk pod writes held
#: creations up for 17 s)
BACKFILL_REVISIONS = 50
#: how long a client watch waits for another request's start of the shared watch before watching alone
START_WAIT_S = 30.0

#: a watch start slower than this is logged (etcd or its client stream is backed up)
SLOW_S = 2.0

Callback = Callable[[StoreEvent], None]


@dataclass(eq=False)
class _Subscriber:
    prefix: str
    start: int
    callback: Callback

    def wants(self, ev: StoreEvent) -> bool:
        return ev.revision >= self.start and ev.key.startswith(self.prefix)


def _handed(sub: _Subscriber, ev: StoreEvent) -> bool:
    """Give `ev` to one subscriber; False (logged) when its callback raised, e.g. its event loop is gone."""
    try:
        sub.callback(ev)
        return True
    except Exception:  # noqa: BLE001 - one broken client must not cost the others their events
        log.exception("a watch subscriber failed: dropping it", extra={"prefix": sub.prefix})
        return False


class _ResourceWatch:
    """The shared etcd watch on one resource prefix, its window of recent events and its subscribers.
    Callbacks run under the lock, so each subscriber sees the replayed window and then live events in
    revision order; they must not block (the API server's hand the event to its event loop)."""

    def __init__(self, store: EtcdStore, prefix: str, window: int, on_end: Callable[[_ResourceWatch], None]) -> None:
        self.store, self.prefix, self.window = store, prefix, window
        self._on_end = on_end
        self._lock = threading.Lock()
        self._events: collections.deque[StoreEvent] = collections.deque()
        self._since = 0  # every event from this revision on is in the window (or still to come)
        self._subscribers: set[_Subscriber] = set()
        self._ended = False
        self._cancel: Callable[[], None] | None = None
        self.ready = threading.Event()  # set when start() returned or raised

    def start(self, revision: int) -> None:
        """Watch from BACKFILL_REVISIONS before `revision` where etcd still has that history (else from
        `revision`): clients that listed a little earlier than the first watcher join the window too.
        Raises Gone when even `revision` was compacted. (etcd answers a watch from a compacted revision
        with "created" and only then a cancel, which would end the shared watch under every client that
        joined it meanwhile: so the history is checked with a one-key read at that revision first.)"""
        try:
            backfill, current = max(1, revision - BACKFILL_REVISIONS), self.store.revision()
            if self._history_kept(backfill, current):
                self._since = backfill
            elif self._history_kept(revision, current):
                self._since = revision
            else:
                raise Gone(f"too old resource version: {revision}")
            self._cancel = self.store.watch(self.prefix, self._since, self._on_event)
        except BaseException:
            self._ended = True
            raise
        finally:
            self.ready.set()

    def _history_kept(self, revision: int, current: int) -> bool:
        if revision > current:  # a client that listed at `current` watches from the next revision
            return True
        try:
            self.store.list_page(self.prefix, self.prefix, 1, revision=revision)
        except Gone:
            return False
        return True

    @property
    def ended(self) -> bool:
        return self._ended

    def _on_event(self, ev: StoreEvent) -> None:
        if ev.type == "ERROR":
            with self._lock:
                self._ended = True
                subscribers, self._subscribers = self._subscribers, set()
                self._events.clear()
                for sub in subscribers:
                    sub.callback(ev)
            self._on_end(self)
            return
        with self._lock:
            self._events.append(ev)
            if len(self._events) > self.window:
                # events of one transaction share a revision: the window starts after the one dropped
                self._since = self._events.popleft().revision + 1
            failed = [sub for sub in self._subscribers if sub.wants(ev) and not _handed(sub, ev)]
            self._subscribers.difference_update(failed)  # one that cannot take events never will

    def subscribe(self, sub: _Subscriber) -> bool:
        """Replay the window from the subscriber's start revision, then feed it live; False when the
        window no longer reaches back that far (or the shared watch ended)."""
        with self._lock:
            if self._ended or sub.start < self._since:
                return False
            for ev in self._events:
                if sub.wants(ev) and not _handed(sub, ev):
                    return True  # it failed: nothing to feed (its caller's cancel finds it gone)
            self._subscribers.add(sub)
            return True

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def stop(self) -> None:
        with self._lock:
            self._ended = True
            self._subscribers.clear()
            self._events.clear()
        if self._cancel is not None:
            self._cancel()

    def stats(self) -> tuple[int, int]:
        with self._lock:
            return len(self._subscribers), len(self._events)


class WatchCache:
    """`watch(resource_prefix, prefix, start, callback)`: EtcdStore.watch's contract, served from one
    shared etcd watch per resource prefix. `prefix` is the client's key prefix within the resource (a
    namespace), `start` the first revision it wants."""

    def __init__(self, store: EtcdStore, window: int = WINDOW_EVENTS) -> None:
        self.store, self.window = store, window
        self._lock = threading.Lock()
        self._watches: dict[str, _ResourceWatch] = {}
        self._stopped = False
        self.direct_watches = 0  # client watches that started before the window: served by etcd alone

    def watch(self, resource_prefix: str, prefix: str, start: int, callback: Callback) -> Callable[[], None]:
        """Raises Gone when `start` was compacted, Unavailable when no etcd member answers."""
        sub = _Subscriber(prefix, start, callback)
        with self._lock:
            shared = self._watches.get(resource_prefix)
            starter = shared is None and not self._stopped
            if starter:
                shared = self._watches[resource_prefix] = _ResourceWatch(self.store, resource_prefix, self.window,
                                                                         self._ended)
        if shared is not None:
            if starter:
                try:
                    shared.start(start)
                except BaseException:
                    self._ended(shared)
                    raise
            else:
                waited = time.monotonic()
                shared.ready.wait(START_WAIT_S)
                if time.monotonic() - waited > SLOW_S:
                    log.warning("waited %.1fs for the shared watch to start", time.monotonic() - waited,
                                extra={"prefix": resource_prefix})
            if shared.ready.is_set() and shared.subscribe(sub):
                return lambda: shared.unsubscribe(sub)
        with self._lock:
            self.direct_watches += 1
        return self.store.watch(prefix, start, callback)

    def _ended(self, shared: _ResourceWatch) -> None:
        with self._lock:
            if self._watches.get(shared.prefix) is shared:
                del self._watches[shared.prefix]
        if not self._stopped:
            log.info("shared watch ended; the next watch on the resource starts a new one",
                     extra={"prefix": shared.prefix})

    def stats(self) -> dict[str, tuple[int, int]]:
        """resource prefix -> (client watches, events in the window)."""
        with self._lock:
            watches = dict(self._watches)
        return {prefix: shared.stats() for prefix, shared in watches.items()}

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            watches, self._watches = list(self._watches.values()), {}
        for shared in watches:
            shared.stop()
