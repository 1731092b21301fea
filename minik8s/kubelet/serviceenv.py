"""The environment every container gets for the API: the `default/kubernetes` Service as docker-link style
variables (KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT, KUBERNETES_PORT_443_TCP…), which is what
in-cluster clients (`config.load_incluster_config()`) read. Kubernetes adds these for the master Service
to every pod, whatever its enableServiceLinks says."""

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


class MasterServiceEnv:
    """The variables for `default/kubernetes`, read from the API at most once per `ttl_s`; the last
    answer is kept while the API cannot be reached."""

    def __init__(self, client: Any, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.client, self.ttl_s, self.clock = client, ttl_s, clock
        self._env: dict[str, str] = {}
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def __call__(self, pod: Pod) -> dict[str, str]:
        with self._lock:
            now = self.clock()
            if self._read_at is None or now - self._read_at >= self.ttl_s:
                try:
                    svc = self.client.get("Service", MASTER_NAME, MASTER_NAMESPACE)
                    self._env = service_env_vars(MASTER_NAME, svc.to_dict().get("spec") or {})
                    self._read_at = now
                except MiniK8sError as exc:
                    log.warning("cannot read the kubernetes service", extra={"error": str(exc)})
            return dict(self._env)
