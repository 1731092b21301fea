"""`from minik8s import Client`: typed list/get/create/apply/delete/watch for every kind.

    c = Client.from_config()
    pod = c.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": {...}})
    for ev in c.watch("Pod", namespace="default"): print(ev.type, ev.object.metadata.name)
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minik8s import jsonc
from minik8s.api import kinds as k
from minik8s.api import lastapplied
from minik8s.api import types as t
from minik8s.client.transport import NO_TIMEOUT, Transport, TransportError
from minik8s.errors import AlreadyExists, BadRequest, MiniK8sError, NotFound, Unavailable, from_status

log = logging.getLogger("minik8s.client")


def _log_warning(message: str) -> None:
    log.warning("the API server warns: %s", message)


DEFAULT_CONFIG = Path.home() / ".minik8s" / "config.json"
DEFAULT_TIMEOUT_S = 30.0
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PATCH_CONTENT_TYPES = {"merge": "application/merge-patch+json", "strategic": STRATEGIC_MERGE_PATCH,
                       "json": "application/json-patch+json"}

if TYPE_CHECKING:
    import httpx

ObjLike = t.TypedObject | dict[str, Any]


@dataclass
class ObjectList:
    items: list[Any]
    resource_version: str


@dataclass
class WatchEvent:
    type: str
    object: Any


def config_path() -> Path:
    return Path(os.environ.get("MINIK8S_CONFIG", str(DEFAULT_CONFIG)))


def _as_dict(obj: ObjLike) -> dict[str, Any]:
    return obj.to_dict() if isinstance(obj, t.TypedObject) else dict(obj)


class Client:
    def __init__(self, server: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 ca: str | None = None, cert: str | None = None, key: str | None = None) -> None:
        """`ca`: the cluster CA certificate (PEM text) that the API server's certificate must chain to;
        `cert`/`key`: files of a client certificate to authenticate with (a node's), instead of a token."""
        self.server = server.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        context = ssl.create_default_context(cadata=ca) if ca else None
        if cert and key:
            context = context or ssl.create_default_context()
            context.load_cert_chain(cert, key)
        self._transport = Transport(self.server, headers, timeout, context)  # requests and watches
        self._headers, self._timeout, self._verify = headers, timeout, context or True
        self.ssl_context = context  # exec/attach WebSockets (minik8s.client.streams) verify with it too
        self._logs_http: httpx.Client | None = None  # log streams only, made on first use (~30 ms of CPU)
        #: what to do with the API's warnings (client-go's WarningHandler); the CLI prints them as kubectl does
        self.on_warning: Callable[[str], None] = _log_warning

    @classmethod
    def from_config(cls, path: Path | None = None) -> Client:
        """The cluster `minik8s up` wrote into ~/.minik8s/config.json (or $MINIK8S_CONFIG)."""
        path = path or config_path()
        try:
            cfg = json.loads(path.read_text())
        except FileNotFoundError:
            raise Unavailable(f"no cluster config at {path}: run `minik8s up` first") from None
        return cls(cfg["server"], cfg.get("token"), ca=cfg.get("ca"))

    def close(self) -> None:
        self._transport.close()
        if self._logs_http is not None:
            self._logs_http.close()

    # --- transport --------------------------------------------------------------------------
    def request(self, method: str, path: str, params: dict[str, Any] | None = None, json: Any = None,
                content: str | bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float | None = -1.0) -> Any:
        """One API call; `json` (an object to send) or `content` (raw body); `timeout` None waits forever."""
        hdrs = dict(headers or {})
        body = content.encode() if isinstance(content, str) else content
        if json is not None:
            body = jsonc.dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        try:
            resp = self._transport.request(method, path, params, body, hdrs, timeout)
        except TransportError as exc:
            raise Unavailable(f"cannot reach the API server at {self.server}: {exc}") from None
        for warning in resp.warnings:
            self.on_warning(warning)
        return self._decode(resp.status, resp.content)

    @staticmethod
    def _decode(status: int, content: bytes) -> Any:
        try:
            body = jsonc.loads(content) if content else None
        except ValueError:
            body = {"message": content.decode(errors="replace")}
        if status >= 400:
            raise from_status(status, body if isinstance(body, dict) else None)
        return body

    @staticmethod
    def _model(obj: dict[str, Any]) -> Any:
        try:
            info = k.by_kind(obj.get("apiVersion"), obj.get("kind"))
        except MiniK8sError:
            return obj
        return info.model.model_validate(obj)

    @staticmethod
    def _ns(info: k.KindInfo, namespace: str | None) -> str | None:
        return (namespace or "default") if info.namespaced else None

    # --- verbs ------------------------------------------------------------------------------
    def get(self, kind: str, name: str, namespace: str | None = "default") -> Any:
        info = k.lookup(kind)
        return self._model(self.request("GET", info.url(self._ns(info, namespace), name)))

    def list(self, kind: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> ObjectList:
        """All namespaces when `namespace` is None."""
        info = k.lookup(kind)
        params = {key: v for key, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}
        body = self.request("GET", info.url(namespace if info.namespaced else None), params=params)
        items = [self._model({"apiVersion": info.api_version, "kind": info.kind, **o}) for o in body["items"]]
        return ObjectList(items, body["metadata"]["resourceVersion"])

    def create(self, obj: ObjLike, namespace: str | None = None, dry_run: bool = False) -> Any:
        body = _as_dict(obj)
        info = self._info_of(body)
        ns = self._ns(info, namespace or (body.get("metadata") or {}).get("namespace"))
        params = {"dryRun": "All"} if dry_run else {}
        return self._model(self.request("POST", info.url(ns), json=body, params=params))

    def update(self, obj: ObjLike, dry_run: bool = False) -> Any:
        body = _as_dict(obj)
        info = self._info_of(body)
        meta = body.get("metadata") or {}
        params = {"dryRun": "All"} if dry_run else {}
        return self._model(self.request("PUT", info.url(self._ns(info, meta.get("namespace")), meta["name"]),
                                        json=body, params=params))

    def update_status(self, obj: ObjLike) -> Any:
        body = _as_dict(obj)
        info = self._info_of(body)
        meta = body.get("metadata") or {}
        url = info.url(self._ns(info, meta.get("namespace")), meta["name"], "status")
        return self._model(self.request("PUT", url, json=body))

    def patch(self, kind: str, name: str, patch: dict[str, Any] | Sequence[Any], namespace: str | None = "default",
              subresource: str | None = None, patch_type: str = "merge") -> Any:
        """`patch_type` as `kubectl patch --type`: "merge" (RFC 7386), "strategic" (Kubernetes' strategic
        merge patch) or "json" (RFC 6902, a list of operations)."""
        info = k.lookup(kind)
        if patch_type not in PATCH_CONTENT_TYPES:
            raise BadRequest(f'unknown patch type "{patch_type}": use one of {", ".join(PATCH_CONTENT_TYPES)}')
        return self._model(self.request("PATCH", info.url(self._ns(info, namespace), name, subresource),
                                        content=jsonc.dumps(patch),
                                        headers={"Content-Type": PATCH_CONTENT_TYPES[patch_type]}))

    def apply(self, obj: ObjLike, namespace: str | None = None) -> Any:
        """Create the object, or update the existing one to match it."""
        return self.apply_outcome(obj, namespace)[0]

    def apply_outcome(self, obj: ObjLike, namespace: str | None = None, dry_run: bool = False) -> tuple[Any, str]:
        """Client-side apply, as `kubectl apply`: create the object with the manifest recorded in its
        last-applied annotation, or send the existing one the three-way strategic merge patch from the
        last applied manifest to this one. Returns (object, "created"|"configured"|"unchanged")."""
        body = _as_dict(obj)
        info = self._info_of(body)
        meta = body.setdefault("metadata", {})
        if namespace and info.namespaced:
            meta["namespace"] = namespace
        desired = lastapplied.with_last_applied(body)
        ns = self._ns(info, meta.get("namespace"))
        if not meta.get("name"):  # generateName: always a new object
            return self.create(desired, dry_run=dry_run), "created"
        try:  # read first, as kubectl does, so a dry run of an update checks the patch, not a create
            current = _as_dict(self.get(info.kind, meta["name"], ns))
        except NotFound:
            try:
                return self.create(desired, dry_run=dry_run), "created"
            except AlreadyExists:  # created since we looked
                current = _as_dict(self.get(info.kind, meta["name"], ns))
        patch = lastapplied.three_way_patch(info.kind, lastapplied.last_applied(current), desired)
        if not patch:  # as kubectl: nothing to send (a controller's write since the GET is not a change of ours)
            return self._model(current), "unchanged"
        result = self.request("PATCH", info.url(ns, meta["name"]), content=jsonc.dumps(patch),
                              headers={"Content-Type": STRATEGIC_MERGE_PATCH},
                              params={"dryRun": "All"} if dry_run else {})
        return self._model(result), "unchanged" if result == current else "configured"

    def delete(self, kind: str, name: str, namespace: str | None = "default",
               grace_period_seconds: int | None = None, propagation_policy: str | None = None) -> Any:
        info = k.lookup(kind)
        params: dict[str, Any] = {}
        if grace_period_seconds is not None:
            params["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            params["propagationPolicy"] = propagation_policy
        return self.request("DELETE", info.url(self._ns(info, namespace), name), params=params)

    def evict(self, name: str, namespace: str = "default", grace_period_seconds: int | None = None) -> Any:
        """POST a policy/v1 Eviction: the pod is deleted gracefully unless a PodDisruptionBudget refuses
        (TooManyRequests, 429: try again later)."""
        body: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction",
                                "metadata": {"name": name, "namespace": namespace}}
        if grace_period_seconds is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": grace_period_seconds}
        return self.request("POST", k.lookup("Pod").url(namespace, name, "eviction"), json=body)

    def bind(self, name: str, node: str, namespace: str = "default") -> None:
        info = k.lookup("Pod")
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": namespace},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        self.request("POST", info.url(namespace, name, "binding"), json=body)

    def watch(self, kind: str, namespace: str | None = None, resource_version: str | None = None,
              label_selector: str | None = None, field_selector: str | None = None,
              timeout_seconds: float | None = None) -> Iterator[WatchEvent]:
        """Events from `resource_version` (or ADDED for everything first, then changes).

        Raises errors.Gone when the version is too old (relist, then watch again).
        """
        info = k.lookup(kind)
        params: dict[str, Any] = {"watch": "true"}
        for key, val in (("resourceVersion", resource_version), ("labelSelector", label_selector),
                         ("fieldSelector", field_selector), ("timeoutSeconds", timeout_seconds)):
            if val is not None:
                params[key] = val
        try:
            with self._transport.stream("GET", info.url(namespace if info.namespaced else None), params) as resp:
                if resp.status >= 400:
                    self._decode(resp.status, resp.read())
                while line := resp.readline():
                    if not line.strip():
                        continue
                    ev = jsonc.loads(line)
                    if ev["type"] == "ERROR":
                        status = ev["object"]
                        raise from_status(int(status.get("code", 500)), status)
                    yield WatchEvent(ev["type"], self._model(ev["object"]))
        except TransportError as exc:
            raise Unavailable(f"watch on {info.plural} broke: {exc}") from None

    def pod_logs(self, name: str, namespace: str = "default", container: str | None = None,
                 follow: bool = False, tail_lines: int | None = None, previous: bool = False) -> Iterator[bytes]:
        info = k.lookup("Pod")
        params: dict[str, Any] = {"follow": str(follow).lower(), "previous": str(previous).lower()}
        if container:
            params["container"] = container
        if tail_lines is not None:
            params["tailLines"] = tail_lines
        import httpx  # here, not at the top: only log streams use it, and it costs a CLI ~0.1 s to import

        timeout = httpx.Timeout(DEFAULT_TIMEOUT_S, read=None)
        if self._logs_http is None:
            self._logs_http = httpx.Client(base_url=self.server, headers=self._headers, timeout=self._timeout,
                                           verify=self._verify)
        with self._logs_http.stream("GET", info.url(namespace, name, "log"), params=params, timeout=timeout) as resp:
            if resp.status_code >= 400:
                self._decode(resp.status_code, resp.read())
            yield from resp.iter_raw()

    def pod_exec(self, name: str, command: Sequence[str], namespace: str = "default",
                 container: str | None = None) -> tuple[int, bytes]:
        info = k.lookup("Pod")
        params = {"container": container} if container else {}
        body = self.request("POST", info.url(namespace, name, "exec"), params=params, json={"command": list(command)},
                            timeout=NO_TIMEOUT)
        return int(body["exitCode"]), str(body.get("output", "")).encode()

    @staticmethod
    def _info_of(body: dict[str, Any]) -> k.KindInfo:
        if not body.get("kind") or not body.get("apiVersion"):
            raise BadRequest("the object needs apiVersion and kind")
        return k.by_kind(body["apiVersion"], body["kind"])
