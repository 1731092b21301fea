"""Control-plane recovery: from a SIGKILL of the Ray head and etcd to every Service answering and every
controller synced again after `minik8s up`, for 10 and 100 pods; and the requests that failed meanwhile.

For each size N: N/10 Deployments of 10 busybox HTTP servers (the e2e tests' tiny pods), each behind a
NodePort Service. A client loop asks every Service by ClusterIP and on each node's NodePort from the
root netns (like a machine outside the cluster), and by DNS name from node-3's netns. Then the whole
control plane is SIGKILLed (every process of the Ray head's and etcd's sessions, as
tests/e2e/chaos/test_control_plane.py does), left down for `--outage` seconds, and `minik8s up` runs.

Recovered = every Service answers on every target, DNS name included; every Deployment's controller has
observed a spec change made right after `up` returned (status.observedGeneration, no pod is touched) and
reports all replicas ready; every Endpoints lists all its pods; every Node is Ready. Reported: kill ->
recovered, `up` -> recovered, the `up` run itself, and failed requests by kind (ClusterIP and NodePort
must stay at 0; DNS is a control-plane actor, so it fails while the control plane is down). Baseline,
same run: `minik8s up` on the healthy cluster (it adopts everything), printed as a ratio.

Run on a cluster made by `make up` (as root), from the repository root:

    .venv/bin/python benchmarks/recovery.py [--sizes 10,100] [--outage 10]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import smoke
from minik8s import Client  # noqa: E402
from minik8s.cluster.config import ClusterConfig  # noqa: E402
from tests.e2e.chaos.common import (  # noqa: E402
    DNS_CLIENT_NODE,
    NODE_IPS,
    NODES,
    App,
    endpoint_count,
    enter_netns,
    in_netns,
    kill_control_plane,
    resolve,
)
from tests.e2e.conftest import MINIK8S, UP_ARGS, UP_TIMEOUT_S, web_app  # noqa: E402

PODS_PER_SERVICE = 10
REQUEST_TIMEOUT_S = 2.0
DATA_INTERVAL_S = 0.05  # one NodePort/ClusterIP request per interval, over all Services in turn
DNS_INTERVAL_S = 0.1
POLL_S = 0.5
RECOVERY_TIMEOUT_S = 900.0


def minik8s(*args: str, input: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([MINIK8S, *args], input=input, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"minik8s {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
    return proc


def timed_up() -> float:
    t0 = time.monotonic()
    minik8s(*UP_ARGS, timeout=UP_TIMEOUT_S)
    return time.monotonic() - t0


STEP = re.compile(r"^\[\s*(\d+\.\d)s\] (.*)$")


def up_steps(output: str, total: float) -> list[tuple[str, float]]:
    """`up` prints each step with the time it started (`[  3.2s] base images ...`): each step's duration,
    the last one lasting until `up` returned."""
    marks = [(float(m.group(1)), m.group(2).rstrip(" .")) for m in map(STEP.match, output.splitlines()) if m]
    ends = [t for t, _ in marks[1:]] + [total]
    return [(what, end - start) for (start, what), end in zip(marks, ends, strict=True)]


def ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=REQUEST_TIMEOUT_S).status_code == 200
    except httpx.HTTPError:
        return False


def by_name(app: App, dns_server: str) -> bool:
    try:
        return ok(f"http://{resolve(app.dns_name, dns_server, REQUEST_TIMEOUT_S)}/")
    except (OSError, LookupError):
        return False


@dataclass
class Load:
    """The client loop over every Service: (started, kind, ok) per request."""

    apps: list[App]
    cfg: ClusterConfig
    requests: list[tuple[float, str, bool]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def _data(self) -> None:
        targets = [(t, url) for app in self.apps for t, url in app.urls.items()]
        i = 0
        while not self.stop.is_set():
            target, url = targets[i % len(targets)]
            started = time.monotonic()
            self.requests.append((started, "clusterip" if target == "clusterip" else "nodeport", ok(url)))
            i += 1
            time.sleep(DATA_INTERVAL_S)

    def _dns(self, netns: str) -> None:
        enter_netns(netns)
        i = 0
        while not self.stop.is_set():
            started = time.monotonic()
            self.requests.append((started, "dns", by_name(self.apps[i % len(self.apps)], self.cfg.dns_ip)))
            i += 1
            time.sleep(DNS_INTERVAL_S)

    def start(self) -> list[threading.Thread]:
        netns = self.cfg.node(DNS_CLIENT_NODE).netns
        assert netns is not None
        threads = [threading.Thread(target=self._data, daemon=True),
                   threading.Thread(target=self._dns, args=(netns,), daemon=True)]
        for th in threads:
            th.start()
        return threads

    def tally(self) -> dict[str, tuple[int, int]]:
        """kind -> (failed, total)."""
        out: dict[str, tuple[int, int]] = {}
        for _, kind, good in self.requests:
            failed, total = out.get(kind, (0, 0))
            out[kind] = (failed + (not good), total + 1)
        return out


def deploy(client: Client, pods: int, tag: str) -> list[App]:
    names = [f"rec-{tag}-{i}" for i in range(max(1, pods // PODS_PER_SERVICE))]
    per = pods // len(names)
    minik8s("apply", "-f", "-", input="---\n".join(web_app(n, replicas=per, service_type="NodePort") for n in names))
    deadline = time.monotonic() + 60 + 3 * pods
    while not all(endpoint_count(client, n) == per for n in names):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{pods} pods not serving after {60 + 3 * pods}s")
        time.sleep(POLL_S)
    apps = []
    for n in names:
        svc = client.get("Service", n)
        urls = {f"node-{i}": f"http://{ip}:{svc.spec.ports[0].nodePort}/" for i, ip in zip(NODES, NODE_IPS,
                                                                                          strict=True)}
        urls["clusterip"] = f"http://{svc.spec.clusterIP}/"
        apps.append(App(n, per, urls, f"{n}.default.svc.cluster.local", host=""))  # no gateway route here
    return apps


def bump_generations(client: Client, apps: list[App]) -> dict[str, int]:
    """A spec change no pod notices (revisionHistoryLimit); returns the generation each controller must observe."""
    wanted = {}
    for app in apps:
        d = client.get("Deployment", app.name)
        d = client.patch("Deployment", app.name, {"spec": {"revisionHistoryLimit": d.spec.revisionHistoryLimit + 1}})
        wanted[app.name] = int(d.metadata.generation)
    return wanted


def recovered(client: Client, apps: list[App], cfg: ClusterConfig, generations: dict[str, int]) -> bool:
    try:
        for app in apps:
            d = client.get("Deployment", app.name)
            st = d.status
            if not st or (st.observedGeneration or 0) < generations[app.name] or st.readyReplicas != app.replicas:
                return False
            if endpoint_count(client, app.name) != app.replicas:
                return False
        for node in client.list("Node", None).items:
            if not any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []):
                return False
    except Exception:  # noqa: BLE001 - the API may still be coming up
        return False
    netns = cfg.node(DNS_CLIENT_NODE).netns
    assert netns is not None
    return all(ok(url) for app in apps for url in app.urls.values()) and in_netns(
        netns, lambda: all(by_name(app, cfg.dns_ip) for app in apps))


def remove(client: Client, apps: list[App]) -> None:
    names = [a.name for a in apps]
    minik8s("delete", "deploy", *names)
    minik8s("delete", "svc", *names)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and any(
            p.metadata.name.startswith(tuple(names)) for p in client.list("Pod", "default").items):
        time.sleep(1)


@dataclass
class Result:
    pods: int
    services: int
    up_s: float
    kill_to_recovered_s: float
    up_to_recovered_s: float
    failed: dict[str, tuple[int, int]]  # kind -> (failed, total)
    steps: list[tuple[str, float]]  # where the `up` run spent its time

    def failures(self, kind: str) -> str:
        failed, total = self.failed.get(kind, (0, 0))
        return f"{failed}/{total}"


def run_size(client: Client, cfg: ClusterConfig, pods: int, outage: float) -> Result:
    apps = deploy(client, pods, uuid.uuid4().hex[:4])
    load = Load(apps, cfg)
    threads = load.start()
    try:
        time.sleep(2)
        killed = time.monotonic()
        kill_control_plane(cfg)
        time.sleep(outage)
        up_at = time.monotonic()
        up_output = minik8s(*UP_ARGS, timeout=UP_TIMEOUT_S).stdout
        up_s = time.monotonic() - up_at
        generations = bump_generations(client, apps)
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while not recovered(client, apps, cfg, generations):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not recovered {RECOVERY_TIMEOUT_S}s after `up`")
            time.sleep(POLL_S)
        done = time.monotonic()
        time.sleep(2)
    finally:
        load.stop.set()
        for th in threads:
            th.join(REQUEST_TIMEOUT_S * 2)
    remove(client, apps)
    return Result(pods, len(apps), up_s, done - killed, done - up_at, load.tally(), up_steps(up_output, up_s))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100", help="pod counts, comma-separated (multiples of 10)")
    ap.add_argument("--outage", type=float, default=10.0, help="seconds the control plane stays down")
    args = smoke.parse(ap, sizes="10", outage=2.0)
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(s <= 0 or s % PODS_PER_SERVICE for s in sizes):
        ap.error(f"--sizes must be positive multiples of {PODS_PER_SERVICE}, got {args.sizes}")
    cfg = ClusterConfig()
    client = Client.from_config()
    baseline = timed_up()
    print(f"baseline: `minik8s up` on the healthy cluster (adopts everything): {baseline:.1f}s")
    print(f"outage held {args.outage:.0f}s before `minik8s up`")
    for pods in sizes:
        r = run_size(client, cfg, pods, args.outage)
        print(f"{r.pods:>4} pods / {r.services:>2} Services: kill -> recovered {r.kill_to_recovered_s:.1f}s, "
              f"up -> recovered {r.up_to_recovered_s:.1f}s ({r.up_to_recovered_s / baseline:.1f}x baseline; "
              f"the up run itself {r.up_s:.1f}s); failed requests: ClusterIP {r.failures('clusterip')}, "
              f"NodePort {r.failures('nodeport')}, DNS {r.failures('dns')} (DNS is down with the control plane)",
              flush=True)
        for what, seconds in r.steps:
            print(f"      {seconds:5.1f}s  {what}")
        print(f"      {r.up_to_recovered_s - r.up_s:5.1f}s  after `up` returned: controllers synced, Services up")
    client.close()


if __name__ == "__main__":
    main()
