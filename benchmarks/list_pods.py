"""Listing 10,000 pods: one unpaginated LIST against kubectl-style chunks of 500, with the API server's
memory. Starts its own etcd (temp dir, free ports) and an API server in a child process (so its
memory is its own), writes the pods straight into etcd in transactions of 100 (what the API stores:
its own dry-run answer per pod), then measures:

  1. baseline: one LIST of a 500-pod namespace (one kubectl chunk's worth);
  2. one unpaginated LIST of the 10,000-pod namespace (its bytes, wall time, the ratio to the baseline);
  3. the same 10,000 in chunks of 500 (limit/continue), all read at one revision;
  4. the API server's resident memory before, and its peak (VmHWM) after each of those.

    .venv/bin/python benchmarks/list_pods.py [--pods 10000] [--chunk 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import smoke  # noqa: E402
from minik8s import jsonc  # noqa: E402

START_TIMEOUT_S = 30.0
STORE_BATCH = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(etcd: str, port: int) -> None:
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    api = ApiServer(ApiServerConfig(etcd_endpoints=[etcd], token=None, port=port))
    ServerThread(api.app, ["127.0.0.1"], port, name="bench-apiserver").start()
    while True:
        time.sleep(3600)


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def store_pods(http: httpx.Client, etcd: str, namespace: str, count: int) -> None:
    import grpc
    from pyetcd.etcdrpc import KVStub
    from pyetcd.etcdrpc import rpc_pb2 as rpc

    http.post("/api/v1/namespaces", json={"metadata": {"name": namespace}}).raise_for_status()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "template", "labels": {"app": "bench"}},
           "spec": {"containers": [{"name": "main", "image": "busybox:1"}]}}
    template = http.post(f"/api/v1/namespaces/{namespace}/pods", json=pod, params={"dryRun": "All"}).json()
    with grpc.insecure_channel(etcd.removeprefix("http://")) as channel:
        kv = KVStub(channel)
        for start in range(0, count, STORE_BATCH):
            puts = []
            for i in range(start, min(count, start + STORE_BATCH)):
                name = f"pod-{i:05d}"
                obj = {**template, "metadata": {**template["metadata"], "name": name, "uid": str(uuid.uuid4())}}
                puts.append(rpc.RequestOp(request_put=rpc.PutRequest(
                    key=f"/registry/pods/{namespace}/{name}".encode(), value=jsonc.dumps(obj))))
            kv.Txn(rpc.TxnRequest(success=puts), timeout=30)


def timed(fn: Any, repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def chunked(http: httpx.Client, namespace: str, chunk: int) -> int:
    count, token = 0, ""
    while True:
        params: dict[str, Any] = {"limit": chunk, **({"continue": token} if token else {})}
        page = http.get(f"/api/v1/namespaces/{namespace}/pods", params=params).json()
        count += len(page["items"])
        token = page["metadata"].get("continue", "")
        if not token:
            return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = smoke.parse(parser, pods=300, chunk=100, repeat=1)
    data = Path(tempfile.mkdtemp(prefix="minik8s-bench-etcd-"))
    client_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    etcd = subprocess.Popen(["etcd", "--data-dir", str(data / "d"), "--listen-client-urls", etcd_url,
                             "--advertise-client-urls", etcd_url, "--listen-peer-urls", peer,
                             "--initial-advertise-peer-urls", peer, "--initial-cluster", f"default={peer}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(etcd_url, api_port), daemon=True)
    try:
        time.sleep(1)
        server.start()
        base = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the API server did not start")
            time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=300) as http:
            store_pods(http, etcd_url, "small", args.chunk)
            store_pods(http, etcd_url, "many", args.pods)
            assert server.pid is not None
            idle = memory_kib(server.pid)
            base_s, small = timed(lambda: http.get("/api/v1/namespaces/small/pods"), args.repeat)
            after_small = memory_kib(server.pid)
            whole_s, whole = timed(lambda: http.get("/api/v1/namespaces/many/pods"), args.repeat)
            after_whole = memory_kib(server.pid)
            chunk_s, count = timed(lambda: chunked(http, "many", args.chunk), args.repeat)
        assert len(whole.json()["items"]) == args.pods and count == args.pods
        per_pod = len(whole.content) / args.pods
        print(f"pods: {args.pods} ({per_pod:.0f} bytes each as JSON, {len(whole.content) / 2**20:.1f} MiB in one LIST)")
        print(f"baseline: LIST of {len(small.json()['items'])} pods: {base_s * 1000:.1f} ms")
        print(f"unpaginated LIST of {args.pods}: {whole_s * 1000:.0f} ms "
              f"({whole_s / base_s:.1f}x the baseline for {args.pods / args.chunk:.0f}x the pods)")
        print(f"chunks of {args.chunk}: {chunk_s * 1000:.0f} ms ({chunk_s / whole_s:.2f}x the unpaginated LIST)")
        peak_small, peak_whole = after_small["VmHWM"] / 1024, after_whole["VmHWM"] / 1024
        print(f"API server memory: idle RSS {idle['VmRSS'] / 1024:.0f} MiB; peak after the baseline "
              f"{peak_small:.0f} MiB, after the unpaginated LISTs {peak_whole:.0f} MiB "
              f"(+{peak_whole - peak_small:.0f} MiB)")
    finally:
        server.kill()
        etcd.terminate()
        etcd.wait(10)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
