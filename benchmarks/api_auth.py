"""What authorization and auditing cost the API: create/get/list requests per second with RBAC and the
audit log on vs off, same run.

Starts its own etcd (temp dir, free ports) and three API servers on it, each in its own process:
`on` (`authorization_mode=["RBAC"]` and the audit log written to a temp dir, as `minik8s up` runs it),
`RBAC` (RBAC, no audit log: to tell the two costs apart) and `off` (`["AlwaysAllow"]`, no audit log). All
authenticate the same token-file user `bench`, who is NOT in system:masters, so every request on an RBAC
server is decided by rules (a RoleBinding to the `edit` ClusterRole in the benchmark's namespace). Rounds
rotate the order of the servers so that a noisy neighbour on a shared machine hits all alike; each number
is the median of the rounds. Printed: requests/s per verb and server, the ratio on/off (aim >= 0.85), the
CPU time each API server process spent per request (from /proc; its audit writer thread included), and
from their differences the CPU cost per request of authorization (RBAC - off) and of the audit log
(on - RBAC). The audit log is checked to hold an event for every create, so the `on` arm really audits.

Then, in this process, the authorizer alone on the same policy (loaded from etcd by its cache): the
CPU microseconds per request of parsing the request's attributes plus deciding it, for a repeated
request (the memoized path most traffic takes) and for a never-seen one (the rule walk).

No cluster and no root needed:

    .venv/bin/python benchmarks/api_auth.py [--requests 2000] [--rounds 3] [--concurrency 16] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
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
AUDIT_FLUSH_TIMEOUT_S = 10.0
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Arm:
    """One API server of the comparison: its authorization mode and whether it writes the audit log."""

    name: str
    mode: str
    audit: bool


ON, RBAC_ONLY, OFF = Arm("on", "RBAC", True), Arm("RBAC", "RBAC", False), Arm("off", "AlwaysAllow", False)
ARMS = (ON, RBAC_ONLY, OFF)


def _serve(etcd_url: str, port: int, mode: str, token_file: str, audit_log: str | None) -> None:
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    api = ApiServer(ApiServerConfig(etcd_endpoints=[etcd_url], token=ADMIN_TOKEN, token_auth_file=token_file,
                                    port=port, authorization_mode=[mode], audit_log=audit_log))
    ServerThread(api.app, ["127.0.0.1"], port, name=f"bench-apiserver-{mode}").start()
    threading.Event().wait()  # the child lives until the parent terminates it


@contextmanager
def apiserver(etcd_url: str, mode: str, token_file: str, audit_log: str | None = None) -> Iterator[tuple[str, int]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    child = multiprocessing.get_context("spawn").Process(target=_serve,
                                                         args=(etcd_url, port, mode, token_file, audit_log),
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


def audited_creates(audit_log: Path, tag: str) -> int:
    """Audit events (in the log and its rotated files) of answered creates of ConfigMaps named `cm-<tag>...`."""
    count = 0
    for f in [audit_log, *audit_log.parent.glob(audit_log.name + ".*")]:
        for line in f.read_text().splitlines() if f.exists() else []:
            event = json.loads(line)
            if (event.get("verb") == "create" and event.get("responseStatus", {}).get("code") == 201
                    and event.get("objectRef", {}).get("name", "").startswith(f"cm-{tag}-")):
                count += 1
    return count


def wait_audited(audit_log: Path, tag: str, expected: int) -> int:
    """The audit writer is a thread behind a queue: give it a moment to catch up with the last creates."""
    deadline = time.monotonic() + AUDIT_FLUSH_TIMEOUT_S
    while (count := audited_creates(audit_log, tag)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return count


def run_rounds(args: argparse.Namespace, servers: dict[Arm, tuple[str, int]]
               ) -> tuple[dict[tuple[str, str], list[float]], dict[str, list[float]]]:
    """Requests/s per (verb, arm) and API server CPU µs per request per arm, one list entry per round."""
    rates: dict[tuple[str, str], list[float]] = {}
    cpu: dict[str, list[float]] = {a.name: [] for a in ARMS}
    for round_ in range(args.rounds):
        order = ARMS[round_ % len(ARMS):] + ARMS[:round_ % len(ARMS)]
        for arm in order:
            url, pid = servers[arm]
            before = cpu_seconds(pid)
            for verb, op in operations(f"{arm.name.lower()}-{round_}-{uuid.uuid4().hex[:4]}").items():
                rate = asyncio.run(drive(url, op, args.requests, args.concurrency))
                rates.setdefault((verb, arm.name), []).append(rate)
            cpu[arm.name].append((cpu_seconds(pid) - before) / (3 * args.requests) * 1e6)
    return rates, cpu


def report(args: argparse.Namespace, rates: dict[tuple[str, str], list[float]], cpu: dict[str, list[float]],
           costs: dict[str, float], audited: int) -> None:
    print(f"API requests/s, user `bench` (not a master), {args.concurrency} concurrent, {args.requests} per verb, "
          f"median of {args.rounds} rounds; on = RBAC + audit log, off = AlwaysAllow, no audit log")
    print(f"{'verb':<8}{'on':>10}{'RBAC':>10}{'off':>10}{'on/off':>8}")
    ratios = []
    for verb in ("create", "get", "list"):
        on, rbac, off = (statistics.median(rates[(verb, a.name)]) for a in ARMS)
        ratios.append(on / off)
        print(f"{verb:<8}{on:>10.0f}{rbac:>10.0f}{off:>10.0f}{on / off:>7.2f}x")
    worst = min(ratios)
    print(f"worst ratio on/off {worst:.2f}x (aim >= {GOAL_RATIO}x): {'met' if worst >= GOAL_RATIO else 'NOT met'}")
    med = {name: statistics.median(v) for name, v in cpu.items()}
    print("API server CPU per request (µs, all verbs): " + ", ".join(f"{n} {v:.0f}" for n, v in med.items()))
    print(f"  authorization (RBAC - off): {med['RBAC'] - med['off']:+.0f} µs/request; "
          f"audit log (on - RBAC): {med['on'] - med['RBAC']:+.0f} µs/request "
          f"({audited} audit events for the on arm's creates)")
    print("authorization alone, CPU per request (attributes + decision, this process):")
    for label, micros in costs.items():
        print(f"  {label:<30}{micros:>8.1f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="Requests per verb per round.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = smoke.parse(parser, requests=50, rounds=1, concurrency=4)
    with tempfile.TemporaryDirectory() as tmp, etcd() as etcd_url:
        token_file = Path(tmp) / "tokens.csv"
        token_file.write_text(f'{USER_TOKEN},bench,u-bench,""\n')
        audit_log = Path(tmp) / "audit" / "audit.log"
        with ExitStack() as stack:
            servers = {a: stack.enter_context(apiserver(etcd_url, a.mode, str(token_file),
                                                        str(audit_log) if a.audit else None)) for a in ARMS}
            setup(servers[OFF][0])
            rates, cpu = run_rounds(args, servers)
            audited = wait_audited(audit_log, ON.name.lower(), args.requests * args.rounds)
        if audited < args.requests * args.rounds:
            raise SystemExit(f"the on arm's audit log holds {audited} of {args.requests * args.rounds} creates")
        costs = authorizer_cost(etcd_url, 20000)
    report(args, rates, cpu, costs, audited)


if __name__ == "__main__":
    main()
