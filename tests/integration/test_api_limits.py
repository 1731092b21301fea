"""What the API refuses because it cannot serve it, against a real etcd + apiserver over HTTP:
bodies over 3 MiB (413, declared or streamed), objects over etcd's 1.5 MiB (422), lists of 10,000
pods (whole and in kubectl's chunks of 500), and watchers too slow to keep up (closed with 410
Expired, after which the informer relists)."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from minik8s import Client, jsonc
from minik8s.apiserver.limits import MAX_OBJECT_BYTES, MAX_REQUEST_BODY_BYTES
from minik8s.client.informer import Informer
from minik8s.errors import RequestEntityTooLarge
from tests.conftest import TEST_TOKEN, free_port, open_apiserver, uniq, wait_for, write_kubeconfig

MANY_PODS = 10_000
STORE_BATCH = 100  # puts per etcd transaction (etcd allows 128)
KUBECTL_CHUNK = 500
SLOW_WATCH_QUEUE = 20  # events a watcher may fall behind on the test's own apiserver
BIG_VALUE_BYTES = 200_000  # per event, so a few dozen events overfill the socket buffers
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}

log = logging.getLogger(__name__)


@pytest.fixture
def http(apiserver: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=apiserver, headers=AUTH, timeout=120) as c:
        yield c


@pytest.fixture
def namespace(client: Client) -> str:
    name = uniq("limits")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def configmap(name: str, size: int = 0) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"blob": "x" * size}}


def pod(name: str, args_bytes: int = 0) -> dict[str, Any]:
    """A small pod, or one whose container args add up to about `args_bytes` (no per-field cap there,
    unlike a ConfigMap's 1 MiB of data, so only the object size limit refuses it)."""
    args = ["a" * 1000] * (args_bytes // 1000)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "many"}},
            "spec": {"containers": [{"name": "main", "image": "busybox:1", **({"args": args} if args else {})}]}}


# --- request bodies and object sizes ---------------------------------------------------------------
def test_declared_body_over_3mib_is_413_and_nothing_is_created(http: httpx.Client, client: Client,
                                                              namespace: str) -> None:
    name = uniq("big")
    body = jsonc.dumps(configmap(name, 4 * 1024 * 1024))  # a 4 MiB body
    r = http.post(f"/api/v1/namespaces/{namespace}/configmaps", content=body,
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    status = r.json()
    assert status["kind"] == "Status" and status["reason"] == "RequestEntityTooLarge"
    assert str(MAX_REQUEST_BODY_BYTES) in status["message"]
    assert http.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}").status_code == 404
    # the SDK sends its whole body before it reads: it still gets the 413, not a reset connection
    with pytest.raises(RequestEntityTooLarge, match="request body is too large"):
        client.create(configmap(name, 4 * 1024 * 1024), namespace)


def test_streamed_body_over_3mib_is_413_without_a_length(http: httpx.Client, namespace: str) -> None:
    """A chunked body declares no length: it is counted as it arrives and refused once over the cap."""
    name = uniq("chunked")
    body = jsonc.dumps(configmap(name, 4 * 1024 * 1024))
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for i in range(0, len(body), 64 * 1024):
            sent += 64 * 1024
            yield body[i:i + 64 * 1024]

    try:
        r = http.post(f"/api/v1/namespaces/{namespace}/configmaps", content=chunks(),
                      headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        assert r.json()["reason"] == "RequestEntityTooLarge"
    except httpx.WriteError:  # the server answered and closed while the client still sent: refused early
        assert sent < len(body)
    assert http.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}").status_code == 404
    # the server still serves after refusing
    assert http.get(f"/api/v1/namespaces/{namespace}/configmaps").status_code == 200


def test_body_just_under_the_cap_is_read(http: httpx.Client, namespace: str) -> None:
    """Under 3 MiB the body is read and judged on its content: here an object over etcd's 1.5 MiB."""
    name = uniq("mid")
    body = jsonc.dumps(pod(name, MAX_OBJECT_BYTES + 10_000))
    assert len(body) < MAX_REQUEST_BODY_BYTES
    r = http.post(f"/api/v1/namespaces/{namespace}/pods", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text[:300]
    status = r.json()
    assert status["reason"] == "RequestEntityTooLarge" and "1.5 MiB" in status["message"]
    assert f'Pod "{name}"' in status["message"]
    assert http.get(f"/api/v1/namespaces/{namespace}/pods/{name}").status_code == 404
    # a pod just under the limit is stored
    assert http.post(f"/api/v1/namespaces/{namespace}/pods", json=pod(uniq("fits"), MAX_OBJECT_BYTES - 10_000)
                     ).status_code == 201


def test_object_growing_over_1_5mib_is_refused_and_unchanged(http: httpx.Client, client: Client,
                                                             namespace: str) -> None:
    name = uniq("grow")
    url = f"/api/v1/namespaces/{namespace}/pods/{name}"
    created = http.post(f"/api/v1/namespaces/{namespace}/pods", json=pod(name)).json()
    labels = {f"l{i}": "v" * 60 for i in range(MAX_OBJECT_BYTES // 60)}  # labels: no total cap, unlike annotations
    big = {**created, "metadata": {**created["metadata"], "labels": labels}}
    for method, kwargs in (("PUT", {"json": big}), ("PUT", {"json": big, "params": {"dryRun": "All"}}),
                           ("PATCH", {"content": jsonc.dumps({"metadata": {"labels": labels}}),
                                      "headers": {"Content-Type": "application/merge-patch+json"}})):
        r = http.request(method, url, **kwargs)  # type: ignore[arg-type]
        assert r.status_code == 422, (method, r.text)
        assert r.json()["reason"] == "RequestEntityTooLarge"
    assert http.get(url).json()["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    # the SDK raises it as an error whose message says why
    with pytest.raises(Exception, match="too large to store"):
        client.update(big)


# --- 10,000 pods -------------------------------------------------------------------------------------
def store_many(http: httpx.Client, etcd_endpoint: str, namespace: str, names: list[str]) -> None:
    """Setup through etcd directly, in transactions of STORE_BATCH puts (10,000 creates through the API
    take ~40 s here; the API's create path is tested elsewhere). Each pod is exactly what the API
    stores: the server's own dry-run answer for it, with its own uid."""
    import grpc
    from pyetcd.etcdrpc import KVStub
    from pyetcd.etcdrpc import rpc_pb2 as rpc

    r = http.post(f"/api/v1/namespaces/{namespace}/pods", json=pod("template"), params={"dryRun": "All"})
    assert r.status_code == 200, r.text
    template = r.json()
    with grpc.insecure_channel(etcd_endpoint.removeprefix("http://")) as channel:
        kv = KVStub(channel)
        for i in range(0, len(names), STORE_BATCH):
            puts = []
            for name in names[i:i + STORE_BATCH]:
                obj = {**template, "metadata": {**template["metadata"], "name": name, "uid": str(uuid.uuid4())}}
                puts.append(rpc.RequestOp(request_put=rpc.PutRequest(
                    key=f"/registry/pods/{namespace}/{name}".encode(), value=jsonc.dumps(obj))))
            kv.Txn(rpc.TxnRequest(success=puts), timeout=30)


def remove_many(etcd_endpoint: str, namespace: str) -> None:
    """The namespace's pods, gone in one etcd delete: 10,000 pods left in the session's etcd would be listed
    by every informer of the later tests (seconds of CPU each, on a 2-core machine)."""
    import grpc
    from pyetcd.etcdrpc import KVStub
    from pyetcd.etcdrpc import rpc_pb2 as rpc

    prefix = f"/registry/pods/{namespace}/".encode()
    with grpc.insecure_channel(etcd_endpoint.removeprefix("http://")) as channel:
        KVStub(channel).DeleteRange(rpc.DeleteRangeRequest(key=prefix, range_end=prefix[:-1] + b"0"), timeout=30)


@pytest.fixture
def many_pods(http: httpx.Client, etcd_endpoint: str, namespace: str) -> Iterator[list[str]]:
    names = sorted(f"pod-{i:05d}" for i in range(MANY_PODS))
    store_many(http, etcd_endpoint, namespace, names)
    yield names
    remove_many(etcd_endpoint, namespace)


def test_ten_thousand_pods_list_whole_and_in_chunks(http: httpx.Client, namespace: str, many_pods: list[str],
                                                    tmp_path: Path, open_api: str) -> None:
    names = many_pods
    # one unpaginated list: well over gRPC's default 4 MiB receive limit from etcd
    started = time.monotonic()
    r = http.get(f"/api/v1/namespaces/{namespace}/pods")
    whole_s = time.monotonic() - started
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert [p["metadata"]["name"] for p in body["items"]] == names
    assert len(r.content) > 4 * 1024 * 1024
    # all namespaces, as `kubectl get pods -A` without chunking
    everywhere = http.get("/api/v1/pods").json()
    assert len([p for p in everywhere["items"] if p["metadata"]["namespace"] == namespace]) == MANY_PODS
    # kubectl's chunks of 500, all read at the first chunk's revision
    started = time.monotonic()
    seen: list[str] = []
    token, revision = "", None
    while True:
        params: dict[str, Any] = {"limit": KUBECTL_CHUNK, **({"continue": token} if token else {})}
        page = http.get(f"/api/v1/namespaces/{namespace}/pods", params=params).json()
        revision = revision or page["metadata"]["resourceVersion"]
        assert page["metadata"]["resourceVersion"] == revision
        seen += [p["metadata"]["name"] for p in page["items"]]
        token = page["metadata"].get("continue", "")
        if not token:
            break
    chunked_s = time.monotonic() - started
    assert seen == names
    # kubectl itself, which asks in chunks of 500 (--chunk-size's default; open_api checked it is installed)
    kubeconfig = write_kubeconfig(tmp_path / "kc", open_api, namespace)
    started = time.monotonic()
    proc = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "get", "pods", "-o", "name"],
                          capture_output=True, text=True, timeout=300)
    kubectl_s = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout.split() == [f"pod/{n}" for n in names]
    # timing is reported, never judged here (benchmarks/list_pods.py measures it against a baseline)
    log.info("10k pods: whole list %.2f s (%d bytes), in chunks of 500 %.2f s, kubectl get pods %.2f s",
             whole_s, len(r.content), chunked_s, kubectl_s)


@pytest.fixture(scope="module")
def open_api(etcd_endpoint: str) -> Iterator[str]:
    """An apiserver of its own without a token, for kubectl (which sends no token over plain HTTP)."""
    with open_apiserver(etcd_endpoint, "limits-kubectl-apiserver") as url:
        yield url


# --- slow watchers -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_queue_api(etcd_endpoint: str) -> Iterator[str]:
    """An apiserver of its own whose watchers may fall only SLOW_WATCH_QUEUE events behind."""
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    port = free_port()
    api = ApiServer(ApiServerConfig(etcd_endpoints=[etcd_endpoint], token=TEST_TOKEN, port=port,
                                    pod_cidr="10.0.0.0/8"))
    api.watch_queue_max = SLOW_WATCH_QUEUE
    server = ServerThread(api.app, ["127.0.0.1"], port, name="slow-watch-apiserver")
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def open_unread_watch(port: int, path: str) -> socket.socket:
    """A watch request whose reader then reads nothing (a tiny receive buffer, so the server backs up)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\n\r\n".encode())
    return sock


def read_watch_lines(sock: socket.socket) -> list[dict[str, Any]]:
    """Everything the server sent until it ended the stream (chunked transfer encoding)."""
    sock.settimeout(30)
    data = b""
    while not data.endswith(b"0\r\n\r\n"):
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    body = data.split(b"\r\n\r\n", 1)[1]
    raw, payload = b"", body
    while payload:  # de-chunk
        size_line, _, rest = payload.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        raw += rest[:size]
        payload = rest[size + 2:]
    return [jsonc.loads(line) for line in raw.splitlines() if line.strip()]


def test_slow_watcher_is_closed_with_410_expired_not_dropped(small_queue_api: str) -> None:
    with httpx.Client(base_url=small_queue_api, headers=AUTH, timeout=60) as http:
        ns = uniq("slow")
        http.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).raise_for_status()
        name = uniq("cm")
        created = http.post(f"/api/v1/namespaces/{ns}/configmaps", json=configmap(name, 10)).json()
        rv = created["metadata"]["resourceVersion"]
        port = int(small_queue_api.rsplit(":", 1)[1])
        sock = open_unread_watch(port, f"/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={rv}")
        try:
            written = []
            for i in range(200):  # ~40 MB of events: far past the socket buffers and the queue
                r = http.patch(f"/api/v1/namespaces/{ns}/configmaps/{name}",
                               content=jsonc.dumps({"data": {"blob": str(i) * BIG_VALUE_BYTES}}),
                               headers={"Content-Type": "application/merge-patch+json"})
                written.append(r.json()["metadata"]["resourceVersion"])
            events = read_watch_lines(sock)
        finally:
            sock.close()
    assert events, "the watch sent nothing"
    last = events[-1]
    assert last["type"] == "ERROR", [e["type"] for e in events[-3:]]
    assert last["object"]["code"] == 410 and last["object"]["reason"] == "Expired"
    assert "fell" in last["object"]["message"]
    delivered = [e["object"]["metadata"]["resourceVersion"] for e in events[:-1]]
    assert len(delivered) < len(written)  # it did fall behind
    assert delivered == written[:len(delivered)]  # and what it got was every event in order, no gaps


def test_informer_relists_after_falling_behind(small_queue_api: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="minik8s.informer")
    ns = uniq("relist")
    client = Client(small_queue_api, TEST_TOKEN)
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    names = [f"cm-{i}" for i in range(5)]
    for name in names:
        client.create({**configmap(name, 10), "metadata": {"name": name, "namespace": ns}})
    gate = threading.Event()
    informer = Informer(client, "ConfigMap", ns, resync_seconds=3600)
    # a handler stuck until the writes are done: the informer reads nothing meanwhile
    informer.add_handler(on_update=lambda old, new: gate.wait(30))
    informer.start()
    try:
        assert informer.wait_synced(10)
        with httpx.Client(base_url=small_queue_api, headers=AUTH, timeout=60) as http:
            for i in range(100):
                http.patch(f"/api/v1/namespaces/{ns}/configmaps/{names[i % len(names)]}",
                           content=jsonc.dumps({"data": {"blob": str(i) * BIG_VALUE_BYTES}}),
                           headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
            truth = {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                     for o in http.get(f"/api/v1/namespaces/{ns}/configmaps").json()["items"]}
        gate.set()

        def caught_up() -> bool:
            return {o.metadata.name: o.metadata.resourceVersion for o in informer.list()} == truth

        wait_for(caught_up, timeout=30)
        assert any("fell" in str(getattr(r, "reason", "")) for r in caplog.records), \
            "the informer caught up without being told to relist: the watcher never fell behind"
    finally:
        informer.stop()
        client.close()
