"""Scheduler throughput: 3000 pending pods onto 100 hollow nodes (kubemark-style: Node objects, no kubelet).

Starts its own etcd (temp dir, free ports) and API server, so it needs no cluster and no root:

    .venv/bin/python benchmarks/scheduler.py [--nodes 100] [--pods 3000] [--policy default]
                                             [--apiserver thread|process] [--profile]
                                             [--profile-apiserver [FILE]]

Measured in one run:
  1. baseline: the API server's own binding ceiling: N pods bound by concurrent raw binding
     POSTs with no scheduling decision at all (as many threads as the scheduler's bind workers);
  2. the real `Scheduler` on a backlog of `--pods` pending pods: pods bound per second from
     the first bind to the last (seen on a watch), p50/p99 create->bound latency, and the
     time spent inside the placement decision; afterwards the pods are listed again to check
     that every one is bound in etcd, and the Scheduled events are counted. The events are sent
     asynchronously (as kube-scheduler's recorder does), so the run also prints when the last
     one was written and the end-to-end rate including them;
  3. CPU seconds per bound pod of the scheduler (+ this benchmark's watcher), the API server
     and etcd over the scheduler's run: on a small shared machine this says more than wall time.
Prints the ratio to the 300 pods/s goal and to the baseline ceiling.

`--profile` profiles the scheduler's decision thread; `--profile-apiserver` profiles every
thread of the API server process by CPU time (cProfile with a thread-time clock).

`--apiserver process` runs the API server in a child process, so it does not share the
scheduler's GIL (a real deployment runs them as separate processes); `thread` runs it
in-process, as the integration tests do.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import os
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks import smoke
from minik8s import Client
from minik8s.api import types as t
from minik8s.scheduler.cache import SchedulerCache
from minik8s.scheduler.loop import Scheduler, SchedulerConfig
from minik8s.scheduler.policy import POLICIES

GOAL_PODS_PER_S = 300.0
TOKEN = "bench-token-0123456789"
START_TIMEOUT_S = 30.0
BIND_TIMEOUT_S = 600.0
CREATE_WORKERS = 16
PIDS: dict[str, int] = {}  # "etcd", "apiserver": whose CPU time the report splits


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, ok: Callable[[httpx.Response], bool], proc: Any = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if ok(httpx.get(url, timeout=1, headers={"Authorization": f"Bearer {TOKEN}"})):
                return
        except httpx.HTTPError:
            pass
        if proc is not None and not proc_alive(proc):
            break
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def proc_alive(proc: Any) -> bool:
    return bool(proc.is_alive()) if hasattr(proc, "is_alive") else proc.poll() is None


@contextmanager
def etcd() -> Iterator[str]:
    if not shutil.which("etcd"):
        sys.exit("etcd is not installed: run `make install` (Debian package etcd-server)")
    data = Path(tempfile.mkdtemp(prefix="minik8s-bench-etcd-"))
    cport, pport = free_port(), free_port()
    url, peer = f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{pport}"
    proc = subprocess.Popen(
        ["etcd", "--data-dir", str(data / "data"), "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", f"default={peer}"],
        stdout=subprocess.DEVNULL, stderr=open(data / "etcd.log", "wb"), env={**os.environ, "ETCD_NAME": "default"})
    PIDS["etcd"] = proc.pid
    try:
        wait_http(f"{url}/health", lambda r: r.status_code == 200, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(data, ignore_errors=True)


def _profile_every_thread(path: str) -> None:
    """cProfile each thread of this (child) process; dump the merged stats to `path` on SIGTERM."""
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start(*_args: Any) -> None:
        prof = cProfile.Profile(time.thread_time)  # CPU time: waiting on etcd or the GIL is not cost
        with lock:
            profiles.append(prof)
        prof.enable()  # replaces this hook with cProfile's own for the rest of the thread

    def dump(*_args: Any) -> None:
        with lock:
            for prof in profiles:
                prof.disable()
            stats = pstats.Stats(profiles[0])
            for prof in profiles[1:]:
                stats.add(prof)
        stats.dump_stats(path)
        os._exit(0)

    threading.setprofile(start)
    signal.signal(signal.SIGTERM, dump)
    start()


def _serve(etcd_url: str, port: int, profile_path: str | None = None) -> None:
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    if profile_path:
        _profile_every_thread(profile_path)
    api = ApiServer(ApiServerConfig(etcd_endpoints=[etcd_url], token=TOKEN, port=port))
    server = ServerThread(api.app, ["127.0.0.1"], port, name="bench-apiserver")
    server.start()
    if multiprocessing.current_process().name != "MainProcess":
        threading.Event().wait()  # the child lives until the parent terminates it


@contextmanager
def apiserver(etcd_url: str, mode: str, profile_path: str | None = None) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    child = None
    if mode == "process":
        child = multiprocessing.get_context("spawn").Process(target=_serve, args=(etcd_url, port, profile_path),
                                                             daemon=True)
        child.start()
        PIDS["apiserver"] = child.pid or 0
        wait_http(f"{url}/api/v1/namespaces/default", lambda r: r.status_code == 200, child)
    else:
        _serve(etcd_url, port)
    try:
        yield url
    finally:
        if child is not None:
            child.terminate()
            child.join(10)


def make_client(url: str) -> Client:
    """The SDK client as components use it (its keep-alive pool outnumbers the bind workers)."""
    return Client(url, TOKEN, timeout=60)


def hollow_node(name: str) -> dict[str, Any]:
    res = {"cpu": "32", "memory": "64Gi", "pods": "110"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"capacity": res, "allocatable": res,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}


def bench_pod(name: str, tag: str, group: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"bench": tag, "app": f"g{group}"}},
            "spec": {"containers": [{"name": "app", "image": "busybox",
                                     "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}


def create_all(client: Client, objs: list[dict[str, Any]]) -> dict[str, float]:
    created: dict[str, float] = {}

    def one(obj: dict[str, Any]) -> None:
        client.create(obj)
        created[obj["metadata"]["name"]] = time.perf_counter()

    with ThreadPoolExecutor(CREATE_WORKERS) as pool:
        list(pool.map(one, objs))
    return created


class BindWatcher:
    """Records when each labelled pod is first seen with spec.nodeName on a watch."""

    def __init__(self, client: Client, tag: str, expected: int) -> None:
        self.bound: dict[str, float] = {}
        self.nodes: dict[str, str] = {}
        self.done = threading.Event()
        self._rv = client.list("Pod", "default", label_selector=f"bench={tag}").resource_version
        self._client, self._tag, self._expected = client, tag, expected
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        for ev in self._client.watch("Pod", "default", self._rv, label_selector=f"bench={self._tag}"):
            pod = ev.object
            if pod.spec.nodeName and pod.metadata.name not in self.bound:
                self.bound[pod.metadata.name] = time.perf_counter()
                self.nodes[pod.metadata.name] = pod.spec.nodeName
                if len(self.bound) >= self._expected:
                    self.done.set()
                    return


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_now() -> dict[str, float]:
    here = "this process (scheduler + benchmark)" if "apiserver" in PIDS else \
        "this process (scheduler + benchmark + API server)"
    procs = {here: os.getpid(), **PIDS}
    return {name: cpu_seconds(pid) for name, pid in procs.items()}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def rate(times: list[float]) -> float:
    span = max(times) - min(times)
    return (len(times) - 1) / span if span > 0 else float("inf")


def baseline(url: str, nodes: list[str], workers: int, count: int) -> float:
    """Raw binding POSTs, no decisions: what the API server can absorb."""
    client = make_client(url)
    tag = uuid.uuid4().hex[:6]
    pods = [bench_pod(f"base-{tag}-{i}", tag, 0) for i in range(count)]
    create_all(client, pods)
    watcher = BindWatcher(client, tag, len(pods))
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda i: client.bind(pods[i]["metadata"]["name"], nodes[i % len(nodes)]), range(len(pods))))
    watcher.done.wait(BIND_TIMEOUT_S)
    client.close()
    return rate(list(watcher.bound.values()))


def in_memory(node_names: list[str], pods: list[dict[str, Any]], policy: str) -> float:
    """Decisions + cache updates only, no API server: the scheduler's own ceiling."""
    cache = SchedulerCache()
    for n in node_names:
        cache.set_node(t.Node.model_validate(hollow_node(n)))
    typed = [t.Pod.model_validate({**p, "metadata": {**p["metadata"], "namespace": "default"}}) for p in pods]
    chosen = POLICIES[policy]
    start = time.perf_counter()
    for pod in typed:
        placement = chosen.schedule(pod, cache.snapshot)
        if placement.node:
            cache.assume(pod, placement.node)
    return len(typed) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--pods", type=int, default=3000)
    ap.add_argument("--groups", type=int, default=30, help="owner groups (label sets) the pods spread by")
    ap.add_argument("--baseline-pods", type=int, default=600, help="pods bound by raw POSTs for the baseline")
    ap.add_argument("--policy", default="default", choices=["default", "round-robin"])
    ap.add_argument("--apiserver", default="thread", choices=["thread", "process"])
    ap.add_argument("--bind-workers", type=int, default=SchedulerConfig.bind_workers)
    ap.add_argument("--no-events", action="store_true", help="skip the Scheduled event per bind")
    ap.add_argument("--profile", action="store_true", help="cProfile the decision thread")
    ap.add_argument("--profile-apiserver", nargs="?", const="", metavar="FILE",
                    help="cProfile (CPU time) every thread of the API server process, print the top functions and "
                         "keep the stats in FILE if given; implies --apiserver process")
    args = smoke.parse(ap, nodes=5, pods=100, groups=5, baseline_pods=50)
    api_prof = None
    if args.profile_apiserver is not None:
        args.apiserver = "process"
        api_prof = args.profile_apiserver or os.path.join(tempfile.mkdtemp(prefix="minik8s-bench-prof-"),
                                                          "apiserver.prof")
    with etcd() as etcd_url, apiserver(etcd_url, args.apiserver, api_prof) as url:
        client = make_client(url)
        node_names = [f"hollow-{i:04d}" for i in range(args.nodes)]
        create_all(client, [hollow_node(n) for n in node_names])
        base = baseline(url, node_names, args.bind_workers, args.baseline_pods)

        tag = uuid.uuid4().hex[:6]
        pods = [bench_pod(f"p-{tag}-{i}", tag, i % args.groups) for i in range(args.pods)]
        core = in_memory(node_names, pods, args.policy)
        t0 = time.perf_counter()
        created = create_all(client, pods)
        create_s = time.perf_counter() - t0
        watcher = BindWatcher(client, tag, len(pods))

        sched = Scheduler(make_client(url), SchedulerConfig(policy=args.policy, bind_workers=args.bind_workers,
                                                            record_scheduled_events=not args.no_events))
        decide_s = [0.0]
        real = sched.policy.schedule

        def timed(*a: Any, **kw: Any) -> Any:
            s = time.perf_counter()
            try:
                return real(*a, **kw)
            finally:
                decide_s[0] += time.perf_counter() - s

        sched.policy = _Timed(timed)  # type: ignore[assignment]
        prof = cProfile.Profile() if args.profile else None
        if prof is not None:
            orig_sync = sched.sync

            def profiled(key: str) -> None:
                prof.runcall(orig_sync, key)
            sched.sync = profiled  # type: ignore[method-assign]
        cpu0 = cpu_now()
        t_start = time.perf_counter()
        sched.start()
        synced_s = time.perf_counter() - t_start
        ok = watcher.done.wait(BIND_TIMEOUT_S)
        sched.stop()  # waits for the queued API calls and the Scheduled events too
        stopped = time.perf_counter()
        cpu = {name: used - cpu0[name] for name, used in cpu_now().items()}
        wall_s = time.perf_counter() - t_start
        listed = client.list("Pod", "default", label_selector=f"bench={tag}").items
        in_etcd = sum(1 for p in listed if p.spec.nodeName)
        events = sum(1 for e in client.list("Event", "default").items
                     if e.reason == "Scheduled" and e.involvedObject.name in created)

        times = list(watcher.bound.values())
        lat = [watcher.bound[n] - created[n] for n in watcher.bound if n in created]
        per_node = list(_count(watcher.nodes.values()).values())
        thr = rate(times) if len(times) > 1 else 0.0
        print(f"nodes={args.nodes} pods={args.pods} policy={args.policy} apiserver={args.apiserver} "
              f"bind_workers={args.bind_workers} events={'off' if args.no_events else 'on'} cores={os.cpu_count()}")
        print(f"created {args.pods} pods in {create_s:.1f}s ({args.pods / create_s:.0f}/s); scheduler informers "
              f"synced in {synced_s:.2f}s")
        print(f"bound {len(times)}/{args.pods}{'' if ok else ' (TIMED OUT)'}; pods per node min/max "
              f"{min(per_node, default=0)}/{max(per_node, default=0)}; listed afterwards: {in_etcd}/{args.pods} "
              f"have spec.nodeName, {events} Scheduled events (all sent {stopped - max(times, default=stopped):.2f}s "
              f"after the last bind)")
        print(f"baseline: raw binding POSTs, no decisions: {base:.0f} pods/s; scheduler core in memory (decisions "
              f"+ cache, no API): {core:.0f} pods/s")
        print(f"scheduler: {thr:.0f} pods/s (first bind to last, {max(times) - min(times):.2f}s); "
              f"ratio to the {GOAL_PODS_PER_S:.0f} pods/s goal: {thr / GOAL_PODS_PER_S:.2f}x; "
              f"to the baseline: {thr / base:.2f}x")
        print(f"end to end: the scheduler's start to every pod bound and every Scheduled event written: "
              f"{stopped - t_start:.2f}s ({len(times) / (stopped - t_start):.0f} pods/s)")
        print(f"create->bound latency (includes waiting in the {args.pods}-pod backlog): "
              f"p50 {statistics.median(lat):.2f}s p99 {percentile(lat, 99):.2f}s")
        print(f"decision time: {decide_s[0] * 1e3 / max(1, len(times)):.3f} ms/pod "
              f"({decide_s[0]:.2f}s total, {100 * decide_s[0] / max(1e-9, max(times) - min(times)):.0f}% of the "
              f"bind window)")
        print(f"CPU time per bound pod (start to stop, {wall_s:.1f}s): " + ", ".join(
            f"{name} {used * 1e3 / max(1, len(times)):.2f} ms" for name, used in cpu.items()))
        if prof is not None:
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        client.close()
    if api_prof is not None:
        print("API server profile (all threads, whole run):")
        pstats.Stats(api_prof).sort_stats("tottime").print_stats(40)
        if not args.profile_apiserver:
            shutil.rmtree(os.path.dirname(api_prof), ignore_errors=True)


class _Timed:
    """Wraps a Policy so the benchmark can time the decisions without touching the scheduler."""

    def __init__(self, timed: Callable[..., Any]) -> None:
        self.schedule = timed


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


if __name__ == "__main__":
    main()
