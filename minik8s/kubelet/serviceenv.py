"""The Services every container learns from its environment, as docker-link style variables
(`FOO_SERVICE_HOST`, `FOO_SERVICE_PORT`, `FOO_PORT_80_TCP`…): those of its namespace unless the pod says
`enableServiceLinks: false`, and always the `default/kubernetes` Service's (KUBERNETES_SERVICE_HOST…),
which is what in-cluster clients (`config.load_incluster_config()`) read."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from minik8s.api.types import Pod
from minik8s.errors import MiniK8sError

log = logging.getLogger(__name__)

MASTER_NAMESPACE, MASTER_NAME = "default", "kubernetes"
#: How long a namespace's Service list is reused: a Service created a moment before a container starts
#: should reach its env, as with Kubernetes' informer, without a list per container start in a burst.
DEFAULT_TTL_S = 2.0


def service_env_vars(name: str, spec: dict[str, Any]) -> dict[str, str]:
    """Kubernetes' FromServices for one Service: `{NAME}_SERVICE_HOST`, `_PORT`, `_PORT_<NAME>`, and the
    docker-link `{NAME}_PORT*` variables (the first port is the one `_SERVICE_PORT` and `_PORT` name)."""
    ip = spec.get("clusterIP")
    ports = spec.get("ports") or []
    if not ip or ip == "None" or not ports:
        return {}
    prefix = name.upper().replace("-", "_")
    first = ports[0]
    env = {f"{prefix}_SERVICE_HOST": ip, f"{prefix}_SERVICE_PORT": str(first["port"]),
           f"{prefix}_PORT": f"{str(first.get('protocol') or 'TCP').lower()}://{ip}:{first['port']}"}
    for port in ports:
        proto = str(port.get("protocol") or "TCP")
        if port.get("name"):
            env[f"{prefix}_SERVICE_PORT_{str(port['name']).upper().replace('-', '_')}"] = str(port["port"])
        link = f"{prefix}_PORT_{port['port']}_{proto.upper()}"
        env[link] = f"{proto.lower()}://{ip}:{port['port']}"
        env[f"{link}_PROTO"] = proto.lower()
        env[f"{link}_PORT"] = str(port["port"])
        env[f"{link}_ADDR"] = ip
    return env


class ServiceEnv:
    """Kubernetes' service links for one pod: the `default/kubernetes` variables always, and unless the pod
    says `enableServiceLinks: false`, those of every Service of its namespace that has a ClusterIP (a
    namespace's own `kubernetes` Service wins over the master's). Each namespace's Services are listed at
    most once per `ttl_s`; the last answer is kept while the API cannot be reached."""

    def __init__(self, client: Any, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.client, self.ttl_s, self.clock = client, ttl_s, clock
        self._services: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}  # namespace -> (read at, specs)
        self._lock = threading.Lock()

    def _namespace(self, namespace: str) -> dict[str, dict[str, Any]]:
        """Service name -> spec (wire form) in `namespace`."""
        with self._lock:
            now = self.clock()
            cached = self._services.get(namespace)
            if cached is not None and now - cached[0] < self.ttl_s:
                return cached[1]
            try:
                found = {svc.metadata.name: svc.to_dict().get("spec") or {}
                         for svc in self.client.list("Service", namespace=namespace).items}
            except MiniK8sError as exc:
                log.warning("cannot list services", extra={"namespace": namespace, "error": str(exc)})
                return cached[1] if cached is not None else {}
            self._services[namespace] = (now, found)
            return found

    def __call__(self, pod: Pod) -> dict[str, str]:
        services: dict[str, dict[str, Any]] = {}
        master = self._namespace(MASTER_NAMESPACE).get(MASTER_NAME)
        if master is not None:
            services[MASTER_NAME] = master
        if pod.spec.enableServiceLinks is not False:
            services.update(self._namespace(pod.metadata.namespace or "default"))
        env: dict[str, str] = {}
        for name in sorted(services):
            env.update(service_env_vars(name, services[name]))
        return env
