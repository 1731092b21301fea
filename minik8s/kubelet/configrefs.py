"""The ConfigMaps and Secrets a pod consumes: where the kubelet reads them, and what they turn into.

The kubelet is a client of the API: :class:`ApiConfigObjects` reads each object a pod names with
a GET (a node may read only those: the Node authorizer), keeps it, and reads it again every few
seconds while it is in use. Its change handler tells the kubelet which objects changed, so pods
that use them are synced (new values in their volumes).

A required object or key that is missing raises :class:`ConfigError` with Kubernetes'
message; the runtime then keeps the container waiting and tries again later.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from minik8s.api.config import ConfigMap, Secret, decode_b64
from minik8s.api.types import ConfigMapVolumeSource, Container, KeyToPath, Pod, SecretVolumeSource
from minik8s.errors import Forbidden, MiniK8sError, NotFound
from minik8s.kubelet.atomic_writer import FileProjection

log = logging.getLogger(__name__)

CONFIGMAP = "ConfigMap"
SECRET = "Secret"
#: Kubernetes' IsEnvVarName: what an envFrom key (with its prefix) must look like to become a variable.
ENV_VAR_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
DEFAULT_MODE = 0o644
#: how often the objects pods use are read again (a change reaches volumes within about this)
DEFAULT_POLL_SECONDS = 3.0
#: an object no pod asked for in this many kubelet resyncs is no longer read
FORGET_AFTER_RESYNCS = 3

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
    """ConfigMaps and Secrets from the API, one object at a time: a GET on first use, then read again every
    `poll_seconds` while pods use it (Kubernetes' TTL-cache strategy).

    A node may read only the objects its pods name (the Node authorizer), so there is no list or watch
    of every Secret here. A change seen by the poll calls `on_change`, and the pods using the object are
    synced (new values in their volumes); an object no pod has asked for in `forget_seconds` is dropped."""

    def __init__(self, client: Any, resync_seconds: float, on_change: Callable[[Ref], None] | None = None,
                 poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
        self.client, self.on_change = client, on_change
        self.poll_seconds = poll_seconds
        self.forget_seconds = max(FORGET_AFTER_RESYNCS * resync_seconds, poll_seconds)
        self._cache: dict[Ref, tuple[Any | None, float]] = {}  # ref -> (object or None, last asked for)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kubelet-configrefs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception as exc:  # the API briefly away: the next poll reads again
                log.warning("reading ConfigMaps and Secrets again failed: %s", exc)

    def _get(self, ref: Ref) -> Any | None:
        kind, namespace, name = ref
        try:
            return self.client.get(kind, name, namespace)
        except NotFound:
            return None

    def refresh(self) -> None:
        """Read every object in use again; forget those no pod asked for lately; report the changed ones."""
        now = time.monotonic()
        with self._lock:
            for ref in [r for r, (_o, used) in self._cache.items() if now - used > self.forget_seconds]:
                del self._cache[ref]
            refs = list(self._cache)
        for ref in refs:
            try:
                fresh = self._get(ref)
            except Forbidden:
                # the Node authorizer lets a node read only what its pods name: none here does any more
                # (their namespace went away), so the object is forgotten rather than read again
                with self._lock:
                    self._cache.pop(ref, None)
                continue
            except MiniK8sError as exc:  # one object the API cannot serve now must not stall the others
                log.warning("reading %s %s/%s again failed: %s", *ref, exc)
                continue
            with self._lock:
                entry = self._cache.get(ref)
                if entry is None:
                    continue
                old = entry[0]
                self._cache[ref] = (fresh, entry[1])
            if _version(old) != _version(fresh) and self.on_change is not None:
                self.on_change(ref)

    def _lookup(self, kind: str, namespace: str, name: str) -> Any | None:
        ref = (kind, namespace, name)
        now = time.monotonic()
        with self._lock:
            entry = self._cache.get(ref)
            if entry is not None and entry[0] is not None:
                self._cache[ref] = (entry[0], now)
                return entry[0]
        found = self._get(ref)  # a miss, or missing last time: it may have been created since
        with self._lock:
            self._cache[ref] = (found, now)
        return found

    def configmap(self, namespace: str, name: str) -> ConfigMap | None:
        found: ConfigMap | None = self._lookup(CONFIGMAP, namespace, name)
        return found

    def secret(self, namespace: str, name: str) -> Secret | None:
        found: Secret | None = self._lookup(SECRET, namespace, name)
        return found


def _version(obj: Any | None) -> str | None:
    return None if obj is None else str(obj.metadata.resourceVersion)


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
        for proj in (v.projected.sources or []) if v.projected is not None else []:
            if proj.configMap is not None and proj.configMap.name:
                refs.add((CONFIGMAP, ns, proj.configMap.name))
            if proj.secret is not None and proj.secret.name:
                refs.add((SECRET, ns, proj.secret.name))
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
