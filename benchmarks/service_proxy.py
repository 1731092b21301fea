"""Service proxy benchmark on the proxy testbed (root): programming latency, sync cost, data path.

(a) endpoint change -> rule live: p50/p99 with N Services x 10 endpoints present (render + diff +
    one `nft -f` in the node netns; "live" = the transaction committed);
(b) sync time for a one-service change with 100 / 1000 / 5000 Services present, beside the cost of
    an empty `nft -f` at the same size; a change is element adds/deletes only (see
    minik8s/proxy/rules.py), so its cost should follow the change, not the total;
(c) request latency and throughput through a ClusterIP vs straight to the pod IP (same run).

Usage: python -m benchmarks.service_proxy [--services 1000] [--changes 50] [--requests 500]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import time

from benchmarks import smoke
from minik8s.api.services import Endpoints, Service
from minik8s.proxy import nft
from minik8s.proxy.proxy import Proxier
from minik8s.proxy.rules import render_service, service_key
from minik8s.proxy.testbed import RULES, SERVICE_CIDR, ServiceBed, endpoints, service

ENDPOINTS_PER_SERVICE = 10


def synthetic(n: int) -> tuple[dict[str, Service], dict[str, Endpoints]]:
    net = ipaddress.IPv4Network(SERVICE_CIDR)
    pods = ipaddress.IPv4Network("10.248.0.0/16")
    svcs, eps = {}, {}
    for i in range(n):
        name = f"s{i}"
        svcs[f"default/{name}"] = service(name, str(net[10 + i]))
        eps[f"default/{name}"] = endpoints(name, [str(pods[(i * ENDPOINTS_PER_SERVICE + j) % 60000 + 256])
                                                  for j in range(ENDPOINTS_PER_SERVICE)])
    return svcs, eps


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def one_change_latencies(netns: str, n: int, changes: int) -> dict[str, float]:
    svcs, eps = synthetic(n)
    proxier = Proxier(RULES, netns)
    t0 = time.perf_counter()
    proxier.replace({k: render_service(s, eps.get(k), RULES) for k, s in svcs.items()})
    full_s = time.perf_counter() - t0
    lat, lines = [], []
    for c in range(changes):
        key = f"default/s{(c * 7919) % n}"
        name = key.split("/")[1]
        ips = [a.ip for a in (eps[key].subsets or [])[0].addresses or []]
        ips = ips[1:] if len(ips) == ENDPOINTS_PER_SERVICE else [*ips, f"10.248.250.{c % 250 + 1}"]
        t0 = time.perf_counter()
        eps[key] = endpoints(name, ips)  # the informer's event -> render -> diff -> nft -f
        stats = proxier.update({service_key("default", name): render_service(svcs[key], eps[key], RULES)})
        lat.append(time.perf_counter() - t0)
        lines.append(stats.lines)
    noop = []  # the fixed cost of one `nft -f` (process start, netlink) at this size, same run
    for _ in range(changes):
        t0 = time.perf_counter()
        nft.apply(f"add table ip {RULES.table}\n", netns)
        noop.append(time.perf_counter() - t0)
    return {"services": n, "full_replace_ms": round(full_s * 1000, 1),
            "change_p50_ms": round(pct(lat, 0.5) * 1000, 2), "change_p99_ms": round(pct(lat, 0.99) * 1000, 2),
            "change_mean_ms": round(statistics.mean(lat) * 1000, 2), "nft_lines_per_change": statistics.mean(lines),
            "empty_nft_p50_ms": round(pct(noop, 0.5) * 1000, 2)}


def data_path(sb: ServiceBed, requests: int) -> dict[str, float | dict[str, float]]:
    cip = str(ipaddress.IPv4Network(SERVICE_CIDR)[5])
    desired = {"default/web": render_service(service("web", cip), endpoints("web", [sb.backend_b.ip]), RULES)}
    for node in sb.bed.nodes:
        Proxier(RULES, node.netns).replace(desired)
    out: dict[str, float | dict[str, float]] = {}
    for label, url in (("pod_ip", f"http://{sb.backend_b.ip}:8080/"), ("cluster_ip", f"http://{cip}:80/")):
        sb.requests(sb.client_pod.netns, url, 20)  # warm up
        _, stats = sb.requests(sb.client_pod.netns, url, requests)
        out[label] = stats
    pod, via = out["pod_ip"], out["cluster_ip"]
    assert isinstance(pod, dict) and isinstance(via, dict)
    out["ratio_p50_latency"] = round(via["p50_us"] / pod["p50_us"], 3)
    out["ratio_throughput"] = round(via["rps"] / pod["rps"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--scales", default="100,1000,5000")
    args = smoke.parse(ap, services=20, changes=5, requests=50, scales="10,50")
    sb = ServiceBed()
    sb.build()
    try:
        netns = sb.node_a.netns
        report: dict[str, object] = {}
        report["a_programming_latency"] = one_change_latencies(netns, args.services, args.changes)
        scales = [one_change_latencies(netns, int(n), max(10, args.changes // 2)) for n in args.scales.split(",")]
        report["b_sync_vs_total"] = scales
        report["b_change_p50_largest_over_smallest"] = round(
            float(scales[-1]["change_p50_ms"]) / float(scales[0]["change_p50_ms"]), 2)
        report["b_services_largest_over_smallest"] = round(float(scales[-1]["services"]) / float(scales[0]["services"]))
        report["c_data_path"] = data_path(sb, args.requests)
        print(json.dumps(report, indent=2))
    finally:
        sb.teardown()


if __name__ == "__main__":
    main()
