"""What authorization costs the API: create/get/list requests per second with RBAC on vs off, same run.

Starts its own etcd (temp dir, free ports) and two API servers on it, each in its own process: one with
`authorization_mode=["RBAC"]`, one with `["AlwaysAllow"]`; both authenticate the same token-file user
`bench`, who is NOT in system:masters, so every request on the RBAC server is decided by rules (a
RoleBinding to the `edit` ClusterRole in the benchmark's namespace). Rounds alternate between the two
servers so that a noisy neighbour on a shared machine hits both alike; each number is the median of
the rounds. Printed: requests/s per verb and mode, the ratio RBAC/off (aim >= 0.85), and the CPU time
the API server process spent per request (from /proc, both modes).

Then, in this process, the authorizer alone on the same policy (loaded from etcd by its cache): the
CPU microseconds per request of parsing the request's attributes plus deciding it, for a repeated
request (the memoized path most traffic takes) and for a never-seen one (the rule walk).

No cluster and no root needed:

    .venv/bin/python benchmarks/api_auth.py [--requests 2000] [--rounds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import smoke  # noqa: E402
from benchmarks.scheduler import etcd, free_port, proc_alive  # noqa: E402

ADMIN_TOKEN = "bench-admin-token-0123456789"
USER_TOKEN = "bench-user-token-0123456789"
NAMESPACE = "bench-auth"  # what get and list read: LIST_SIZE fixed ConfigMaps
CREATE_NAMESPACE = "bench-auth-create"  # where creates go, so that lists stay LIST_SIZE long
LIST_SIZE = 20  # ConfigMaps in the listed namespace: a list's cost should be the API's, not the payload's
START_TIMEOUT_S = 30.0
GOAL_RATIO = 0.85
TICKS = os.sysconf("SC_CLK_TCK")


def _serve(etcd_url: str, port: int, mode: str, token_file: str) -> None:
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    api = ApiServer(ApiServerConfig(etcd_endpoints=[etcd_url], token=ADMIN_TOKEN, token_auth_file=token_file,
                                    port=port, authorization_mode=[mode]))
    ServerThread(api.app, ["127.0.0.1"], port, name=f"bench-apiserver-{mode}").start()
    threading.Event().wait()  # the child lives until the parent terminates it


@contextmanager
def apiserver(etcd_url: str, mode: str, token_file: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    child = multiprocessing.get_context("spawn").Process(target=_serve, args=(etcd_url, port, mode, token_file),
                                                         daemon=True)
    child.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{url}/api/v1/namespaces/default", timeout=1,
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not proc_alive(child):
            raise RuntimeError(f"the {mode} API server did not come up")
        time.sleep(0.1)
    try:
        yield url, child.pid or 0
    finally:
        child.terminate()
        child.join(10)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def setup(url: str) -> None:
    """The namespace, the ConfigMaps lists read, and the user's grant (edit, in that namespace only)."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=url, headers=admin, timeout=10) as c:
        for ns in (NAMESPACE, CREATE_NAMESPACE):
            c.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).raise_for_status()
            c.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
                   json={"metadata": {"name": "bench-edit"}, "subjects": [{"kind": "User", "name": "bench"}],
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                     "name": "edit"}}).raise_for_status()
        for i in range(LIST_SIZE):
            c.post(f"/api/v1/namespaces/{NAMESPACE}/configmaps",
                   json={"metadata": {"name": f"fixed-{i}"}, "data": {"k": "v"}}).raise_for_status()


Op = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


def operations(tag: str) -> dict[str, Op]:
    base = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
    return {
        "create": lambda c, i: c.post(f"/api/v1/namespaces/{CREATE_NAMESPACE}/configmaps",
                                      json={"metadata": {"name": f"cm-{tag}-{i}"}, "data": {"k": "v"}}),
        "get": lambda c, i: c.get(f"{base}/fixed-{i % LIST_SIZE}"),
        "list": lambda c, i: c.get(base),
    }


async def drive(url: str, op: Op, requests: int, concurrency: int) -> float:
    """Requests per second of `op`, `concurrency` at a time; any non-2xx aborts the benchmark."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {USER_TOKEN}"}, limits=limits,
                                 timeout=30) as client:
        counter = iter(range(requests))

        async def worker() -> None:
            for i in counter:
                resp = await op(client, i)
                if resp.status_code >= 300:
                    raise SystemExit(f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return requests / (time.perf_counter() - start)


def authorizer_cost(etcd_url: str, samples: int) -> dict[str, float]:
    """CPU µs per request of attributes + decision, in this process, on the policy the servers use."""
    from minik8s.auth.authn import TokenAuthenticator
    from minik8s.auth.authz import PrivilegedGroups, UnionAuthorizer, request_attributes
    from minik8s.auth.rbac import RBACAuthorizer, RbacCache
    from minik8s.store import EtcdStore

    store = EtcdStore([etcd_url])
    rbac = RBACAuthorizer()
    cache = RbacCache(store, rbac)
    cache.start()
    union = UnionAuthorizer([PrivilegedGroups(), rbac])
    user = TokenAuthenticator.parse(f'{USER_TOKEN},bench,u-bench,""').authenticate(USER_TOKEN)
    assert user is not None
    path = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
    out = {}
    for label, fresh in (("repeated request (memoized)", False), ("new request (rule walk)", True)):
        start = time.process_time()
        for i in range(samples):
            attrs = request_attributes(user, "GET", f"{path}/cm-{i}" if fresh else f"{path}/fixed-1", "")
            if not union.authorize(attrs).allowed:
                raise SystemExit(f"the benchmark user was refused: {attrs.describe()}")
        out[label] = (time.process_time() - start) / samples * 1e6
    cache.stop()
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="Requests per verb per round.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = smoke.parse(parser, requests=50, rounds=1, concurrency=4)
    modes = ("RBAC", "AlwaysAllow")
    rates: dict[tuple[str, str], list[float]] = {}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp, etcd() as etcd_url:
        token_file = Path(tmp) / "tokens.csv"
        token_file.write_text(f'{USER_TOKEN},bench,u-bench,""\n')
        with apiserver(etcd_url, "RBAC", str(token_file)) as (rbac_url, rbac_pid), \
                apiserver(etcd_url, "AlwaysAllow", str(token_file)) as (off_url, off_pid):
            setup(rbac_url)
            servers = {"RBAC": (rbac_url, rbac_pid), "AlwaysAllow": (off_url, off_pid)}
            for round_ in range(args.rounds):
                for mode in (modes if round_ % 2 == 0 else modes[::-1]):
                    url, pid = servers[mode]
                    before = cpu_seconds(pid)
                    for verb, op in operations(f"{mode.lower()}-{round_}-{uuid.uuid4().hex[:4]}").items():
                        rate = asyncio.run(drive(url, op, args.requests, args.concurrency))
                        rates.setdefault((verb, mode), []).append(rate)
                    cpu[mode].append((cpu_seconds(pid) - before) / (3 * args.requests) * 1e6)
        costs = authorizer_cost(etcd_url, 20000)
    print(f"API requests/s, user `bench` (not a master), {args.concurrency} concurrent, {args.requests} per verb, "
          f"median of {args.rounds} rounds")
    print(f"{'verb':<8}{'RBAC':>10}{'off':>10}{'ratio':>8}")
    ratios = []
    for verb in ("create", "get", "list"):
        on, off = statistics.median(rates[(verb, "RBAC")]), statistics.median(rates[(verb, "AlwaysAllow")])
        ratios.append(on / off)
        print(f"{verb:<8}{on:>10.0f}{off:>10.0f}{on / off:>7.2f}x")
    worst = min(ratios)
    print(f"worst ratio {worst:.2f}x (aim >= {GOAL_RATIO}x): {'met' if worst >= GOAL_RATIO else 'NOT met'}")
    print("API server CPU per request (µs, all verbs): "
          + ", ".join(f"{m} {statistics.median(v):.0f}" for m, v in cpu.items()))
    print("authorization alone, CPU per request (attributes + decision, this process):")
    for label, micros in costs.items():
        print(f"  {label:<30}{micros:>8.1f} µs")


if __name__ == "__main__":
    main()
