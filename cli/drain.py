"""Draining a node through the Eviction API, as `kubectl drain --ignore-daemonsets` does: cordon, evict
every pod but DaemonSet ones, retry the evictions a PodDisruptionBudget refuses, and wait for the pods
to be gone."""

from __future__ import annotations

import time
from typing import Any

import click

from minik8s.client.sdk import Client
from minik8s.errors import NotFound, Timeout, TooManyRequests

DRAIN_TIMEOUT_S = 90.0
POLL_S = 0.5
EVICTION_RETRY_S = 5.0  # kubectl drain's wait between refused evictions


def drainable(client: Client, name: str) -> list[Any]:
    """The node's pods except DaemonSet ones (`kubectl drain --ignore-daemonsets`): the DaemonSet controller
    would put those straight back on the cordoned node; they go with the Node object."""
    return [pod for pod in client.list("Pod", field_selector=f"spec.nodeName={name}").items
            if not any(r.controller and r.kind == "DaemonSet" for r in pod.metadata.ownerReferences or [])]


def _key(pod: Any) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


def _evict_round(client: Client, pods: list[Any], evicted: set[str]) -> list[Any]:
    """Evict what is not yet being deleted; the pods a budget refused this time."""
    refused = []
    for pod in pods:
        uid_key = f"{_key(pod)}/{pod.metadata.uid}"
        if pod.metadata.deletionTimestamp or uid_key in evicted:
            continue
        try:
            client.evict(pod.metadata.name, pod.metadata.namespace)
        except NotFound:
            continue
        except TooManyRequests as exc:
            click.echo(f'error when evicting pods/"{pod.metadata.name}" -n "{pod.metadata.namespace}" '
                       f"(will retry after {EVICTION_RETRY_S:g}s): {exc.message}")
            refused.append(pod)
            continue
        evicted.add(uid_key)
        click.echo(f"evicting pod {_key(pod)}")
    return refused


def drain(client: Client, name: str, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
    """Cordon the node and evict its pods, waiting (up to `timeout_s`) for budgets that refuse. Pods that
    were evicted but are still terminating at the deadline (their node's kubelet is gone) are deleted
    forcibly; pods whose budget still refuses are left running and the drain fails."""
    client.patch("Node", name, {"spec": {"unschedulable": True}}, None)
    click.echo(f"node/{name} cordoned")
    deadline = time.monotonic() + timeout_s
    evicted: set[str] = set()
    refused: list[Any] = []
    while (pods := drainable(client, name)) and time.monotonic() < deadline:
        refused = _evict_round(client, pods, evicted)
        time.sleep(min(EVICTION_RETRY_S if refused else POLL_S, max(0.0, deadline - time.monotonic())))
    left = drainable(client, name)
    for pod in left:
        if pod.metadata.deletionTimestamp:
            client.delete("Pod", pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
    blocked = [_key(p) for p in left if not p.metadata.deletionTimestamp]
    if blocked:
        raise Timeout(f"drain of node {name} timed out after {timeout_s:g}s: evicting {', '.join(blocked)} would "
                      "violate a PodDisruptionBudget (the node stays cordoned)")
    click.echo(f"node/{name} drained")
