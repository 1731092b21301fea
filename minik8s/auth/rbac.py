"""The RBAC authorizer: Roles and ClusterRoles say what may be done, bindings say by whom.

Matching follows Kubernetes' `plugin/pkg/auth/authorizer/rbac` exactly, so a policy written for
Kubernetes means the same here: `*` in verbs, apiGroups and resources; `resource/subresource` and
`*/subresource`; resourceNames (empty: any name); nonResourceURLs with a trailing `*` as a prefix.
A RoleBinding grants its role's rules in its own namespace only (a ClusterRole it names included);
a ClusterRoleBinding grants a ClusterRole everywhere, and is the only way to grant non-resource URLs.

The authorizer reads an in-memory index (`RbacIndex`) that `RbacCache` keeps current from etcd by
list + watch, like an informer: no store read per request. Decisions are memoized per user and
request until the next policy change, so the cost of a request that repeats is one dict lookup.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from minik8s.api import rbac as api
from minik8s.auth.authz import Attributes, Decision
from minik8s.auth.user import SERVICE_ACCOUNT_PREFIX, UserInfo

log = logging.getLogger("minik8s.auth.rbac")

Obj = dict[str, Any]
ALL = "*"
#: How many memoized decisions to keep before starting over (one entry per distinct request shape).
MEMO_MAX = 20000
#: After a broken watch, wait this long before listing again (etcd may be restarting).
RELIST_BACKOFF_S = 1.0

KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
PREFIXES = {"Role": "/registry/roles/", "ClusterRole": "/registry/clusterroles/",
            "RoleBinding": "/registry/rolebindings/", "ClusterRoleBinding": "/registry/clusterrolebindings/"}


@dataclass(frozen=True)
class Rule:
    """A PolicyRule, its lists as frozensets (membership tests on every request)."""

    verbs: frozenset[str]
    api_groups: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()
    resource_names: frozenset[str] = frozenset()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def of(cls, rule: Obj) -> Rule:
        return cls(frozenset(rule.get("verbs") or ()), frozenset(rule.get("apiGroups") or ()),
                   frozenset(rule.get("resources") or ()), frozenset(rule.get("resourceNames") or ()),
                   tuple(rule.get("nonResourceURLs") or ()))

    def to_dict(self) -> Obj:
        out: Obj = {"verbs": sorted(self.verbs)}
        if self.non_resource_urls:
            out["nonResourceURLs"] = list(self.non_resource_urls)
            return out
        out["apiGroups"] = sorted(self.api_groups)
        out["resources"] = sorted(self.resources)
        if self.resource_names:
            out["resourceNames"] = sorted(self.resource_names)
        return out

    def allows(self, a: Attributes) -> bool:
        if ALL not in self.verbs and a.verb not in self.verbs:
            return False
        if not a.resource_request:
            return any(url == ALL or url == a.path or (url.endswith(ALL) and a.path.startswith(url[:-1]))
                       for url in self.non_resource_urls)
        if ALL not in self.api_groups and a.api_group not in self.api_groups:
            return False
        if not self._resource_matches(a.resource, a.subresource):
            return False
        return not self.resource_names or a.name in self.resource_names

    def _resource_matches(self, resource: str, subresource: str) -> bool:
        if ALL in self.resources:
            return True
        if not subresource:
            return resource in self.resources
        return f"{resource}/{subresource}" in self.resources or f"*/{subresource}" in self.resources


def rules_of(obj: Obj) -> tuple[Rule, ...]:
    return tuple(Rule.of(r) for r in obj.get("rules") or () if isinstance(r, dict))


@dataclass(frozen=True)
class Binding:
    name: str
    namespace: str  # "" for a ClusterRoleBinding
    role_kind: str
    role_name: str
    subjects: tuple[tuple[str, str, str], ...]  # (kind, name, namespace)

    @classmethod
    def of(cls, obj: Obj) -> Binding:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or ""
        ref = obj.get("roleRef") or {}
        subjects = tuple((s.get("kind", ""), s.get("name", ""), s.get("namespace") or ns)
                         for s in obj.get("subjects") or () if isinstance(s, dict))
        return cls(meta.get("name", ""), ns, ref.get("kind", ""), ref.get("name", ""), subjects)

    def applies_to(self, user: UserInfo) -> bool:
        for kind, name, ns in self.subjects:
            if kind == api.USER and name == user.name:
                return True
            if kind == api.GROUP_KIND and name in user.groups:
                return True
            if kind == api.SERVICE_ACCOUNT and user.name == f"{SERVICE_ACCOUNT_PREFIX}{ns}:{name}":
                return True
        return False

    def describe(self) -> str:
        where = f'RoleBinding "{self.name}" of {self.role_kind} "{self.role_name}" to ' if self.namespace \
            else f'ClusterRoleBinding "{self.name}" of ClusterRole "{self.role_name}" to '
        return where + ", ".join(f"{k} {n}" for k, n, _ in self.subjects)


class RbacIndex:
    """The four RBAC kinds in memory, by the keys the authorizer looks them up with."""

    def __init__(self) -> None:
        self.roles: dict[tuple[str, str], tuple[Rule, ...]] = {}
        self.cluster_roles: dict[str, tuple[Rule, ...]] = {}
        self.role_bindings: dict[str, dict[str, Binding]] = {}  # namespace -> name -> binding
        self.cluster_role_bindings: dict[str, Binding] = {}

    def apply(self, kind: str, obj: Obj, deleted: bool = False) -> None:
        meta = obj.get("metadata") or {}
        name, ns = meta.get("name", ""), meta.get("namespace") or ""
        if kind == "Role":
            self._put(self.roles, (ns, name), None if deleted else rules_of(obj))
        elif kind == "ClusterRole":
            self._put(self.cluster_roles, name, None if deleted else rules_of(obj))
        elif kind == "RoleBinding":
            self._put(self.role_bindings.setdefault(ns, {}), name, None if deleted else Binding.of(obj))
        elif kind == "ClusterRoleBinding":
            self._put(self.cluster_role_bindings, name, None if deleted else Binding.of(obj))

    @staticmethod
    def _put(table: dict[Any, Any], key: Any, value: Any) -> None:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value

    def _role_rules(self, binding: Binding) -> tuple[Rule, ...]:
        if binding.role_kind == "ClusterRole":
            return self.cluster_roles.get(binding.role_name, ())
        return self.roles.get((binding.namespace, binding.role_name), ())

    def grants(self, user: UserInfo, namespace: str) -> Iterable[tuple[Binding, tuple[Rule, ...]]]:
        """Every binding that applies to the user where a request in `namespace` is checked, with its rules."""
        for binding in self.cluster_role_bindings.values():
            if binding.applies_to(user):
                yield binding, self._role_rules(binding)
        if namespace:
            for binding in self.role_bindings.get(namespace, {}).values():
                if binding.applies_to(user):
                    yield binding, self._role_rules(binding)

    def allowing(self, a: Attributes) -> Binding | None:
        for binding, rules in self.grants(a.user, a.namespace):
            if any(rule.allows(a) for rule in rules):
                return binding
        return None


def _memo_key(a: Attributes) -> tuple[Any, ...]:
    return (a.user.name, a.user.groups, a.verb, a.resource_request, a.api_group, a.resource, a.subresource,
            a.namespace, a.name, "" if a.resource_request else a.path)


class RBACAuthorizer:
    """Allows what some binding of the user grants; otherwise no opinion (the union tries the next)."""

    def __init__(self, index: RbacIndex | None = None) -> None:
        self.index = index or RbacIndex()
        self.lock = threading.Lock()  # the index changes on etcd's watch thread
        self._memo: dict[tuple[Any, ...], Decision] = {}

    def apply(self, kind: str, obj: Obj, deleted: bool = False) -> None:
        with self.lock:
            self.index.apply(kind, obj, deleted)
            self._memo = {}

    def replace(self, index: RbacIndex) -> None:
        with self.lock:
            self.index = index
            self._memo = {}

    def authorize(self, a: Attributes) -> Decision:
        key = _memo_key(a)
        memo = self._memo
        decision = memo.get(key)
        if decision is not None:
            return decision
        with self.lock:
            binding = self.index.allowing(a)
            decision = Decision(True, f"RBAC: allowed by {binding.describe()}") if binding else Decision(False)
            if len(self._memo) >= MEMO_MAX:
                self._memo = {}
            self._memo[key] = decision
        return decision

    def rules_for(self, user: UserInfo, namespace: str) -> list[Rule]:
        """What the user may do in `namespace` (SelfSubjectRulesReview), in binding order, deduplicated."""
        with self.lock:
            found = [rule for _binding, rules in self.index.grants(user, namespace) for rule in rules]
        return list(dict.fromkeys(found))


class RbacCache:
    """Keeps an RBACAuthorizer's index current from the store: list, then watch from that revision;
    a watch that breaks (compaction, etcd away) relists in the background, like an informer."""

    def __init__(self, store: Any, authorizer: RBACAuthorizer) -> None:
        self.store, self.authorizer = store, authorizer
        self._cancels: dict[str, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.synced = False

    def start(self) -> None:
        """List all four kinds (so the first request is decided on the full policy), then watch."""
        index = RbacIndex()
        revisions = {}
        for kind in KINDS:
            items, revision = self.store.list(PREFIXES[kind])
            for obj in items:
                index.apply(kind, obj)
            revisions[kind] = revision
        self.authorizer.replace(index)
        for kind in KINDS:
            self._watch(kind, revisions[kind] + 1)
        self.synced = True

    def _watch(self, kind: str, start: int) -> None:
        def on_event(ev: Any) -> None:
            if ev.type == "ERROR":
                threading.Thread(target=self._relist, args=(kind,), name=f"rbac-relist-{kind}", daemon=True).start()
                return
            obj = ev.object if ev.object is not None else ev.prev
            if obj is not None:
                self.authorizer.apply(kind, obj, deleted=ev.type == "DELETED")

        cancel = self.store.watch(PREFIXES[kind], start, on_event)
        with self._lock:
            self._cancels[kind] = cancel

    def _relist(self, kind: str) -> None:
        with self._lock:
            old = self._cancels.pop(kind, None)
        if old:
            old()
        while not self._stopped.is_set():
            try:
                items, revision = self.store.list(PREFIXES[kind])
                with self.authorizer.lock:
                    index = self.authorizer.index
                    for stale in _objects_of(index, kind):
                        index.apply(kind, stale, deleted=True)
                    for obj in items:
                        index.apply(kind, obj)
                    self.authorizer._memo = {}
                self._watch(kind, revision + 1)
                log.info("RBAC cache relisted", extra={"kind": kind, "revision": revision})
                return
            except Exception as exc:  # etcd away: keep the last policy and try again
                log.warning("RBAC cache relist failed: %s", exc, extra={"kind": kind})
                self._stopped.wait(RELIST_BACKOFF_S)

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            cancels, self._cancels = list(self._cancels.values()), {}
        for cancel in cancels:
            cancel()


def _objects_of(index: RbacIndex, kind: str) -> list[Obj]:
    """Stand-in objects naming every entry of one kind, so a relist can drop them before refilling."""
    if kind == "Role":
        return [{"metadata": {"namespace": ns, "name": n}} for ns, n in list(index.roles)]
    if kind == "ClusterRole":
        return [{"metadata": {"name": n}} for n in list(index.cluster_roles)]
    if kind == "RoleBinding":
        return [{"metadata": {"namespace": ns, "name": n}} for ns, by in index.role_bindings.items() for n in list(by)]
    return [{"metadata": {"name": n}} for n in list(index.cluster_role_bindings)]
