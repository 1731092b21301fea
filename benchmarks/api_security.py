"""Cost of the audit log, Secrets encryption and Pod Security admission on API writes.

Starts its own etcd (temp dir, free ports) and two API servers in this process on it: the baseline
with no audit log and no encryption, the other with both (Pod Security admission runs in both: it is
always on, its cost is measured separately as the pod-create rate with and without a pod-security
label on the namespace, i.e. the checks on every pod). Rounds alternate between the servers so drift
on a shared machine hits both; prints requests per second and the ratio to the baseline:

    .venv/bin/python benchmarks/api_security.py [--requests 500] [--rounds 3] [--threads 4]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import smoke  # noqa: E402
from minik8s import Client  # noqa: E402
from minik8s.apiserver.app import ApiServer, ApiServerConfig  # noqa: E402
from minik8s.apiserver.server import ServerThread  # noqa: E402
from minik8s.store import encryption  # noqa: E402
from tests.conftest import free_port, start_etcd, wait_etcd_healthy  # noqa: E402

TOKEN = "bench-token"


def serve(etcd: str, state: Path | None) -> tuple[ApiServer, ServerThread, str]:
    port = free_port()
    config = ApiServerConfig(etcd_endpoints=[etcd], token=TOKEN, port=port)
    if state is not None:
        config.encryption_config = str(encryption.ensure_config(encryption.config_path(state)))
        config.audit_log = str(state / "audit" / "audit.log")
    api = ApiServer(config)
    server = ServerThread(api.app, ["127.0.0.1"], port, name=f"bench-{port}")
    server.start()
    return api, server, f"http://127.0.0.1:{port}"


def rate(url: str, count: int, threads: int, body: Callable[[int], dict[str, Any]], ns: str) -> float:
    """Creates per second of `count` objects made by `body(i)`, from `threads` concurrent clients."""
    clients = [Client(url, TOKEN) for _ in range(threads)]
    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda i: clients[i % threads].create(body(i), ns), range(count)))
        return count / (time.perf_counter() - start)
    finally:
        for c in clients:
            c.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    args = smoke.parse(parser, requests=20, rounds=1, threads=2)
    data = Path(tempfile.mkdtemp(prefix="minik8s-bench-"))
    client_port = free_port()
    etcd_url = f"http://127.0.0.1:{client_port}"
    etcd = start_etcd(data, "bench", client_port, free_port())
    try:
        wait_etcd_healthy(etcd_url, [etcd], data)
        plain_api, plain, plain_url = serve(etcd_url, None)
        secured_api, secured, secured_url = serve(etcd_url, data / "state")
        admin = Client(plain_url, TOKEN)
        admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
        admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": "bench-priv", "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}})

        def secret(i: int) -> dict[str, Any]:
            return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"s-{uuid.uuid4().hex[:10]}"},
                    "stringData": {"password": f"value-{i}" * 8}}

        def pod(i: int) -> dict[str, Any]:
            return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p-{uuid.uuid4().hex[:10]}"},
                    "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1"]}]}}

        results: dict[str, list[float]] = {k: [] for k in ("secrets plain", "secrets audit+aesgcm",
                                                            "pods baseline-checked", "pods privileged ns")}
        for _ in range(args.rounds):
            results["secrets plain"].append(rate(plain_url, args.requests, args.threads, secret, "bench"))
            results["secrets audit+aesgcm"].append(rate(secured_url, args.requests, args.threads, secret, "bench"))
            results["pods baseline-checked"].append(rate(plain_url, args.requests, args.threads, pod, "bench"))
            results["pods privileged ns"].append(rate(plain_url, args.requests, args.threads, pod, "bench-priv"))
        median = {k: statistics.median(v) for k, v in results.items()}
        for name, value in median.items():
            print(f"{name:24s} {value:8.1f} creates/s  (rounds: {', '.join(f'{x:.0f}' for x in results[name])})")
        secured_ratio = median["secrets audit+aesgcm"] / median["secrets plain"]
        checks_ratio = median["pods baseline-checked"] / median["pods privileged ns"]
        print(f"audit log + encryption vs plain (Secret creates): {secured_ratio:.2f}x")
        print(f"pod security checks vs none (Pod creates):        {checks_ratio:.2f}x")
        admin.close()
        plain.stop()
        secured.stop()
        if secured_api.audit:
            secured_api.audit.close()
        del plain_api
    finally:
        etcd.terminate()
        etcd.wait(10)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
