"""The API server on a real 3-member etcd cluster keeps serving when one member is SIGKILLed.

Each test starts its own cluster (127.0.0.1, free ports, data in tmp_path) and an API server on
all three endpoints, keeps a writer going through the SDK, kills one member (the one the store
uses, or the leader), and checks that writes keep being acknowledged within a bounded time, that a
watch opened before the kill delivers every acknowledged create in order and once, and that every
acknowledged write is in etcd afterwards.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from minik8s import Client, errors
from minik8s.cluster import etcd_choice, local
from minik8s.cluster.config import ClusterConfig
from minik8s.store import EtcdStore, StoreEvent
from minik8s.store.failover import FailoverConfig
from tests.conftest import TEST_TOKEN, free_port, start_etcd, wait_etcd_healthy

MEMBERS = 3
#: A write may be retried on 503 for this long (a leader election is 1-3 s here; the store itself
#: keeps trying for 10 s before it answers 503).
RETRY_BUDGET_S = 25.0
RETRY_PAUSE_S = 0.1
#: Acknowledged creates wanted after the kill, to show the cluster keeps serving.
WRITES_AFTER_KILL = 20
WAIT_S = 60.0
POLL_S = 0.05


@dataclass
class EtcdCluster:
    data: Path
    urls: list[str]
    procs: list[subprocess.Popen[bytes]]
    names: list[str]
    peer_ports: list[int]
    initial: str

    def status(self, i: int) -> dict[str, Any]:
        body: dict[str, Any] = httpx.post(f"{self.urls[i]}/v3/maintenance/status", json={}, timeout=2).json()
        return body

    def leader(self) -> int:
        """Index of the leader, as the live members agree on it once an election settles."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for i, proc in enumerate(self.procs):
                if proc.poll() is None:
                    try:
                        st = self.status(i)
                    except httpx.HTTPError:
                        continue
                    if st.get("leader") and st["leader"] == st["header"]["member_id"]:
                        return i
            time.sleep(POLL_S)
        raise AssertionError("no etcd leader")

    def kill(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(10)

    def restart(self, i: int) -> None:
        """Start killed member `i` again on its data dir, as an operator would."""
        port = int(self.urls[i].rsplit(":", 1)[1])
        self.procs[i] = start_etcd(self.data, self.names[i], port, self.peer_ports[i], self.initial)


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    names = [f"m{i}" for i in range(MEMBERS)]
    client_ports = [free_port() for _ in names]
    peer_ports = [free_port() for _ in names]
    initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in zip(names, peer_ports, strict=True))
    procs = [start_etcd(tmp_path, n, c, p, initial) for n, c, p in zip(names, client_ports, peer_ports, strict=True)]
    cluster = EtcdCluster(tmp_path, [f"http://127.0.0.1:{p}" for p in client_ports], procs, names, peer_ports,
                          initial)
    try:
        for url in cluster.urls:
            wait_etcd_healthy(url, procs, tmp_path)
        yield cluster
    finally:
        for proc in cluster.procs:  # only the members this test started, by their Popen handles
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@dataclass
class Api:
    server: Any
    url: str
    client: Client


def start_api(endpoints: list[str]) -> Api:
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    port = free_port()
    server = ApiServer(ApiServerConfig(etcd_endpoints=endpoints, token=TEST_TOKEN, port=port, pod_cidr="10.0.0.0/8"))
    thread = ServerThread(server.app, ["127.0.0.1"], port, name="etcd-cluster-apiserver")
    thread.start()
    server.thread = thread  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    return Api(server, url, Client(url, TEST_TOKEN))


def stop_api(api: Api) -> None:
    api.client.close()
    api.server.thread.stop()
    api.server.store.close()


def pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}}


@dataclass
class Writer:
    """Creates pods one after another and sets a counter label on one pod after each create,
    retrying on 503 within RETRY_BUDGET_S; records what the API acknowledged."""

    client: Client
    tag: str
    created: list[tuple[str, str]] = field(default_factory=list)  # (name, uid) acknowledged
    counter: list[int] = field(default_factory=list)  # counter values acknowledged, in order
    latencies: list[float] = field(default_factory=list)
    unavailable: int = 0
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def retry(self, write: Any) -> Any:
        t0 = time.monotonic()
        while True:
            try:
                out = write()
                self.latencies.append(time.monotonic() - t0)
                return out
            except errors.Unavailable:
                self.unavailable += 1
                if time.monotonic() - t0 > RETRY_BUDGET_S:
                    raise
                time.sleep(RETRY_PAUSE_S)

    def run(self) -> None:
        try:
            self.client.create(pod(f"{self.tag}-counter", {"counter": "0"}))
            i = 0
            while not self.stop.is_set():
                name = f"{self.tag}-{i}"
                try:
                    obj = self.retry(lambda n=name: self.client.create(pod(n, {"t": self.tag})))
                    self.created.append((name, obj.metadata.uid))
                except errors.AlreadyExists:
                    pass  # a create answered 503 that landed after all: never acknowledged, proves nothing
                i += 1
                self.retry(lambda n=i: self.client.patch("Pod", f"{self.tag}-counter",
                                                         {"metadata": {"labels": {"counter": str(n)}}}))
                self.counter.append(i)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def wait_for(what: str, cond: Any, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(POLL_S)


def endpoint_order(cluster: EtcdCluster, first: str) -> list[str]:
    """The cluster's endpoints with the leader (`first="leader"`) or a follower first."""
    leader = cluster.leader()
    rest = [i for i in range(MEMBERS) if i != leader]
    order = [leader, *rest] if first == "leader" else [rest[0], leader, rest[1]]
    return [cluster.urls[i] for i in order]


@pytest.mark.parametrize(("first", "victim"), [
    ("follower", "in-use"),  # failover only: the cluster keeps its leader
    ("follower", "leader"),  # election only: the member in use stays
    ("leader", "in-use"),  # both at once
])
def test_writes_and_watches_survive_losing_one_member(etcd_cluster: EtcdCluster, first: str, victim: str) -> None:
    api = start_api(endpoint_order(etcd_cluster, first))
    try:
        _drive_and_kill(api, etcd_cluster, victim)
    finally:
        stop_api(api)


def _drive_and_kill(api: Api, cluster: EtcdCluster, victim: str) -> None:
    tag = f"w{victim.replace('-', '')}"
    start_rv = api.client.list("Pod", "default").resource_version
    seen: list[str] = []
    watch_error: list[BaseException] = []
    watch_done = threading.Event()

    def watch() -> None:
        try:
            for ev in api.client.watch("Pod", "default", start_rv, label_selector=f"t={tag}", timeout_seconds=WAIT_S):
                assert ev.type == "ADDED", ev.type
                seen.append(ev.object.metadata.name)
                if watch_done.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            watch_error.append(exc)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    writer = Writer(api.client, tag)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    wait_for("writes before the kill", lambda: len(writer.created) >= 5 or writer.error is not None)
    in_use = cluster.urls.index(api.server.store.endpoint_in_use)
    index = in_use if victim == "in-use" else cluster.leader()
    cluster.kill(index)
    acked_at_kill = len(writer.created)
    wait_for("writes after the kill",
             lambda: len(writer.created) >= acked_at_kill + WRITES_AFTER_KILL or writer.error is not None)
    writer.stop.set()
    thread.join(RETRY_BUDGET_S * 2)
    assert writer.error is None, f"a write was not acknowledged within {RETRY_BUDGET_S}s: {writer.error!r}"
    assert max(writer.latencies) < RETRY_BUDGET_S
    print(f"killed {victim} member: {len(writer.created) - acked_at_kill} creates acknowledged after the kill, "
          f"slowest write {max(writer.latencies):.2f}s, {writer.unavailable} answers 503")
    if victim == "in-use":
        assert api.server.store.endpoint_in_use != cluster.urls[index]

    # the watch opened before the kill delivers every acknowledged create, once each, in order
    names = [n for n, _ in writer.created]
    wait_for("the watch to deliver every acknowledged create", lambda: set(names) <= set(seen) or bool(watch_error))
    assert not watch_error, watch_error
    assert len(seen) == len(set(seen)), f"events delivered twice: {seen}"
    assert [n for n in seen if n in set(names)] == names
    watch_done.set()
    api.client.create(pod(f"{tag}-end", {"t": tag}))  # wakes the watch up, so it closes its stream
    watcher.join(WAIT_S)

    # every acknowledged write is in etcd, read from the surviving members only
    survivors = [u for i, u in enumerate(cluster.urls) if i != index]
    store = EtcdStore(survivors)
    try:
        for name, uid in writer.created:
            assert store.get(f"/registry/pods/default/{name}")["metadata"]["uid"] == uid
            assert api.client.get("Pod", name).metadata.uid == uid
        counter = store.get(f"/registry/pods/default/{tag}-counter")
        assert counter["metadata"]["labels"]["counter"] == str(writer.counter[-1])
    finally:
        store.close()


def test_a_watch_that_must_move_after_its_history_was_compacted_ends_gone(etcd_cluster: EtcdCluster) -> None:
    store = EtcdStore(etcd_cluster.urls)
    try:
        assert store.endpoint_in_use == etcd_cluster.urls[0]
        events: list[StoreEvent] = []
        start = store.revision() + 1
        cancel = store.watch("/registry/quiet/", start, events.append)
        for i in range(3):  # history outside the watched prefix, then compacted away
            store.create(f"/registry/other/o{i}", {"metadata": {"name": f"o{i}"}})
        compacted = store.revision()
        store.compact(compacted)
        etcd_cluster.kill(0)  # the member serving the watch: it must resume from `start` elsewhere
        wait_for("the watch to end", lambda: bool(events))
        assert events == [StoreEvent("ERROR", "/registry/quiet/", None, compacted)]
        cancel()
    finally:
        store.close()


def test_a_watch_resumes_on_another_member_without_gaps(etcd_cluster: EtcdCluster) -> None:
    store = EtcdStore(etcd_cluster.urls)
    try:
        events: list[StoreEvent] = []
        cancel = store.watch("/registry/moving/", store.revision() + 1, events.append)
        store.create("/registry/moving/a", {"metadata": {"name": "a"}})
        wait_for("the first event", lambda: len(events) == 1)
        etcd_cluster.kill(0)  # the member serving the watch
        # written through another member while the watch has no stream
        other = EtcdStore(etcd_cluster.urls[1:])
        try:
            b = other.create("/registry/moving/b", {"metadata": {"name": "b"}})
            other.update("/registry/moving/a", {"metadata": {"name": "a", "labels": {"x": "1"}}}, None)
        finally:
            other.close()
        wait_for("the events written after the kill", lambda: len(events) == 3)
        assert [(e.type, e.key) for e in events] == [
            ("ADDED", "/registry/moving/a"), ("ADDED", "/registry/moving/b"), ("MODIFIED", "/registry/moving/a")]
        assert events[1].revision == int(b["metadata"]["resourceVersion"])
        assert events[2].prev is not None and events[2].prev["metadata"]["name"] == "a"
        cancel()
    finally:
        store.close()


def test_status_shows_each_external_member_and_up_needs_a_healthy_one(etcd_cluster: EtcdCluster) -> None:
    # a cluster config of its own (state dir, bridge, netns prefix, addresses): only read here; a short
    # state dir path, as dockerd's unix sockets need
    state = Path(tempfile.mkdtemp(prefix="mk8ss", dir="/tmp"))
    try:
        _check_status_rows(etcd_cluster, ClusterConfig(state_dir=state, nodes=1, underlay_bridge="mk8setcd1",
                                                       underlay_cidr="10.203.0.0/24", netns_prefix="mk8setcd1-"))
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _check_status_rows(etcd_cluster: EtcdCluster, cfg: ClusterConfig) -> None:
    etcd_choice.record(cfg, etcd_cluster.urls)
    leader = etcd_cluster.leader()
    victim = (leader + 1) % MEMBERS
    etcd_cluster.kill(victim)
    rows = [r for r in local.status(cfg) if r.component.startswith("etcd")]
    assert [r.component for r in rows] == [f"etcd-{i}" for i in range(MEMBERS)]
    assert [r.healthy for r in rows] == [i != victim for i in range(MEMBERS)], rows
    assert f"{etcd_cluster.urls[victim]} not answering" in rows[victim].detail
    assert rows[leader].detail.startswith(f"external {etcd_cluster.urls[leader]} leader, etcd 3.")
    etcd_choice.check_reachable(etcd_cluster.urls)  # two members with a leader: `up` may go on

    etcd_cluster.kill(leader)  # the last member has no quorum left
    with pytest.raises(errors.Unavailable, match="no etcd endpoint is healthy") as exc:
        etcd_choice.check_reachable(etcd_cluster.urls)
    assert all(url in exc.value.message for url in etcd_cluster.urls)


def test_losing_quorum_answers_503_in_bounded_time_then_recovers(etcd_cluster: EtcdCluster) -> None:
    api = start_api(etcd_cluster.urls)
    try:
        acked = [api.client.create(pod("q-0", {"t": "quorum"}))]
        leader = etcd_cluster.leader()
        followers = [i for i in range(MEMBERS) if i != leader]
        for i in followers:
            etcd_cluster.kill(i)
        t0 = time.monotonic()
        with pytest.raises(errors.Unavailable, match="etcd unavailable"):
            api.client.create(pod("q-1", {"t": "quorum"}))  # unknown outcome: not acknowledged
        elapsed = time.monotonic() - t0
        cfg = FailoverConfig()
        assert elapsed < cfg.window_s + cfg.attempt_timeout_s + 5, f"503 after {elapsed:.1f}s"

        etcd_cluster.restart(followers[0])  # quorum again: writes are acknowledged again
        writer = Writer(api.client, "quorum")
        acked.append(writer.retry(lambda: api.client.create(pod("q-2", {"t": "quorum"}))))
        assert max(writer.latencies) < RETRY_BUDGET_S
        for obj in acked:
            assert api.client.get("Pod", obj.metadata.name).metadata.uid == obj.metadata.uid
        print(f"quorum lost: 503 after {elapsed:.1f}s; first write after a member came back took "
              f"{writer.latencies[-1]:.1f}s")
    finally:
        stop_api(api)
