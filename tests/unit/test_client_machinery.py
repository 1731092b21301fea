"""The work queue and the informer, with in-memory doubles (no server)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from minik8s.api import types as t
from minik8s.client.informer import Informer
from minik8s.client.sdk import ObjectList, WatchEvent
from minik8s.client.workqueue import WorkQueue
from minik8s.errors import Gone


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_queue_dedups_and_never_hands_out_a_key_twice_at_once() -> None:
    q = WorkQueue()
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    key = q.get(timeout=0)
    assert key == "a"
    q.add("a")  # while processing: marked dirty, not handed out
    assert q.get(timeout=0) == "b"
    assert q.get(timeout=0) is None
    q.done("a")
    assert q.get(timeout=0) == "a"


def test_queue_delays_and_rate_limits_with_backoff() -> None:
    clock = FakeClock()
    q = WorkQueue(base_delay=1.0, max_delay=4.0, clock=clock)
    q.add_after("x", 5)
    assert q.get(timeout=0) is None
    clock.now = 5
    assert q.get(timeout=0) == "x"
    q.done("x")
    delays = []
    for _ in range(4):
        start = clock.now
        q.add_rate_limited("x")
        clock.now += 100
        assert q.get(timeout=0) == "x"
        q.done("x")
        delays.append(start)
    assert q.num_requeues("x") == 4
    q.forget("x")
    assert q.num_requeues("x") == 0


def test_queue_shutdown_wakes_workers() -> None:
    q = WorkQueue()
    got: list[Any] = []
    th = threading.Thread(target=lambda: got.append(q.get()))
    th.start()
    q.shutdown()
    th.join(2)
    assert got == [None]


def _pod(name: str, rv: str) -> t.Pod:
    return t.Pod.model_validate({"apiVersion": "v1", "kind": "Pod",
                                 "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
                                 "spec": {"containers": [{"name": "a", "image": "busybox"}]}})


class FakeClient:
    """Lists two pods at rv 10, then streams events; the second watch gets 410 and must relist."""

    def __init__(self) -> None:
        self.lists = 0
        self.watch_calls: list[str | None] = []
        self.done = threading.Event()

    def list(self, kind: str, namespace: Any, label_selector: Any, field_selector: Any) -> ObjectList:
        self.lists += 1
        if self.lists == 1:
            return ObjectList([_pod("a", "5"), _pod("b", "6")], "10")
        return ObjectList([_pod("a", "12"), _pod("c", "13")], "20")

    def watch(self, kind: str, namespace: Any, rv: str | None, *_a: Any, **_k: Any) -> Iterator[WatchEvent]:
        self.watch_calls.append(rv)
        if len(self.watch_calls) == 1:
            yield WatchEvent("MODIFIED", _pod("a", "11"))
            yield WatchEvent("DELETED", _pod("b", "12"))
            raise Gone("too old")
        self.done.set()
        threading.Event().wait(5)
        return


def test_informer_lists_watches_and_relists_after_gone() -> None:
    fake = FakeClient()
    seen: list[tuple[str, str]] = []
    inf = Informer(fake, "Pod", resync_seconds=3600)  # type: ignore[arg-type]
    inf.add_handler(on_add=lambda o: seen.append(("add", o.metadata.name)),
                    on_update=lambda old, new: seen.append(("update", new.metadata.name)),
                    on_delete=lambda o: seen.append(("delete", o.metadata.name)))
    inf.start()
    assert inf.wait_synced(5)
    assert fake.done.wait(10)
    inf.stop()
    assert fake.watch_calls == ["10", None] or fake.watch_calls[0] == "10"
    assert seen[:2] == [("add", "a"), ("add", "b")]
    assert ("update", "a") in seen and ("delete", "b") in seen and ("add", "c") in seen
    assert sorted(o.metadata.name for o in inf.list()) == ["a", "c"]
    assert inf.get("default/a").metadata.resourceVersion == "12"
