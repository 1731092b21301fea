"""The one table of kinds: adding a kind is one entry plus its model and validation.

Discovery, REST routes, watch, the SDK and `get` tables all follow from this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from minik8s.api import apps, batch, rbac
from minik8s.api import autoscaling as hpa
from minik8s.api import config as cfg
from minik8s.api import daemonsets as ds
from minik8s.api import dns as dnsapi
from minik8s.api import networking as net
from minik8s.api import networkpolicy as netpol
from minik8s.api import policy as pdb
from minik8s.api import printers as p
from minik8s.api import replication as rc
from minik8s.api import scheduling as sched
from minik8s.api import services as svc
from minik8s.api import types as t
from minik8s.api import validation as v
from minik8s.api.strategy import Strategy, StrategyFactory
from minik8s.errors import NotFound
from minik8s.registry.batch import JobStrategy
from minik8s.registry.config import ConfigMapStrategy, SecretStrategy
from minik8s.registry.daemonsets import DaemonSetStrategy
from minik8s.registry.dns import DNSStrategy
from minik8s.registry.namespaces import NamespaceStrategy
from minik8s.registry.networking import IngressClassStrategy, IngressStrategy
from minik8s.registry.networkpolicy import NetworkPolicyStrategy
from minik8s.registry.nodes import NodeStrategy
from minik8s.registry.pods import PodStrategy
from minik8s.registry.rbac import BindingStrategy
from minik8s.registry.scheduling import PodDisruptionBudgetStrategy, PriorityClassStrategy
from minik8s.registry.services import ServiceStrategy


@dataclass(frozen=True)
class KindInfo:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    model: type[t.TypedObject]
    short_names: tuple[str, ...] = ()
    columns: list[p.Column] = field(default_factory=lambda: p.DEFAULT_COLUMNS)
    validate: Callable[[Any], v.Causes] = v.validate_generic
    subresources: tuple[str, ...] = ()
    has_status: bool = False
    strategy: StrategyFactory = Strategy  # the kind's rules beyond storage (minik8s.api.strategy)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def resource_key(self) -> str:
        """The etcd key segment: `pods`, `deployments.apps`-style plurals stay plain."""
        return self.plural

    def key(self, namespace: str | None, name: str | None = None) -> str:
        """The object's etcd key (`/registry/{plural}/{namespace}/{name}`), or its collection's prefix."""
        parts = ["/registry", self.resource_key]
        if self.namespaced and namespace:
            parts.append(namespace)
        prefix = "/".join(parts) + "/"
        return prefix + name if name else prefix

    def url(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


KINDS: list[KindInfo] = [
    KindInfo("", "v1", "Pod", "pods", True, t.Pod, ("po",), p.POD_COLUMNS, v.validate_pod,
             ("status", "log", "exec", "binding", "portforward", "eviction"), True, PodStrategy),
    KindInfo("", "v1", "Node", "nodes", False, t.Node, ("no",), p.NODE_COLUMNS, v.validate_node, ("status",), True,
             NodeStrategy),
    KindInfo("", "v1", "Namespace", "namespaces", False, t.Namespace, ("ns",), p.NAMESPACE_COLUMNS,
             v.validate_namespace, ("status",), True, NamespaceStrategy),
    KindInfo("", "v1", "Event", "events", True, t.Event, ("ev",), p.EVENT_COLUMNS),
    KindInfo("coordination.k8s.io", "v1", "Lease", "leases", True, t.Lease, (), p.LEASE_COLUMNS),
    KindInfo("", "v1", "Service", "services", True, svc.Service, ("svc",), svc.SERVICE_COLUMNS,
             svc.validate_service, ("status",), True, ServiceStrategy),
    KindInfo("", "v1", "Endpoints", "endpoints", True, svc.Endpoints, ("ep",), svc.ENDPOINTS_COLUMNS,
             svc.validate_endpoints),
    KindInfo("apps", "v1", "ReplicaSet", "replicasets", True, apps.ReplicaSet, ("rs",), apps.REPLICASET_COLUMNS,
             apps.validate_replicaset, ("status", "scale"), True),
    KindInfo("apps", "v1", "Deployment", "deployments", True, apps.Deployment, ("deploy",), apps.DEPLOYMENT_COLUMNS,
             apps.validate_deployment, ("status", "scale"), True),
    KindInfo("apps", "v1", "DaemonSet", "daemonsets", True, ds.DaemonSet, ("ds",), ds.DAEMONSET_COLUMNS,
             ds.validate_daemonset, ("status",), True, DaemonSetStrategy),
    KindInfo("", "v1", "ReplicationController", "replicationcontrollers", True, rc.ReplicationController, ("rc",),
             rc.REPLICATIONCONTROLLER_COLUMNS, rc.validate_replicationcontroller, ("status", "scale"), True),
    KindInfo("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True,
             hpa.HorizontalPodAutoscaler, ("hpa",), hpa.HPA_COLUMNS, hpa.validate_hpa, ("status",), True),
    KindInfo(dnsapi.GROUP, dnsapi.VERSION, "DNS", "dnses", True, dnsapi.DNS, ("dns",), dnsapi.DNS_COLUMNS,
             dnsapi.validate_dns, ("status",), True, DNSStrategy),
    KindInfo("", "v1", "ConfigMap", "configmaps", True, cfg.ConfigMap, ("cm",), cfg.CONFIGMAP_COLUMNS,
             cfg.validate_configmap, strategy=ConfigMapStrategy),
    KindInfo("", "v1", "Secret", "secrets", True, cfg.Secret, (), cfg.SECRET_COLUMNS, cfg.validate_secret,
             strategy=SecretStrategy),
    KindInfo("", "v1", "ServiceAccount", "serviceaccounts", True, cfg.ServiceAccount, ("sa",),
             cfg.SERVICEACCOUNT_COLUMNS, cfg.validate_service_account, ("token",)),
    KindInfo(batch.GROUP, batch.VERSION, "Job", "jobs", True, batch.Job, (), batch.JOB_COLUMNS, batch.validate_job,
             ("status",), True, JobStrategy),
    KindInfo(batch.GROUP, batch.VERSION, "CronJob", "cronjobs", True, batch.CronJob, ("cj",), batch.CRONJOB_COLUMNS,
             batch.validate_cronjob, ("status",), True),
    KindInfo(net.GROUP, net.VERSION, "Ingress", "ingresses", True, net.Ingress, ("ing",), net.INGRESS_COLUMNS,
             net.validate_ingress, ("status",), True, IngressStrategy),
    KindInfo(net.GROUP, net.VERSION, "IngressClass", "ingressclasses", False, net.IngressClass, (),
             net.INGRESS_CLASS_COLUMNS, net.validate_ingress_class, strategy=IngressClassStrategy),
    KindInfo(netpol.GROUP, netpol.VERSION, "NetworkPolicy", "networkpolicies", True, netpol.NetworkPolicy,
             ("netpol",), netpol.NETWORK_POLICY_COLUMNS, netpol.validate_network_policy,
             strategy=NetworkPolicyStrategy),
    KindInfo(sched.GROUP, sched.VERSION, "PriorityClass", "priorityclasses", False, sched.PriorityClass, ("pc",),
             sched.PRIORITY_CLASS_COLUMNS, sched.validate_priority_class, strategy=PriorityClassStrategy),
    KindInfo(pdb.GROUP, pdb.VERSION, "PodDisruptionBudget", "poddisruptionbudgets", True, pdb.PodDisruptionBudget,
             ("pdb",), pdb.PDB_COLUMNS, pdb.validate_pdb, ("status",), True, PodDisruptionBudgetStrategy),
    KindInfo(rbac.GROUP, rbac.VERSION, "Role", "roles", True, rbac.Role, (), rbac.ROLE_COLUMNS, rbac.validate_role),
    KindInfo(rbac.GROUP, rbac.VERSION, "ClusterRole", "clusterroles", False, rbac.ClusterRole, (),
             rbac.ROLE_COLUMNS, rbac.validate_cluster_role),
    KindInfo(rbac.GROUP, rbac.VERSION, "RoleBinding", "rolebindings", True, rbac.RoleBinding, (),
             rbac.BINDING_COLUMNS, rbac.validate_role_binding, strategy=BindingStrategy),
    KindInfo(rbac.GROUP, rbac.VERSION, "ClusterRoleBinding", "clusterrolebindings", False, rbac.ClusterRoleBinding,
             (), rbac.BINDING_COLUMNS, rbac.validate_cluster_role_binding, strategy=BindingStrategy),
]

_INDEX: dict[str, KindInfo] = {}
for _k in KINDS:
    for _alias in (_k.kind.lower(), _k.plural, _k.singular, *_k.short_names,
                   f"{_k.plural}.{_k.group}" if _k.group else _k.plural):
        _INDEX[_alias.lower()] = _k


def lookup(name: str) -> KindInfo:
    """A kind by any name kubectl accepts: `Pod`, `pods`, `pod`, `po`, `leases.coordination.k8s.io`."""
    info = _INDEX.get(name.lower())
    if info is None:
        raise NotFound(f'the server doesn\'t have a resource type "{name}"')
    return info


def by_plural(group: str, version: str, plural: str) -> KindInfo:
    for k in KINDS:
        if k.group == group and k.version == version and k.plural == plural:
            return k
    raise NotFound(f"the server could not find the requested resource ({group or 'core'}/{version} {plural})")


def by_kind(api_version: str | None, kind: str | None) -> KindInfo:
    """The kind a manifest names; a clear NotFound for anything we do not serve."""
    for k in KINDS:
        if k.kind == kind and (api_version is None or k.api_version == api_version):
            return k
    raise NotFound(f'no kind "{kind}" is registered for version "{api_version}"')
