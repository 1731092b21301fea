"""Translate a Pod's container spec into Docker ``containers.create`` arguments (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minik8s.api.quantity import cpu_millis, memory_bytes
from minik8s.api.types import Container, Pod
from minik8s.kubelet.configrefs import (
    CONFIGMAP,
    SECRET,
    ConfigObjects,
    NoConfigObjects,
    env_from_sources,
    key_ref_value,
)

NANO_CPUS_PER_MILLI = 1_000_000
CPU_SHARES_PER_CPU = 1024
MILLIS_PER_CPU = 1000
#: Docker rejects cpu_shares below 2 (the kernel minimum).
MIN_CPU_SHARES = 2
#: Field paths a container's env may read through ``valueFrom.fieldRef``.
FIELD_REF_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.podIP",
    "status.hostIP",
)


class SpecError(ValueError):
    """The pod asks for something this runtime cannot do; the message names the field."""


@dataclass(frozen=True)
class VolumePaths:
    """Where a pod's volumes live on the node: volume name -> host path."""

    paths: dict[str, Path]
    #: Volumes that are this pod's own directories (emptyDir): subPaths inside them may be created.
    owned: frozenset[str]
    #: Volumes always mounted read-only (ConfigMap and Secret, as in Kubernetes).
    read_only: frozenset[str] = frozenset()


def field_ref_value(pod: Pod, path: str, pod_ip: str | None, host_ip: str | None) -> str:
    values = {
        "metadata.name": pod.metadata.name,
        "metadata.namespace": pod.metadata.namespace,
        "metadata.uid": pod.metadata.uid,
        "spec.nodeName": pod.spec.nodeName,
        "spec.serviceAccountName": pod.spec.serviceAccountName,
        "status.podIP": pod_ip,
        "status.hostIP": host_ip,
    }
    if path in values:
        return values[path] or ""
    if path.startswith("metadata.labels['") and path.endswith("']"):
        return (pod.metadata.labels or {}).get(path[len("metadata.labels['") : -2], "")
    raise SpecError(
        f"valueFrom.fieldRef.fieldPath: unsupported field {path!r} (supported: {FIELD_REF_PATHS})"
    )


def environment(pod: Pod, c: Container, pod_ip: str | None, host_ip: str | None,
                objects: ConfigObjects | None = None, skipped: list[str] | None = None) -> dict[str, str]:
    """envFrom first (later sources win), then env, as the kubelet does; a missing required ConfigMap,
    Secret or key raises ConfigError. envFrom keys that are no valid variable names are left out and
    added to `skipped` (the caller reports them, as the kubelet's InvalidEnvironmentVariableNames event)."""
    source = objects or NoConfigObjects()
    env, invalid = env_from_sources(pod, c, source)
    if skipped is not None:
        skipped.extend(invalid)
    for i, var in enumerate(c.env or []):
        src = var.valueFrom
        if var.value is not None or src is None:
            env[var.name] = var.value or ""
            continue
        if src.fieldRef is not None:
            env[var.name] = field_ref_value(pod, src.fieldRef.fieldPath, pod_ip, host_ip)
            continue
        selector = src.configMapKeyRef or src.secretKeyRef
        if selector is None:
            raise SpecError(f"containers[{c.name}].env[{i}].valueFrom: one of fieldRef, configMapKeyRef or "
                            "secretKeyRef is required")
        kind = CONFIGMAP if src.configMapKeyRef is not None else SECRET
        value = key_ref_value(pod, kind, selector.name or "", selector.key, bool(selector.optional), source)
        if value is not None:
            env[var.name] = value
    return env


def resource_kwargs(c: Container) -> dict[str, Any]:
    out: dict[str, Any] = {}
    res = c.resources
    if res is None:
        return out
    limits, requests = res.limits or {}, res.requests or {}
    if "cpu" in limits:
        out["nano_cpus"] = cpu_millis(limits["cpu"]) * NANO_CPUS_PER_MILLI
    if "memory" in limits:
        out["mem_limit"] = memory_bytes(limits["memory"])
        out["memswap_limit"] = out["mem_limit"]  # no swap beyond the limit, so the limit means OOM
    cpu_request = requests.get("cpu", limits.get("cpu"))
    if cpu_request is not None:
        out["cpu_shares"] = max(
            MIN_CPU_SHARES, cpu_millis(cpu_request) * CPU_SHARES_PER_CPU // MILLIS_PER_CPU
        )
    return out


def volume_binds(c: Container, volumes: VolumePaths) -> list[str]:
    binds: list[str] = []
    for m in c.volumeMounts or []:
        if m.name not in volumes.paths:
            raise SpecError(
                f"containers[{c.name}].volumeMounts[{m.name}]: no volume named {m.name!r} in the pod"
            )
        host = volumes.paths[m.name]
        if m.subPath:
            if Path(m.subPath).is_absolute() or ".." in Path(m.subPath).parts:
                raise SpecError(
                    f"containers[{c.name}].volumeMounts[{m.name}].subPath: must be a relative path "
                    "without '..'"
                )
            host = host / m.subPath
            if m.name in volumes.owned:
                host.mkdir(parents=True, exist_ok=True)
        read_only = m.readOnly or m.name in volumes.read_only
        binds.append(f"{host}:{m.mountPath}:{'ro' if read_only else 'rw'}")
    return binds


def security_kwargs(c: Container, pod: Pod) -> dict[str, Any]:
    sc = c.securityContext
    psc = pod.spec.securityContext
    out: dict[str, Any] = {"privileged": bool(sc and sc.privileged)}
    user = (sc.runAsUser if sc else None) or (psc.runAsUser if psc else None)
    group = (sc.runAsGroup if sc else None) or (psc.runAsGroup if psc else None)
    if user is not None:
        out["user"] = f"{user}:{group}" if group is not None else str(user)
    if sc is not None:
        if sc.readOnlyRootFilesystem:
            out["read_only"] = True
        if sc.capabilities is not None:
            if sc.capabilities.add:
                out["cap_add"] = list(sc.capabilities.add)
            if sc.capabilities.drop:
                out["cap_drop"] = list(sc.capabilities.drop)
        if sc.allowPrivilegeEscalation is False:
            out["security_opt"] = ["no-new-privileges"]
    return out


def container_kwargs(
    pod: Pod, c: Container, sandbox_id: str, volumes: VolumePaths, pod_ip: str | None, host_ip: str | None,
    objects: ConfigObjects | None = None, skipped_env: list[str] | None = None,
) -> dict[str, Any]:
    """Arguments for ``docker.containers.create`` (image, name and labels are added by the caller);
    envFrom keys left out as invalid variable names are added to ``skipped_env``."""
    kwargs: dict[str, Any] = {
        "network_mode": f"container:{sandbox_id}",
        "ipc_mode": f"container:{sandbox_id}",
        "environment": environment(pod, c, pod_ip, host_ip, objects, skipped_env),
        "volumes": volume_binds(c, volumes),
        "detach": True,
        "stdin_open": bool(c.stdin),
        "tty": bool(c.tty),
    }
    if c.command is not None:
        kwargs["entrypoint"] = list(c.command)
        kwargs["command"] = list(c.args or [])
    elif c.args is not None:
        kwargs["command"] = list(c.args)
    if c.workingDir:
        kwargs["working_dir"] = c.workingDir
    kwargs.update(resource_kwargs(c))
    kwargs.update(security_kwargs(c, pod))
    return kwargs


def sandbox_port_bindings(pod: Pod) -> dict[str, Any]:
    """hostPort mappings, which Docker attaches to the sandbox (it owns the network namespace)."""
    ports: dict[str, Any] = {}
    for c in pod.spec.containers:
        for p in c.ports or []:
            if p.hostPort:
                key = f"{p.containerPort}/{(p.protocol or 'TCP').lower()}"
                ports[key] = (p.hostIP, p.hostPort) if p.hostIP else p.hostPort
    return ports


def sandbox_dns_kwargs(pod: Pod, cluster_dns: list[str], cluster_domain: str) -> dict[str, Any]:
    """Docker's dns/dns_search/dns_opt for the pause container, which owns the pod's resolv.conf.

    dnsPolicy ClusterFirst (the default) points the pod at cluster DNS with its namespace first in
    the search path (ndots is explained in `minik8s.dns.resolver`); a hostNetwork pod keeps the
    node's resolver unless it asks for ClusterFirstWithHostNet, and Default/None keep Docker's."""
    from minik8s.dns.resolver import ResolverConf

    policy = pod.spec.dnsPolicy or "ClusterFirst"
    if not cluster_dns or policy not in ("ClusterFirst", "ClusterFirstWithHostNet"):
        return {}
    if pod.spec.hostNetwork and policy != "ClusterFirstWithHostNet":
        return {}
    conf = ResolverConf.for_pod(pod.metadata.namespace or "default", cluster_domain, cluster_dns)
    return {"dns": conf.nameservers, "dns_search": conf.search, "dns_opt": [f"ndots:{conf.ndots}"]}
