"""The ConfigMaps and Secrets a pod consumes: where the kubelet reads them, and what they turn into.

The kubelet is a client of the API: :class:`ApiConfigObjects` keeps one informer on ConfigMaps
and one on Secrets (list + watch), answers from that cache, and asks the API directly on a
miss (an object created a moment ago may not have reached the watch yet). Its change
handler tells the kubelet which objects changed, so pods that use them are synced at once
(new values in their volumes); the kubelet's periodic resync covers a missed event.

A required object or key that is missing raises :class:`ConfigError` with Kubernetes'
message; the runtime then keeps the container waiting and tries again later.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

from minik8s.api.config import ConfigMap, Secret, decode_b64
from minik8s.api.types import ConfigMapVolumeSource, Container, KeyToPath, Pod, SecretVolumeSource
from minik8s.errors import NotFound
from minik8s.kubelet.atomic_writer import FileProjection

log = logging.getLogger(__name__)

CONFIGMAP = "ConfigMap"
SECRET = "Secret"
#: Kubernetes' IsEnvVarName: what an envFrom key (with its prefix) must look like to become a variable.
ENV_VAR_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
DEFAULT_MODE = 0o644

Ref = tuple[str, str, str]  # (kind, namespace, name)


class ConfigError(ValueError):
    """A ConfigMap, Secret or key the pod needs does not exist (yet); `volume` names the volume, if any.

    Not a SpecError: the pod is fine, the cluster is not ready for it, and it starts by itself later."""

    def __init__(self, message: str, volume: str | None = None) -> None:
        super().__init__(message)
        self.volume = volume


class ConfigObjects(Protocol):
    """Where a pod's ConfigMaps and Secrets come from; None when the object does not exist."""

    def configmap(self, namespace: str, name: str) -> ConfigMap | None: ...

    def secret(self, namespace: str, name: str) -> Secret | None: ...


class NoConfigObjects:
    """For a runtime without an API: every reference is missing."""

    def configmap(self, namespace: str, name: str) -> ConfigMap | None:
        return None

    def secret(self, namespace: str, name: str) -> Secret | None:
        return None


class ApiConfigObjects:
    """ConfigMaps and Secrets from the API: informer cache first, a GET on a miss."""

    def __init__(self, client: Any, resync_seconds: float, on_change: Callable[[Ref], None] | None = None) -> None:
        from minik8s.client import Informer

        self.client = client
        self.informers = {kind: Informer(client, kind, resync_seconds=resync_seconds) for kind in (CONFIGMAP, SECRET)}
        if on_change is not None:
            for kind, inf in self.informers.items():
                changed = self._changed(kind, on_change)
                inf.add_handler(on_add=changed, on_update=self._updated(changed), on_delete=changed)

    @staticmethod
    def _changed(kind: str, on_change: Callable[[Ref], None]) -> Callable[[Any], None]:
        return lambda obj: on_change((kind, obj.metadata.namespace or "default", obj.metadata.name or ""))

    @staticmethod
    def _updated(changed: Callable[[Any], None]) -> Callable[[Any, Any], None]:
        return lambda _old, new: changed(new)

    def start(self) -> None:
        for inf in self.informers.values():
            inf.start()

    def stop(self) -> None:
        for inf in self.informers.values():
            inf.stop()

    def _lookup(self, kind: str, namespace: str, name: str) -> Any | None:
        cached = self.informers[kind].get(f"{namespace}/{name}")
        if cached is not None:
            return cached
        try:
            return self.client.get(kind, name, namespace)
        except NotFound:
            return None

    def configmap(self, namespace: str, name: str) -> ConfigMap | None:
        found: ConfigMap | None = self._lookup(CONFIGMAP, namespace, name)
        return found

    def secret(self, namespace: str, name: str) -> Secret | None:
        found: Secret | None = self._lookup(SECRET, namespace, name)
        return found


# --- what a pod references ---------------------------------------------------------------------

def references(pod: Pod) -> set[Ref]:
    """Every ConfigMap and Secret the pod's volumes and containers name."""
    ns = pod.metadata.namespace or "default"
    refs: set[Ref] = set()
    for v in pod.spec.volumes or []:
        if v.configMap is not None and v.configMap.name:
            refs.add((CONFIGMAP, ns, v.configMap.name))
        if v.secret is not None and v.secret.secretName:
            refs.add((SECRET, ns, v.secret.secretName))
    for c in [*(pod.spec.initContainers or []), *pod.spec.containers]:
        for var in c.env or []:
            src = var.valueFrom
            if src is not None and src.configMapKeyRef is not None and src.configMapKeyRef.name:
                refs.add((CONFIGMAP, ns, src.configMapKeyRef.name))
            if src is not None and src.secretKeyRef is not None and src.secretKeyRef.name:
                refs.add((SECRET, ns, src.secretKeyRef.name))
        for env_from in c.envFrom or []:
            if env_from.configMapRef is not None and env_from.configMapRef.name:
                refs.add((CONFIGMAP, ns, env_from.configMapRef.name))
            if env_from.secretRef is not None and env_from.secretRef.name:
                refs.add((SECRET, ns, env_from.secretRef.name))
    return refs


def _secret_values(secret: Secret) -> dict[str, bytes]:
    return {key: decode_b64(value) for key, value in (secret.data or {}).items()}


def _configmap_values(cm: ConfigMap, with_binary: bool) -> dict[str, bytes]:
    values = {key: value.encode() for key, value in (cm.data or {}).items()}
    if with_binary:
        values.update({key: decode_b64(value) for key, value in (cm.binaryData or {}).items()})
    return values


# --- environment -------------------------------------------------------------------------------

def env_from_sources(pod: Pod, c: Container, objects: ConfigObjects) -> tuple[dict[str, str], list[str]]:
    """Variables from the container's envFrom (later sources win), and the keys skipped as invalid names."""
    ns = pod.metadata.namespace or "default"
    env: dict[str, str] = {}
    skipped: list[str] = []
    for src in c.envFrom or []:
        values: dict[str, bytes]
        if src.configMapRef is not None:
            name, optional = src.configMapRef.name or "", bool(src.configMapRef.optional)
            cm = objects.configmap(ns, name)
            if cm is None:
                if optional:
                    continue
                raise ConfigError(f'configmap "{name}" not found')
            values = _configmap_values(cm, with_binary=False)
        elif src.secretRef is not None:
            name, optional = src.secretRef.name or "", bool(src.secretRef.optional)
            secret = objects.secret(ns, name)
            if secret is None:
                if optional:
                    continue
                raise ConfigError(f'secret "{name}" not found')
            values = _secret_values(secret)
        else:
            continue
        for key, raw in values.items():
            var = (src.prefix or "") + key
            if not ENV_VAR_NAME.match(var):
                skipped.append(var)
                continue
            env[var] = raw.decode(errors="replace")
    return env, skipped


def key_ref_value(pod: Pod, kind: str, name: str, key: str, optional: bool, objects: ConfigObjects) -> str | None:
    """One configMapKeyRef/secretKeyRef value; None when optional and missing."""
    ns = pod.metadata.namespace or "default"
    if kind == CONFIGMAP:
        cm = objects.configmap(ns, name)
        if cm is None:
            if optional:
                return None
            raise ConfigError(f'configmap "{name}" not found')
        if key not in (cm.data or {}):
            if optional:
                return None
            raise ConfigError(f"couldn't find key {key} in ConfigMap {ns}/{name}")
        return (cm.data or {})[key]
    secret = objects.secret(ns, name)
    if secret is None:
        if optional:
            return None
        raise ConfigError(f'secret "{name}" not found')
    if key not in (secret.data or {}):
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in Secret {ns}/{name}")
    return decode_b64((secret.data or {})[key]).decode(errors="replace")


# --- volumes -----------------------------------------------------------------------------------

def _project(values: dict[str, bytes], items: list[KeyToPath] | None, default_mode: int | None, optional: bool,
             what: str, volume: str) -> dict[str, FileProjection]:
    mode = DEFAULT_MODE if default_mode is None else default_mode
    if not items:
        return {key: FileProjection(data, mode) for key, data in values.items()}
    out: dict[str, FileProjection] = {}
    for item in items:
        if item.key not in values:
            if optional:
                continue
            raise ConfigError(f"{what} references non-existent config key: {item.key}", volume)
        out[item.path] = FileProjection(values[item.key], mode if item.mode is None else item.mode)
    return out


def configmap_payload(pod: Pod, volume: str, src: ConfigMapVolumeSource,
                      objects: ConfigObjects) -> dict[str, FileProjection]:
    ns, name = pod.metadata.namespace or "default", src.name or ""
    cm = objects.configmap(ns, name)
    if cm is None:
        if src.optional:
            return {}
        raise ConfigError(f'configmap "{name}" not found', volume)
    return _project(_configmap_values(cm, with_binary=True), src.items, src.defaultMode, bool(src.optional),
                    "configmap", volume)


def secret_payload(pod: Pod, volume: str, src: SecretVolumeSource, objects: ConfigObjects) -> dict[str, FileProjection]:
    ns, name = pod.metadata.namespace or "default", src.secretName or ""
    secret = objects.secret(ns, name)
    if secret is None:
        if src.optional:
            return {}
        raise ConfigError(f'secret "{name}" not found', volume)
    return _project(_secret_values(secret), src.items, src.defaultMode, bool(src.optional), "secret", volume)
