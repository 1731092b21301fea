"""`describe`: a readable page for one object, ending with its recent Events."""

from __future__ import annotations

import base64
from typing import Any

import yaml

from minik8s import Client
from minik8s.api import kinds as k
from minik8s.api import printers
from minik8s.errors import MiniK8sError

Obj = dict[str, Any]
INDENT = "  "


def _kv(lines: list[str], key: str, value: Any, depth: int = 0) -> None:
    lines.append(f"{INDENT * depth}{key + ':':<20}{'' if value is None else value}")


def _map(values: dict[str, Any] | None) -> str:
    return ",".join(f"{k2}={v}" for k2, v in (values or {}).items()) or "<none>"


def _state(state: Obj | None) -> list[tuple[str, Any]]:
    state = state or {}
    if "running" in state:
        return [("State", "Running"), ("  Started", state["running"].get("startedAt"))]
    if "waiting" in state:
        w = state["waiting"]
        out: list[tuple[str, Any]] = [("State", "Waiting"), ("  Reason", w.get("reason"))]
        if w.get("message"):
            out.append(("  Message", w["message"]))
        return out
    if "terminated" in state:
        term = state["terminated"]
        return [("State", "Terminated"), ("  Reason", term.get("reason")), ("  Exit Code", term.get("exitCode")),
                ("  Started", term.get("startedAt")), ("  Finished", term.get("finishedAt"))]
    return [("State", "Waiting")]


def _describe_container(c: Obj, cs: Obj, lines: list[str]) -> None:
    """One entry of the Containers / Init Containers sections."""
    lines.append(f"{INDENT}{c['name']}:")
    _kv(lines, "Container ID", cs.get("containerID") or "", 2)
    _kv(lines, "Image", c.get("image"), 2)
    if c.get("command"):
        _kv(lines, "Command", " ".join(c["command"]), 2)
    if c.get("args"):
        _kv(lines, "Args", " ".join(c["args"]), 2)
    ports = ", ".join(f"{p['containerPort']}/{p.get('protocol', 'TCP')}" for p in c.get("ports") or [])
    _kv(lines, "Port", ports or "<none>", 2)
    for key, value in _state(cs.get("state")):
        _kv(lines, key, value, 2)
    if cs.get("lastState"):
        for key, value in _state(cs["lastState"]):
            _kv(lines, "Last " + key.strip() if key == "State" else key, value, 2)
    _kv(lines, "Ready", str(cs.get("ready", False)), 2)
    _kv(lines, "Restart Count", cs.get("restartCount", 0), 2)
    res = c.get("resources") or {}
    if res.get("limits"):
        _kv(lines, "Limits", _map(res["limits"]), 2)
    if res.get("requests"):
        _kv(lines, "Requests", _map(res["requests"]), 2)
    env = ", ".join(f"{e['name']}={e.get('value', '')}" for e in c.get("env") or [])
    _kv(lines, "Environment", env or "<none>", 2)
    mounts = ", ".join(f"{m['mountPath']} from {m['name']}" for m in c.get("volumeMounts") or [])
    _kv(lines, "Mounts", mounts or "<none>", 2)


def _describe_pod(pod: Obj, lines: list[str]) -> None:
    spec, status, meta = pod.get("spec") or {}, pod.get("status") or {}, pod["metadata"]
    _kv(lines, "Node", f"{spec.get('nodeName') or '<none>'}/{status.get('hostIP') or ''}".rstrip("/"))
    _kv(lines, "Start Time", status.get("startTime") or "<none>")
    _kv(lines, "Labels", _map(meta.get("labels")))
    _kv(lines, "Status", printers.pod_status(pod))
    _kv(lines, "IP", status.get("podIP") or "<none>")
    _kv(lines, "QoS Class", status.get("qosClass"))
    if spec.get("initContainers"):
        lines.append("Init Containers:")
        init_statuses = {s["name"]: s for s in status.get("initContainerStatuses") or []}
        for c in spec["initContainers"]:
            _describe_container(c, init_statuses.get(c["name"], {}), lines)
    lines.append("Containers:")
    statuses = {s["name"]: s for s in status.get("containerStatuses") or []}
    for c in spec.get("containers") or []:
        _describe_container(c, statuses.get(c["name"], {}), lines)
    lines.append("Conditions:")
    for cond in status.get("conditions") or []:
        lines.append(f"{INDENT}{cond['type']:<18}{cond['status']}")
    lines.append("Volumes:")
    for v in spec.get("volumes") or []:
        source = "EmptyDir" if "emptyDir" in v else f"HostPath {v.get('hostPath', {}).get('path')}"
        lines.append(f"{INDENT}{v['name']}: {source}")


def _describe_node(node: Obj, lines: list[str]) -> None:
    status = node.get("status") or {}
    _kv(lines, "Roles", printers.node_roles(node))
    _kv(lines, "Labels", _map(node["metadata"].get("labels")))
    _kv(lines, "PodCIDR", (node.get("spec") or {}).get("podCIDR"))
    _kv(lines, "Taints", ", ".join(f"{t['key']}:{t['effect']}" for t in (node.get("spec") or {}).get("taints") or [])
        or "<none>")
    lines.append("Conditions:")
    for cond in status.get("conditions") or []:
        lines.append(f"{INDENT}{cond['type']:<18}{cond['status']:<8}{cond.get('reason', '')}  "
                     f"{cond.get('message', '')}".rstrip())
    lines.append("Addresses:")
    for a in status.get("addresses") or []:
        lines.append(f"{INDENT}{a['type']}: {a['address']}")
    for section in ("capacity", "allocatable"):
        lines.append(f"{section.title()}:")
        for key, value in (status.get(section) or {}).items():
            lines.append(f"{INDENT}{key}: {value}")
    info = status.get("nodeInfo") or {}
    lines.append("System Info:")
    for key in ("osImage", "kernelVersion", "containerRuntimeVersion", "kubeletVersion"):
        lines.append(f"{INDENT}{key}: {info.get(key, '')}")


def _describe_service(client: Client, svc: Obj, lines: list[str]) -> None:
    spec, meta = svc.get("spec") or {}, svc["metadata"]
    _kv(lines, "Labels", _map(meta.get("labels")))
    _kv(lines, "Selector", _map(spec.get("selector")))
    _kv(lines, "Type", spec.get("type"))
    _kv(lines, "IP", spec.get("clusterIP"))
    try:
        endpoints = client.get("Endpoints", meta["name"], meta.get("namespace")).to_dict()
    except MiniK8sError:
        endpoints = {}
    for port in spec.get("ports") or []:
        label = port.get("name") or "<unset>"
        _kv(lines, "Port", f"{label}  {port['port']}/{port.get('protocol', 'TCP')}")
        _kv(lines, "TargetPort", f"{port.get('targetPort', port['port'])}/{port.get('protocol', 'TCP')}")
        if port.get("nodePort"):
            _kv(lines, "NodePort", f"{label}  {port['nodePort']}/{port.get('protocol', 'TCP')}")
        addrs = [f"{a['ip']}:{p['port']}" for s in endpoints.get("subsets") or [] for p in s.get("ports") or []
                 if p.get("name") in (None, port.get("name")) for a in s.get("addresses") or []]
        _kv(lines, "Endpoints", ",".join(addrs) or "<none>")
        not_ready = [a["ip"] for s in endpoints.get("subsets") or [] for a in s.get("notReadyAddresses") or []]
        if not_ready:
            _kv(lines, "NotReady", ",".join(sorted(set(not_ready))))


def _describe_config(kind: str, obj: Obj, lines: list[str]) -> None:
    """kubectl's layout: a ConfigMap shows its values, a Secret only each key's size."""
    meta = obj["metadata"]
    _kv(lines, "Labels", _map(meta.get("labels")))
    _kv(lines, "Annotations", _map(meta.get("annotations")))
    if kind == "Secret":
        _kv(lines, "Type", obj.get("type") or "Opaque")
        lines.extend(["Data", "===="])
        for key, value in sorted((obj.get("data") or {}).items()):
            lines.append(f"{key}:  {len(base64.b64decode(value))} bytes")
        return
    lines.extend(["Data", "===="])
    for key, value in sorted((obj.get("data") or {}).items()):
        lines.extend([f"{key}:", "----", str(value), ""])
    lines.extend(["BinaryData", "===="])
    for key, value in sorted((obj.get("binaryData") or {}).items()):
        lines.append(f"{key}: {len(base64.b64decode(value))} bytes")


def _events(client: Client, info: k.KindInfo, obj: Obj) -> list[str]:
    meta = obj["metadata"]
    selector = f"involvedObject.name={meta['name']},involvedObject.kind={info.kind}"
    events = [e.to_dict() for e in client.list("Event", meta.get("namespace") or "default",
                                                field_selector=selector).items]
    if not events:
        return ["Events:              <none>"]
    events.sort(key=lambda e: e.get("lastTimestamp") or e["metadata"].get("creationTimestamp") or "")
    headers = ["Type", "Reason", "Age", "From", "Message"]
    rows = [[e.get("type", ""), e.get("reason", ""), printers.event_last_seen(e),
             (e.get("source") or {}).get("component", ""), e.get("message", "")] for e in events]
    table = printers.format_table(headers, rows)
    return ["Events:", *[INDENT + line for line in table.splitlines()]]


def describe_object(client: Client, info: k.KindInfo, obj: Obj) -> str:
    meta = obj["metadata"]
    lines: list[str] = []
    _kv(lines, "Name", meta["name"])
    if info.namespaced:
        _kv(lines, "Namespace", meta.get("namespace"))
    if info.kind == "Pod":
        _describe_pod(obj, lines)
    elif info.kind == "Node":
        _describe_node(obj, lines)
    elif info.kind == "HorizontalPodAutoscaler":
        from cli.autoscaling import describe_hpa

        describe_hpa(obj, lines)
    elif info.kind == "Service":
        _describe_service(client, obj, lines)
    elif info.kind in ("ConfigMap", "Secret"):
        _describe_config(info.kind, obj, lines)
    elif info.kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"):
        from cli.auth import describe_rbac

        describe_rbac(info.kind, obj, lines)
    else:
        _kv(lines, "Labels", _map(meta.get("labels")))
        _kv(lines, "Annotations", _map(meta.get("annotations")))
        body = {key: v for key, v in obj.items() if key not in ("apiVersion", "kind", "metadata")}
        if body:
            lines.extend(yaml.safe_dump(body, sort_keys=False).rstrip().splitlines())
    _kv(lines, "Created", meta.get("creationTimestamp"))
    lines.extend(_events(client, info, obj))
    return "\n".join(lines)
