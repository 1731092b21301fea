"""Resource logic behind the REST routes: validate, default, store, and the subresources.

Synchronous on purpose: the HTTP layer runs it in worker threads, tests call it directly.
"""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
import logging
import secrets
import threading
import uuid
from typing import Any

from pydantic import ValidationError

from minik8s import jsonc
from minik8s.api import kinds as k
from minik8s.api.networking import default_ingress_class
from minik8s.api.selectors import labels_match, parse_field_selector, parse_label_selector
from minik8s.api.services import service_defaults
from minik8s.api.validation import pydantic_causes
from minik8s.apiserver.dnshosts import HostClaims
from minik8s.apiserver.services import DEFAULT_SERVICE_CIDR, ServiceAllocator
from minik8s.errors import AlreadyExists, BadRequest, Conflict, Invalid, NotFound
from minik8s.store import EtcdStore

log = logging.getLogger("minik8s.apiserver")

Obj = dict[str, Any]
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
DEFAULT_GRACE_S = 30
DEFAULT_POD_CIDR = "10.244.0.0/16"
DEFAULT_NODE_CIDR_PREFIX = 24
GENERATE_SUFFIX_LEN = 5
NAMESPACE_GUARD_TRIES = 3  # creates racing changes to their namespace: re-read it this many times
MAX_REMEMBERED_NAMESPACES = 10000
RECENT_PODS = 10000  # new pods remembered for their binding (~1 KB each)
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_for(info: k.KindInfo, namespace: str | None, name: str | None = None) -> str:
    parts = ["/registry", info.resource_key]
    if info.namespaced and namespace:
        parts.append(namespace)
    key = "/".join(parts) + "/"
    return key + name if name else key


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pod_defaults(obj: Obj) -> None:
    spec = obj["spec"]
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", DEFAULT_GRACE_S)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    for c in [*(spec.get("initContainers") or []), *spec["containers"]]:
        image = str(c.get("image", ""))
        tag = image.rsplit("/", 1)[-1]
        latest = ":" not in tag or tag.endswith(":latest")
        c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        for p in c.get("ports") or []:
            p.setdefault("protocol", "TCP")
    status = obj.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", _qos_class(spec))


def _qos_class(spec: Obj) -> str:
    containers = spec.get("containers") or []
    reqs = [((c.get("resources") or {}).get("requests") or {}) for c in containers]
    lims = [((c.get("resources") or {}).get("limits") or {}) for c in containers]
    if not any(reqs) and not any(lims):
        return "BestEffort"
    guaranteed = all(
        all(r in lim for r in ("cpu", "memory")) and all(str(req.get(r, lim[r])) == str(lim[r]) for r in lim)
        for req, lim in zip(reqs, lims, strict=True)
    )
    return "Guaranteed" if guaranteed else "Burstable"


DEFAULTERS = {"Pod": _pod_defaults, "Service": service_defaults}


class RecentWrites:
    """What this server last wrote for up to `size` keys (oldest forgotten first), as encoded bytes, so
    a write that soon follows (a new pod's binding) can compare-and-swap on it without reading it back.
    A stale entry (someone wrote the key since) only costs that write its conflict and a read."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key: str, obj: Obj) -> None:
        value = jsonc.dumps(obj)
        with self._lock:
            self._items.pop(key, None)
            if len(self._items) >= self._size:
                del self._items[next(iter(self._items))]
            self._items[key] = value

    def take(self, key: str) -> Obj | None:
        """The remembered object (a fresh copy, with its resourceVersion), forgetting it."""
        with self._lock:
            value = self._items.pop(key, None)
        return jsonc.loads(value) if value is not None else None

    def forget(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


class Resources:
    """CRUD for every kind in the kinds table, over one EtcdStore."""

    def __init__(self, store: EtcdStore, pod_cidr: str = DEFAULT_POD_CIDR,
                 node_cidr_prefix: int = DEFAULT_NODE_CIDR_PREFIX, service_cidr: str = DEFAULT_SERVICE_CIDR) -> None:
        self.store = store
        # ClusterIPs and NodePorts, derived from the stored Services under the allocator's lock
        self.services = ServiceAllocator(service_cidr, lambda: self.store.list(key_for(k.lookup("Service"), None))[0])
        # cross-object rule of the DNS kind: one owner per host + path (checked under its lock)
        self.dns_hosts = HostClaims(lambda: self.store.list(key_for(k.lookup("DNS"), None))[0])
        self.pod_network = ipaddress.IPv4Network(pod_cidr)
        self.node_cidr_prefix = node_cidr_prefix
        self._node_lock = threading.Lock()  # one pod CIDR per node, even for concurrent creates
        self._live_namespaces: dict[str, int] = {}  # name -> the revision seen live (not terminating)
        self._recent_pods = RecentWrites(RECENT_PODS)  # new pods, for their binding

    # --- nodes ----------------------------------------------------------------------------
    def _assign_pod_cidr(self, node: Obj) -> None:
        """Give the node the /N it asks for if no other node has it, else the lowest free one."""
        spec = node.setdefault("spec", {})
        others, _ = self.store.list(key_for(k.lookup("Node"), None))
        taken = {o.get("spec", {}).get("podCIDR"): o["metadata"]["name"] for o in others
                 if o["metadata"]["name"] != node["metadata"]["name"]}
        wanted = spec.get("podCIDR")
        if wanted:
            try:
                net = ipaddress.IPv4Network(wanted)
            except ValueError:
                raise Invalid("Node", node["metadata"]["name"],
                              [("spec.podCIDR", f'Invalid value: "{wanted}": not a CIDR')]) from None
            if not net.subnet_of(self.pod_network):
                raise Invalid("Node", node["metadata"]["name"],
                              [("spec.podCIDR", f'Invalid value: "{wanted}": not inside the cluster pod network '
                                                f"{self.pod_network}")])
            if str(net) in taken:
                raise Invalid("Node", node["metadata"]["name"],
                              [("spec.podCIDR", f'Invalid value: "{wanted}": already assigned to node '
                                                f'"{taken[str(net)]}"')])
        else:
            subnets = self.pod_network.subnets(new_prefix=self.node_cidr_prefix)
            next(subnets)  # the first /24 holds no node, as in flannel's default layout
            free = next((str(n) for n in subnets if str(n) not in taken), None)
            if free is None:
                raise Invalid("Node", node["metadata"]["name"],
                              [("spec.podCIDR", f"no free pod CIDR left in {self.pod_network}")])
            spec["podCIDR"] = free
        spec["podCIDRs"] = [spec["podCIDR"]]

    def join_node(self, request: Obj) -> Obj:
        """Register (or re-register) a joining node: its name, labels, taints and wished pod CIDR."""
        if not isinstance(request, dict) or not request.get("name"):
            raise BadRequest("a join request needs the node's name")
        name = str(request["name"])
        info = k.lookup("Node")
        try:
            return self.get(info, None, name)
        except NotFound:
            pass
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(request.get("labels") or {})}},
                "spec": {key: v for key, v in (("taints", request.get("taints")), ("podCIDR", request.get("podCIDR")))
                         if v}}
        return self.create(info, None, body)

    # --- helpers --------------------------------------------------------------------------
    def _validate(self, info: k.KindInfo, obj: Obj) -> Obj:
        """Shape (unknown fields, types) then meaning; returns the model's wire form."""
        name = str((obj.get("metadata") or {}).get("name") or (obj.get("metadata") or {}).get("generateName") or "")
        try:
            model = info.model.model_validate(obj)
        except ValidationError as exc:
            raise Invalid(info.kind, name, pydantic_causes(exc)) from None
        causes = info.validate(model)
        if causes:
            raise Invalid(info.kind, name, causes)
        return model.to_dict()

    def _namespace_guard(self, info: k.KindInfo, namespace: str | None, fresh: bool = False) -> tuple[str, int] | None:
        """(key, revision) of the live namespace a new object goes into, for the create's transaction to
        check; the revision is remembered, so a create needs no read of its namespace while it is unchanged.
        NotFound when the namespace does not exist, Conflict while it is being terminated."""
        if not (info.namespaced and namespace):
            return None
        key = key_for(k.lookup("Namespace"), None, namespace)
        rev = None if fresh else self._live_namespaces.get(namespace)
        if rev is None:
            self._live_namespaces.pop(namespace, None)
            try:
                ns = self.store.get(key)
            except NotFound:
                raise NotFound(f'namespaces "{namespace}" not found') from None
            if (ns.get("metadata") or {}).get("deletionTimestamp"):
                raise Conflict(f'namespace "{namespace}" is being terminated') from None
            rev = int(ns["metadata"]["resourceVersion"])
            if len(self._live_namespaces) >= MAX_REMEMBERED_NAMESPACES:
                self._live_namespaces.clear()
            self._live_namespaces[namespace] = rev
        return key, rev

    def _store_create(self, info: k.KindInfo, obj: Obj, guard: tuple[str, int] | None) -> Obj:
        """Write a new object, in the same etcd transaction as the check that its namespace is unchanged."""
        meta = obj["metadata"]
        namespace = meta.get("namespace")
        key = key_for(info, namespace, meta["name"])
        for _ in range(NAMESPACE_GUARD_TRIES):
            try:
                created = self.store.create(key, obj, guard)
                break
            except Conflict:  # the namespace changed since we looked (labels, deletion): look again
                guard = self._namespace_guard(info, namespace, fresh=True)
        else:
            created = self.store.create(key, obj, guard)
        if info.kind == "Pod" and not obj["spec"].get("nodeName"):
            self._recent_pods.put(key, created)
        return created

    @staticmethod
    def _not_found(info: k.KindInfo, name: str) -> NotFound:
        return NotFound(f'{info.plural} "{name}" not found', {"name": name, "kind": info.plural})

    # --- reads ----------------------------------------------------------------------------
    def get(self, info: k.KindInfo, namespace: str | None, name: str) -> Obj:
        try:
            return self.store.get(key_for(info, namespace, name))
        except NotFound:
            raise self._not_found(info, name) from None

    def list(self, info: k.KindInfo, namespace: str | None, label_selector: str | None = None,
             field_selector: str | None = None) -> tuple[list[Obj], int]:
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector)
        items, revision = self.store.list(key_for(info, namespace))
        items = [o for o in items if labels_match(labels, o["metadata"].get("labels")) and fields(o)]
        return items, revision

    # --- writes ---------------------------------------------------------------------------
    def create(self, info: k.KindInfo, namespace: str | None, body: Obj, dry_run: bool = False) -> Obj:
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        body = dict(body)  # only the top level and metadata change before validation makes a new object
        body.setdefault("apiVersion", info.api_version)
        body.setdefault("kind", info.kind)
        if body["kind"] != info.kind or body["apiVersion"] != info.api_version:
            raise BadRequest(f"the body is a {body['apiVersion']}/{body['kind']}, "
                             f"but this URL serves {info.api_version}/{info.kind}")
        meta = dict(body.get("metadata") or {})
        body["metadata"] = meta
        if info.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise BadRequest(f'the namespace of the object ({meta["namespace"]}) does not match the '
                                 f'namespace of the request ({namespace})')
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(
                secrets.choice(_SUFFIX_ALPHABET) for _ in range(GENERATE_SUFFIX_LEN))
        obj = self._validate(info, body)
        guard = self._namespace_guard(info, obj["metadata"].get("namespace"))
        meta = obj["metadata"]
        for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(transient, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        meta["generation"] = 1
        if info.kind == "Namespace":
            obj["status"] = {"phase": "Active"}
        if info.kind in DEFAULTERS:
            DEFAULTERS[info.kind](obj)
        if info.kind == "Ingress":  # Kubernetes' DefaultIngressClass admission
            default_ingress_class(obj, lambda: self.store.list(key_for(k.lookup("IngressClass"), None))[0])
        if dry_run:
            if info.kind == "Service":
                self.services.allocate(obj)
            if info.kind == "DNS":
                self.dns_hosts.check(obj)
            return obj
        try:
            if info.kind == "DNS":
                with self.dns_hosts.lock:
                    self.dns_hosts.check(obj)
                    return self._store_create(info, obj, guard)
            if info.kind == "Service":
                with self.services.lock:
                    self.services.allocate(obj)
                    return self._store_create(info, obj, guard)
            if info.kind == "Node":
                with self._node_lock:
                    self._assign_pod_cidr(obj)
                    return self._store_create(info, obj, guard)
            return self._store_create(info, obj, guard)
        except AlreadyExists:
            raise AlreadyExists(f'{info.plural} "{meta["name"]}" already exists',
                                {"name": meta["name"], "kind": info.plural}) from None

    def update(self, info: k.KindInfo, namespace: str | None, name: str, body: Obj,
               subresource: str | None = None, dry_run: bool = False) -> Obj:
        """PUT: replace spec/metadata (or only status for the status subresource)."""
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        current = self.get(info, namespace, name)
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise BadRequest(f'the name of the object ({meta.get("name")}) does not match the name in the URL ({name})')
        rv = meta.get("resourceVersion")
        if rv and str(rv) != current["metadata"]["resourceVersion"]:
            raise self._conflict(info, name)
        if subresource == "status":
            new = {**current, "status": body.get("status")}
        else:
            new = copy.deepcopy(body)
            new.setdefault("apiVersion", info.api_version)
            new.setdefault("kind", info.kind)
            new["metadata"] = {**meta, "name": name}
            if info.has_status:
                new["status"] = current.get("status")
        return self._write(info, current, new, expected=int(rv) if rv else None, dry_run=dry_run)

    def patch(self, info: k.KindInfo, namespace: str | None, name: str, patch: Obj,
              subresource: str | None = None) -> Obj:
        current = self.get(info, namespace, name)
        if not isinstance(patch, dict):
            raise BadRequest("a merge patch must be a JSON object")
        if subresource == "status":
            patch = {"status": patch.get("status")} if "status" in patch else {}
        new = merge_patch(current, patch)
        rv = (patch.get("metadata") or {}).get("resourceVersion")
        if rv and str(rv) != current["metadata"]["resourceVersion"]:
            raise self._conflict(info, name)
        if info.has_status and subresource != "status":
            new["status"] = current.get("status")
        return self._write(info, current, new, expected=int(current["metadata"]["resourceVersion"]))

    def _conflict(self, info: k.KindInfo, name: str) -> Conflict:
        return Conflict(f'Operation cannot be fulfilled on {info.plural} "{name}": the object has been modified; '
                        "please apply your changes to the latest version and try again",
                        {"name": name, "kind": info.plural})

    def _write(self, info: k.KindInfo, current: Obj, new: Obj, expected: int | None, dry_run: bool = False) -> Obj:
        cur_meta = current["metadata"]
        new_meta = new.setdefault("metadata", {})
        for fixed in ("uid", "creationTimestamp", "namespace", "deletionTimestamp", "deletionGracePeriodSeconds",
                      "generation"):
            if fixed in cur_meta:
                new_meta[fixed] = cur_meta[fixed]
            else:
                new_meta.pop(fixed, None)
        new_meta["name"] = cur_meta["name"]
        if new.get("status") is None:
            new.pop("status", None)
        obj = self._validate(info, new)
        if info.kind == "Pod":
            self._check_pod_update(current, obj)
        if info.kind == "Node":
            old_cidr = (current.get("spec") or {}).get("podCIDR")
            new_cidr = (obj.get("spec") or {}).get("podCIDR")
            if old_cidr and new_cidr != old_cidr:
                raise Invalid("Node", cur_meta["name"], [("spec.podCIDR", f'Forbidden: the pod CIDR is "{old_cidr}" '
                                                                          "and cannot change")])
        if obj.get("spec") != current.get("spec"):
            obj["metadata"]["generation"] = int(cur_meta.get("generation") or 1) + 1
        if info.kind in DEFAULTERS and "spec" in obj:
            DEFAULTERS[info.kind](obj)
        if dry_run:
            if info.kind == "DNS":
                self.dns_hosts.check(obj)
            return obj
        key = key_for(info, cur_meta.get("namespace"), cur_meta["name"])
        if info.kind == "Pod":
            self._recent_pods.forget(key)
        try:
            if info.kind == "DNS":
                with self.dns_hosts.lock:
                    self.dns_hosts.check(obj)
                    return self.store.update(key, obj, expected or int(cur_meta["resourceVersion"]))
            if info.kind == "Service":
                with self.services.lock:
                    self.services.allocate(obj, current)
                    return self.store.update(key, obj, expected or int(cur_meta["resourceVersion"]))
            return self.store.update(key, obj, expected or int(cur_meta["resourceVersion"]))
        except Conflict:
            raise self._conflict(info, cur_meta["name"]) from None
        except NotFound:
            raise self._not_found(info, cur_meta["name"]) from None

    @staticmethod
    def _check_pod_update(current: Obj, new: Obj) -> None:
        old_spec, new_spec = dict(current["spec"]), dict(new["spec"])
        if old_spec.get("nodeName") and new_spec.get("nodeName") != old_spec.get("nodeName"):
            raise Invalid("Pod", current["metadata"]["name"],
                          [("spec.nodeName", "Forbidden: a bound pod cannot move to another node")])

    def delete(self, info: k.KindInfo, namespace: str | None, name: str,
               grace_period_seconds: int | None = None) -> Obj:
        current = self.get(info, namespace, name)
        if info.kind == "Pod":
            return self._delete_pod(info, current, grace_period_seconds)
        if info.kind == "Namespace":
            if name in SYSTEM_NAMESPACES:
                raise BadRequest(f'namespace "{name}" is a system namespace and cannot be deleted')
            self._delete_namespace_contents(name)
        return self._delete_now(info, current)

    def _delete_now(self, info: k.KindInfo, current: Obj) -> Obj:
        meta = current["metadata"]
        key = key_for(info, meta.get("namespace"), meta["name"])
        if info.kind == "Pod":
            self._recent_pods.forget(key)
        try:
            return self.store.delete(key)
        except NotFound:
            raise self._not_found(info, meta["name"]) from None

    def _delete_pod(self, info: k.KindInfo, pod: Obj, grace: int | None) -> Obj:
        """A pod bound to a node is deleted gracefully: mark it, the kubelet stops it and deletes it."""
        meta = pod["metadata"]
        if grace is None:
            grace = int(pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_S))
        running = bool(pod["spec"].get("nodeName")) and (pod.get("status") or {}).get("phase") not in (
            "Succeeded", "Failed")
        if grace == 0 or not running:
            return self._delete_now(info, pod)
        if meta.get("deletionTimestamp") and int(meta.get("deletionGracePeriodSeconds") or 0) <= grace:
            return pod
        new = copy.deepcopy(pod)
        new["metadata"]["deletionTimestamp"] = now_iso()
        new["metadata"]["deletionGracePeriodSeconds"] = grace
        key = key_for(info, meta["namespace"], meta["name"])
        try:
            return self.store.update(key, new, int(meta["resourceVersion"]))
        except Conflict:
            return self._delete_pod(info, self.get(info, meta["namespace"], meta["name"]), grace)

    def _delete_namespace_contents(self, namespace: str) -> None:
        for info in k.KINDS:
            if not info.namespaced:
                continue
            items, _ = self.store.list(key_for(info, namespace))
            for item in items:
                try:
                    self.store.delete(key_for(info, namespace, item["metadata"]["name"]))
                except NotFound:
                    continue

    # --- subresources ---------------------------------------------------------------------
    def bind(self, namespace: str, name: str, binding: Obj) -> Obj:
        """Assign the pod to a node: one compare-and-swap on the pod as this server last wrote it (a new
        pod), or as read from etcd when that is unknown or turns out stale."""
        info = k.lookup("Pod")
        target = (binding or {}).get("target") or {}
        node = target.get("name")
        if not node:
            raise Invalid("Binding", name, [("target.name", "Required value")])
        key = key_for(info, namespace, name)
        pod = self._recent_pods.take(key)
        remembered = pod is not None
        while True:
            if pod is None:
                pod = self.get(info, namespace, name)
            if pod["spec"].get("nodeName"):
                raise Conflict(f'pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"')
            pod["spec"]["nodeName"] = node  # ours to change: decoded for this call alone
            conds = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": now_iso()})
            pod.setdefault("status", {})["conditions"] = conds
            try:
                self.store.update(key, pod, int(pod["metadata"]["resourceVersion"]))
            except (Conflict, NotFound):
                if not remembered:
                    raise self._conflict(info, name) from None
                pod, remembered = None, False  # someone wrote it since we did: read what is there now
                continue
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def ensure_system_namespaces(self) -> None:
        info = k.lookup("Namespace")
        for ns in SYSTEM_NAMESPACES:
            try:
                self.create(info, None, {"metadata": {"name": ns}})
                log.info("created namespace", extra={"namespace": ns})
            except AlreadyExists:
                continue
