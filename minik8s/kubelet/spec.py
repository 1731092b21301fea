"""Translate a Pod's container spec into Docker ``containers.create`` arguments (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minik8s.api.quantity import cpu_millis, memory_bytes
from minik8s.api.types import Container, Pod
from minik8s.kubelet import subpath
from minik8s.kubelet.configrefs import (
    CONFIGMAP,
    SECRET,
    ConfigObjects,
    NoConfigObjects,
    env_from_sources,
    key_ref_value,
)
from minik8s.kubelet.downward import DownwardError, env_field_value, resource_value

NANO_CPUS_PER_MILLI = 1_000_000
CPU_SHARES_PER_CPU = 1024
MILLIS_PER_CPU = 1000
#: Docker rejects cpu_shares below 2 (the kernel minimum).
MIN_CPU_SHARES = 2


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


def environment(pod: Pod, c: Container, pod_ip: str | None, host_ip: str | None,
                objects: ConfigObjects | None = None, skipped: list[str] | None = None,
                allocatable: Mapping[str, str | int | float] | None = None) -> dict[str, str]:
    """envFrom first (later sources win), then env, as the kubelet does; a missing required ConfigMap,
    Secret or key raises ConfigError. envFrom keys that are no valid variable names are left out and
    added to `skipped` (the caller reports them, as the kubelet's InvalidEnvironmentVariableNames event).
    `allocatable` is the node's, for a resourceFieldRef to a limit the container does not set."""
    source = objects or NoConfigObjects()
    env, invalid = env_from_sources(pod, c, source)
    if skipped is not None:
        skipped.extend(invalid)
    for i, var in enumerate(c.env or []):
        src = var.valueFrom
        if var.value is not None or src is None:
            env[var.name] = var.value or ""
            continue
        try:
            if src.fieldRef is not None:
                env[var.name] = env_field_value(pod, src.fieldRef.fieldPath, pod_ip, host_ip)
                continue
            if src.resourceFieldRef is not None:
                env[var.name] = resource_value(pod, c, src.resourceFieldRef, allocatable or {})
                continue
        except DownwardError as exc:
            raise SpecError(f"containers[{c.name}].env[{i}].valueFrom.{exc}") from None
        selector = src.configMapKeyRef or src.secretKeyRef
        if selector is None:
            raise SpecError(f"containers[{c.name}].env[{i}].valueFrom: one of fieldRef, resourceFieldRef, "
                            "configMapKeyRef or secretKeyRef is required")
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
            try:
                host = subpath.resolve(host, m.subPath, create=m.name in volumes.owned)
            except subpath.SubPathError as exc:
                raise SpecError(f'containers[{c.name}].volumeMounts[{m.name}].subPath "{m.subPath}": {exc}') from None
        read_only = m.readOnly or m.name in volumes.read_only
        binds.append(f"{host}:{m.mountPath}:{'ro' if read_only else 'rw'}")
    return binds


def _first(*values: Any) -> Any:
    """The container's setting, else the pod's (0 and False are settings, not absent)."""
    return next((v for v in values if v is not None), None)


def _security_settings(c: Container, pod: Pod) -> tuple[int | None, int | None, bool | None]:
    sc, psc = c.securityContext, pod.spec.securityContext
    return (_first(sc and sc.runAsUser, psc and psc.runAsUser), _first(sc and sc.runAsGroup, psc and psc.runAsGroup),
            _first(sc and sc.runAsNonRoot, psc and psc.runAsNonRoot))


def image_user_needed(c: Container, pod: Pod) -> bool:
    """Whether the image's configured user decides something (runAsNonRoot, or a group without a user)."""
    user, group, non_root = _security_settings(c, pod)
    return bool(non_root) or (user is None and group is not None)


def check_non_root(c: Container, pod: Pod, image_user: str) -> None:
    """The kubelet's runAsNonRoot check: refuse to start a container that would run as uid 0."""
    user, _group, non_root = _security_settings(c, pod)
    if not non_root:
        return
    where = f'(pod: "{pod.metadata.namespace}/{pod.metadata.name}", container: {c.name})'
    if user is not None:
        if user == 0:
            raise SpecError(f"container's runAsUser breaks non-root policy {where}")
        return
    uid = image_user.split(":", 1)[0]
    if uid in ("", "0", "root"):
        raise SpecError(f"container has runAsNonRoot and image will run as root {where}")
    if not uid.isdigit():
        raise SpecError(f"container has runAsNonRoot and image has non-numeric user ({uid}), cannot verify user "
                        f"is non-root {where}")


def _seccomp_options(c: Container, pod: Pod) -> list[str]:
    sc, psc = c.securityContext, pod.spec.securityContext
    profile = _first(sc and sc.seccompProfile, psc and psc.seccompProfile)
    if profile is None or profile.type == "RuntimeDefault":
        return []  # Docker's default profile is the runtime default
    if profile.type == "Unconfined":
        return ["seccomp=unconfined"]
    raise SpecError(f'containers[{c.name}].securityContext.seccompProfile: type "{profile.type}" is not supported')


def security_kwargs(c: Container, pod: Pod, image_user: str = "") -> dict[str, Any]:
    """Docker's user, privileges, capabilities and seccomp for the container; `image_user` is the image's
    configured user (needed when `image_user_needed`)."""
    sc = c.securityContext
    psc = pod.spec.securityContext
    out: dict[str, Any] = {"privileged": bool(sc and sc.privileged)}
    check_non_root(c, pod, image_user)
    user, group, _non_root = _security_settings(c, pod)
    if user is not None:
        out["user"] = f"{user}:{group}" if group is not None else str(user)
    elif group is not None:  # a group alone keeps the image's user
        out["user"] = f"{image_user.split(':', 1)[0] or 0}:{group}"
    if psc is not None and psc.fsGroup is not None:
        out["group_add"] = [str(psc.fsGroup)]
    security_opt = _seccomp_options(c, pod)
    if sc is not None:
        if sc.readOnlyRootFilesystem:
            out["read_only"] = True
        if sc.capabilities is not None:
            if sc.capabilities.add:
                out["cap_add"] = list(sc.capabilities.add)
            if sc.capabilities.drop:
                out["cap_drop"] = list(sc.capabilities.drop)
        if sc.allowPrivilegeEscalation is False:
            security_opt.append("no-new-privileges")
    if security_opt:
        out["security_opt"] = security_opt
    return out


def container_kwargs(
    pod: Pod, c: Container, sandbox_id: str, volumes: VolumePaths, pod_ip: str | None, host_ip: str | None,
    objects: ConfigObjects | None = None, skipped_env: list[str] | None = None, image_user: str = "",
    allocatable: Mapping[str, str | int | float] | None = None,
) -> dict[str, Any]:
    """Arguments for ``docker.containers.create`` (image, name and labels are added by the caller);
    envFrom keys left out as invalid variable names are added to ``skipped_env``."""
    kwargs: dict[str, Any] = {
        "network_mode": f"container:{sandbox_id}",
        "ipc_mode": f"container:{sandbox_id}",
        "environment": environment(pod, c, pod_ip, host_ip, objects, skipped_env, allocatable),
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
    kwargs.update(security_kwargs(c, pod, image_user))
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
