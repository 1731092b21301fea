"""`top nodes|pods` (metrics.k8s.io) and the HorizontalPodAutoscaler section of `describe`."""

from __future__ import annotations

from typing import Any

import click

from cli.common import client, namespace_option
from minik8s.api import autoscaling as a
from minik8s.api import printers
from minik8s.api.quantity import QuantityError, cpu_millis, memory_bytes
from minik8s.errors import NotFound
from minik8s.metrics.types import GROUP_VERSION, cpu_nanocores, memory_usage_bytes, top_cpu, top_memory

Obj = dict[str, Any]
NO_METRICS = "error: Metrics not available yet: the kubelets report every metrics_interval_s (15 s by default)"


# --- formatting (pure, tested) ----------------------------------------------------------------------

def _allocatable(node: Obj, key: str) -> int:
    status = node.get("status") or {}
    value = (status.get("allocatable") or status.get("capacity") or {}).get(key)
    if value is None:
        return 0
    try:
        return cpu_millis(value) if key == "cpu" else memory_bytes(value)
    except QuantityError:
        return 0


def format_top_nodes(metrics: list[Obj], nodes: list[Obj]) -> str:
    """kubectl top nodes: NAME CPU(cores) CPU% MEMORY(bytes) MEMORY%."""
    by_name = {n["metadata"]["name"]: n for n in nodes}
    rows = []
    for m in metrics:
        name = m["metadata"]["name"]
        usage = m.get("usage") or {}
        nano, mem = cpu_nanocores(usage.get("cpu")), memory_usage_bytes(usage.get("memory"))
        node = by_name.get(name, {})
        cpu_alloc, mem_alloc = _allocatable(node, "cpu"), _allocatable(node, "memory")
        cpu_pct = f"{nano // 10_000 // cpu_alloc}%" if cpu_alloc else "<unknown>"
        mem_pct = f"{mem * 100 // mem_alloc}%" if mem_alloc else "<unknown>"
        rows.append([name, top_cpu(nano), cpu_pct, top_memory(mem), mem_pct])
    return printers.format_table(["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"], rows)


def format_top_pods(metrics: list[Obj], containers: bool = False, all_namespaces: bool = False) -> str:
    """kubectl top pods: NAME CPU(cores) MEMORY(bytes) (POD NAME ... with --containers, NAMESPACE with -A)."""
    rows = []
    for m in metrics:
        meta = m["metadata"]
        prefix = [meta.get("namespace", "")] if all_namespaces else []
        cs = m.get("containers") or []
        if containers:
            for c in cs:
                u = c.get("usage") or {}
                rows.append([*prefix, meta["name"], c["name"], top_cpu(cpu_nanocores(u.get("cpu"))),
                             top_memory(memory_usage_bytes(u.get("memory")))])
        else:
            nano = sum(cpu_nanocores((c.get("usage") or {}).get("cpu")) for c in cs)
            mem = sum(memory_usage_bytes((c.get("usage") or {}).get("memory")) for c in cs)
            rows.append([*prefix, meta["name"], top_cpu(nano), top_memory(mem)])
    headers = (["NAMESPACE"] if all_namespaces else []) + (["POD", "NAME"] if containers else ["NAME"])
    return printers.format_table([*headers, "CPU(cores)", "MEMORY(bytes)"], rows)


# --- commands ---------------------------------------------------------------------------------------

@click.group()
def top() -> None:
    """Show CPU and memory usage of nodes or pods (metrics.k8s.io, reported by the kubelets).

    \b
    Example:
      minik8s top nodes
      minik8s top pods -A --containers
    """


@top.command("nodes")
@click.argument("name", required=False)
def top_nodes(name: str | None) -> None:
    """Usage of each node, and its share of the node's allocatable CPU and memory.

    \b
    Example:
      minik8s top nodes
    """
    c = client()
    path = f"/apis/{GROUP_VERSION}/nodes" + (f"/{name}" if name else "")
    body = c.request("GET", path)
    metrics = [body] if name else list(body.get("items") or [])
    if not metrics:
        raise NotFound(NO_METRICS.removeprefix("error: "))
    nodes = [n.to_dict() for n in c.list("Node").items]
    click.echo(format_top_nodes(metrics, nodes))


@top.command("pods")
@click.argument("name", required=False)
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="Pods in every namespace.")
@click.option("--containers", is_flag=True, help="One line per container.")
@click.option("-l", "--selector", default=None, help="Label selector, e.g. app=web.")
def top_pods(name: str | None, namespace: str | None, all_namespaces: bool, containers: bool,
             selector: str | None) -> None:
    """Usage of each pod (sum of its containers), or of each container with --containers.

    \b
    Example:
      minik8s top pods -n default
      minik8s top pods web-5f7d9 --containers
    """
    ns = None if all_namespaces else (namespace or "default")
    base = f"/apis/{GROUP_VERSION}" + (f"/namespaces/{ns}" if ns else "") + "/pods"
    c = client()
    if name:
        metrics = [c.request("GET", f"{base}/{name}")]
    else:
        metrics = list(c.request("GET", base, params={"labelSelector": selector} if selector else {})
                       .get("items") or [])
    if not metrics:
        raise NotFound(f"Metrics not available for pods in namespace {ns}" if ns else "Metrics not available")
    click.echo(format_top_pods(metrics, containers, all_namespaces))


COMMANDS = [top]


# --- describe hpa -----------------------------------------------------------------------------------

def describe_hpa(obj: Obj, lines: list[str]) -> None:
    """Reference, per-metric current/target, min/max, replicas, last scale time and conditions."""
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj["metadata"]
    pad = 46
    lines.append(f"{'Labels:':<20}{','.join(f'{k}={v}' for k, v in (meta.get('labels') or {}).items()) or '<none>'}")
    lines.append(f"{'Reference:':<20}{a.reference(obj)}")
    lines.append("Metrics:" + " " * (pad - 8) + "( current / target )")
    for m in spec.get("metrics") or []:
        res = m.get("resource") or {}
        target = res.get("target") or {}
        current = a._current_of(status, res.get("name", "")) or {}  # noqa: SLF001 - shared printer helper
        if target.get("type") == "Utilization":
            label = f'  resource {res.get("name")} on pods  (as a percentage of request):'
            cur = current.get("averageUtilization")
            shown = f"{cur}% ({current.get('averageValue')})" if cur is not None else "<unknown>"
            lines.append(f"{label:<{pad}}{shown} / {target.get('averageUtilization')}%")
        else:
            label = f'  resource {res.get("name")} on pods:'
            lines.append(f"{label:<{pad}}{current.get('averageValue', '<unknown>')} / {target.get('averageValue')}")
    lines.append(f"{'Min replicas:':<20}{spec.get('minReplicas', a.DEFAULT_MIN_REPLICAS)}")
    lines.append(f"{'Max replicas:':<20}{spec.get('maxReplicas')}")
    behavior = spec.get("behavior") or {}
    lines.append("Behavior:")
    for direction, label in (("scaleUp", "Scale Up"), ("scaleDown", "Scale Down")):
        rules = behavior.get(direction) or {}
        lines.append(f"  {label}:")
        lines.append(f"    Stabilization Window: {rules.get('stabilizationWindowSeconds', 0)} seconds")
        lines.append(f"    Select Policy: {rules.get('selectPolicy', 'Max')}")
        pols = ", ".join(f"{p.get('type')} {p.get('value')} / {p.get('periodSeconds')}s"
                         for p in rules.get("policies") or [])
        lines.append(f"    Policies: {pols or '<none>'}")
    ref = spec.get("scaleTargetRef") or {}
    lines.append(f"{ref.get('kind', '')} pods:{'':<7}{status.get('currentReplicas', 0)} current / "
                 f"{status.get('desiredReplicas', 0)} desired")
    lines.append(f"{'Last Scale Time:':<20}{status.get('lastScaleTime') or '<none>'}")
    lines.append("Conditions:")
    conds = status.get("conditions") or []
    if conds:
        table = printers.format_table(["Type", "Status", "Reason", "Message"],
                                      [[c.get("type", ""), c.get("status", ""), c.get("reason", ""),
                                        c.get("message", "")] for c in conds])
        lines.extend("  " + line for line in table.splitlines())
    else:
        lines.append("  <none>")
