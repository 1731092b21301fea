"""The FastAPI application: routing, auth, watch streams, tables, and log/exec proxying."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.responses import StreamingResponse

from minik8s import auth, jsonc
from minik8s.api import kinds as k
from minik8s.api.selectors import labels_match, parse_field_selector, parse_label_selector
from minik8s.apiserver import discovery, listing, portforward, streams, workloads
from minik8s.apiserver import metrics as metrics_api
from minik8s.apiserver.resources import Resources, key_for
from minik8s.auth import user
from minik8s.auth.user import ANONYMOUS_USER, UserInfo
from minik8s.errors import (
    BadRequest,
    Gone,
    MethodNotAllowed,
    MiniK8sError,
    NotFound,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from minik8s.metrics.store import MetricsStore
from minik8s.store import EtcdStore, StoreEvent

log = logging.getLogger("minik8s.apiserver")

UNAUTHENTICATED_PATHS = ("/healthz", "/livez", "/readyz")
JOIN_PATH = "/minik8s/join"
ADMIN_USER = UserInfo(user.ADMIN, (user.SYSTEM_MASTERS, user.AUTHENTICATED))  # the one API token's user
KUBELET_TIMEOUT_S = 60.0
BINARY_MEDIA_TYPES = ("application/vnd.kubernetes.protobuf", "application/cbor")
WATCH_QUEUE_MAX = 10000


@dataclass
class ApiServerConfig:
    """Defaults documented here, once."""

    etcd_endpoints: list[str] = field(default_factory=lambda: ["http://127.0.0.1:12379"])
    token: str | None = None  # None disables auth (unit tests only)
    hosts: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    port: int = 6443
    compaction_interval_s: float = 300.0  # like kube-apiserver's --etcd-compaction-interval
    tls_cert: str | None = None  # serving certificate and key (PEM files); None serves plain HTTP (tests)
    tls_key: str | None = None
    pod_cidr: str = "10.244.0.0/16"  # cluster pod network; each Node gets a /node_cidr_prefix of it
    node_cidr_prefix: int = 24
    service_cidr: str = "10.96.0.0/16"  # ClusterIPs are allocated from it
    join_token: str | None = None  # accepted only on JOIN_PATH, like k3s's node-token
    cluster_info: dict[str, Any] = field(default_factory=dict)  # handed to joining nodes (Ray address, registry)


def _json(obj: Any, status: int = 200) -> Response:
    return Response(jsonc.dumps(obj), status_code=status, media_type="application/json")


def _error(err: MiniK8sError) -> Response:
    return _json(err.to_status(), err.code)


def _wants_table(request: Request) -> bool:
    return "as=Table" in request.headers.get("accept", "")


def to_table(info: k.KindInfo, items: list[dict[str, Any]], revision: str | None = None) -> dict[str, Any]:
    defs = [{"name": c.name.title() if c.name != "NAME" else "Name", "type": c.type,
             "format": "name" if c.name == "NAME" else "", "description": c.name, "priority": 1 if c.wide else 0}
            for c in info.columns]
    rows = [{"cells": [c.get(o) for c in info.columns],
             "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}}
            for o in items]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": revision or ""},
            "columnDefinitions": defs, "rows": rows}


class BearerAuth:
    """Plain ASGI middleware (Starlette's BaseHTTPMiddleware costs a task and a queue per request)."""

    def __init__(self, app: Any, check: Callable[[str, str], MiniK8sError | UserInfo]) -> None:
        self.app, self.check = app, check

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):  # exec/attach upgrades carry the token too
            header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), "")
            outcome = self.check(scope["path"], header)
            if isinstance(outcome, UserInfo):  # authenticated: handlers read it with minik8s.auth.user_of
                scope[auth.SCOPE_KEY] = outcome
            else:
                if scope["type"] == "websocket":  # refused before the upgrade, with the same Status
                    await portforward.deny(WebSocket(scope, receive, send), outcome)
                    return
                await _error(outcome)(scope, receive, send)
                return
        await self.app(scope, receive, send)


SubresourceHandler = Callable[[Request, "Target"], Awaitable[Response]]


@dataclass
class Target:
    """What a URL names: a kind, maybe a namespace, maybe an object and one of its subresources."""

    info: k.KindInfo
    namespace: str | None
    name: str | None = None
    subresource: str | None = None


def parse_target(group: str, version: str, rest: str) -> Target:
    seg = [s for s in rest.split("/") if s]
    if not seg:
        raise NotFound("the server could not find the requested resource")
    if seg[0] == "namespaces" and len(seg) >= 3:
        try:
            info = k.by_plural(group, version, seg[2])
            if info.namespaced:
                return Target(info, seg[1], seg[3] if len(seg) > 3 else None, seg[4] if len(seg) > 4 else None)
        except NotFound:
            pass
    info = k.by_plural(group, version, seg[0])
    if len(seg) > 3:
        raise NotFound("the server could not find the requested resource")
    return Target(info, None, seg[1] if len(seg) > 1 else None, seg[2] if len(seg) > 2 else None)


class ApiServer:
    def __init__(self, config: ApiServerConfig, store: EtcdStore | None = None) -> None:
        self.config = config
        self.store = store or EtcdStore(config.etcd_endpoints)
        self.resources = Resources(self.store, config.pod_cidr, config.node_cidr_prefix, config.service_cidr)
        self.metrics = MetricsStore()  # metrics.k8s.io: in memory, like metrics-server
        self._handlers = self._subresource_handlers()
        self.app = self._build()

    # --- app ---------------------------------------------------------------------------------
    def _build(self) -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            await self._startup()
            yield

        app = FastAPI(title="minik8s", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
        app.add_middleware(BearerAuth, check=self._check_token)
        streams.PodStreams(self.resources, self.config.token).register(app)  # WebSocket exec and attach
        # the resource routes are plain Starlette routes: FastAPI's per-request dependency solving and
        # validation of path parameters cost ~0.2 ms of CPU on every call and gave these nothing
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        app.router.add_route("/api/{version}/{rest:path}", self._core, methods=methods, include_in_schema=False)
        for path in UNAUTHENTICATED_PATHS:
            app.get(path)(self._healthz)
        app.post(JOIN_PATH)(self._join)
        portforward.register(app, self.resources, self.config.token)  # WebSocket: kubectl and client libraries
        metrics_api.register(app, self.metrics)  # before the generic /apis/{group}/{version} routes
        app.get("/version")(lambda: discovery.SERVER_VERSION)
        app.get("/api")(discovery.api_versions)
        app.get("/apis")(discovery.api_group_list)
        app.get("/openapi/v3")(discovery.openapi_v3_root)
        app.get("/openapi/v3/api/{version}")(self._openapi_core)
        app.get("/openapi/v3/apis/{group}/{version}")(self._openapi_group)
        app.get("/api/{version}")(self._core_resources)
        app.get("/apis/{group}")(self._group)
        app.get("/apis/{group}/{version}")(self._group_resources)
        app.router.add_route("/apis/{group}/{version}/{rest:path}", self._grouped, methods=methods,
                             include_in_schema=False)
        return app

    async def _startup(self) -> None:
        await anyio.to_thread.run_sync(self.resources.ensure_system_namespaces)
        asyncio.get_running_loop().create_task(self._compactor())

    async def _compactor(self) -> None:
        """Keep etcd history bounded, like kube-apiserver: compact to the revision seen one interval ago."""
        previous: int | None = None
        while True:
            await asyncio.sleep(self.config.compaction_interval_s)
            try:
                current = await anyio.to_thread.run_sync(self.store.revision)
                if previous:
                    await anyio.to_thread.run_sync(self.store.compact, previous)
                previous = current
            except Exception as exc:  # etcd briefly away: try again next interval
                log.warning("compaction failed: %s", exc)

    def _check_token(self, path: str, header: str) -> MiniK8sError | UserInfo:
        """Who is asking, or why not: the join token on JOIN_PATH, the API token everywhere else."""
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if path == JOIN_PATH:
            expected = self.config.join_token or ""
            if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
                return Unauthorized("invalid join token: use the token `minik8s token` prints")
        elif self.config.token and path not in UNAUTHENTICATED_PATHS:
            if not hmac.compare_digest(given.encode(), self.config.token.encode()):
                return Unauthorized("Unauthorized: a valid bearer token is required")
            return ADMIN_USER
        return ANONYMOUS_USER if self.config.token else ADMIN_USER

    async def _join(self, request: Request) -> Response:
        """A node presents the join token and its wishes; it gets its Node object and the cluster's credentials."""
        try:
            body = await self._body(request)
            node = await anyio.to_thread.run_sync(lambda: self.resources.join_node(body))
        except MiniK8sError as exc:
            return _error(exc)
        return _json({"node": node, "token": self.config.token, "clusterInfo": self.config.cluster_info}, 201)

    async def _healthz(self) -> Response:
        try:
            await anyio.to_thread.run_sync(self.store.revision)
        except MiniK8sError as exc:
            return Response(f"etcd: {exc.message}", status_code=500)
        return Response("ok", media_type="text/plain")

    async def _openapi_core(self, version: str) -> Response:
        return await self._openapi_group("", version)

    async def _openapi_group(self, group: str, version: str) -> Response:
        doc = discovery.openapi_v3_group_version(group, version)
        return _json(doc) if doc else _error(NotFound(f"no OpenAPI document for {group}/{version}"))

    async def _core_resources(self, version: str) -> Response:
        doc = discovery.resource_list("", version)
        return _json(doc) if doc else _error(NotFound(f"no API version {version}"))

    async def _group(self, group: str) -> Response:
        doc = discovery.api_group(group)
        return _json(doc) if doc else _error(NotFound(f"no API group {group}"))

    async def _group_resources(self, group: str, version: str) -> Response:
        doc = discovery.resource_list(group, version)
        return _json(doc) if doc else _error(NotFound(f"no API group version {group}/{version}"))

    async def _core(self, request: Request) -> Response:
        p = request.path_params
        return await self._dispatch(request, "", p["version"], p["rest"])

    async def _grouped(self, request: Request) -> Response:
        p = request.path_params
        return await self._dispatch(request, p["group"], p["version"], p["rest"])

    # --- dispatch ---------------------------------------------------------------------------
    async def _dispatch(self, request: Request, group: str, version: str, rest: str) -> Response:
        try:
            target = parse_target(group, version, rest)
            return await self._handle(request, target)
        except MiniK8sError as exc:
            return _error(exc)

    async def _body(self, request: Request) -> Any:
        raw = await request.body()
        if not raw:
            return {}
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media in BINARY_MEDIA_TYPES:  # 415, as kube-apiserver answers a type it does not serve
            raise UnsupportedMediaType(f'the body of the request was in an unknown format ("{media}") - accepted '
                                       "media types include: application/json, application/yaml")
        try:
            return jsonc.loads(raw)
        except jsonc.JSONDecodeError as exc:
            raise BadRequest(f"the request body is not valid JSON: {exc}") from None

    async def _handle(self, request: Request, t: Target) -> Response:
        if t.subresource is not None:
            return await self._subresource(request, t)
        q = request.query_params
        method = request.method
        res = self.resources
        run = anyio.to_thread.run_sync
        if t.name is None:
            if method == "GET":
                if q.get("watch") in ("true", "1"):
                    return await self._watch(request, t)
                opts = listing.ListOptions.from_query(q)
                page = await run(lambda: listing.list_objects(self.store, t.info, t.namespace, opts))
                if _wants_table(request):
                    return _json({**to_table(t.info, page["items"]), "metadata": page["metadata"]})
                return _json(page)
            if method == "POST":
                body = await self._body(request)
                if t.info.namespaced and not t.namespace:
                    raise MethodNotAllowed(f"{t.info.plural} are namespaced: POST to /namespaces/NS/{t.info.plural}")
                dry = q.get("dryRun") == "All"
                return _json(await run(lambda: res.create(t.info, t.namespace, body, dry)), 200 if dry else 201)
            raise MethodNotAllowed(f"{method} is not supported on a collection")
        return await self._object(request, t)

    async def _object(self, request: Request, t: Target) -> Response:
        """GET/PUT/PATCH/DELETE of one object, or of its `status` (the same verbs, status only)."""
        q = request.query_params
        method = request.method
        res = self.resources
        run = anyio.to_thread.run_sync
        name = t.name or ""
        if method == "GET":
            obj = await run(lambda: res.get(t.info, t.namespace, name))
            return _json(to_table(t.info, [obj]) if _wants_table(request) else obj)
        if method == "PUT":
            body = await self._body(request)
            dry = q.get("dryRun") == "All"
            return _json(await run(lambda: res.update(t.info, t.namespace, name, body, t.subresource, dry)))
        if method == "PATCH":
            ctype = request.headers.get("content-type", "")
            raw = await request.body()
            dry = q.get("dryRun") == "All"
            return _json(await run(lambda: res.patch(t.info, t.namespace, name, raw, t.subresource, ctype, dry)))
        if method == "DELETE" and t.subresource is None:
            body = await self._body(request)
            grace = q.get("gracePeriodSeconds", (body or {}).get("gracePeriodSeconds"))
            policy = workloads.policy_of(q, body)  # garbage collection: Orphan / Background / Foreground
            obj = await run(lambda: workloads.delete(res, t.info, t.namespace, name,
                                                     int(grace) if grace is not None else None, policy))
            return _json(obj)
        raise MethodNotAllowed(f"{method} is not supported")

    # --- subresources -----------------------------------------------------------------------
    def _subresource_handlers(self) -> dict[str, SubresourceHandler]:
        """Handlers by subresource name; a kind serves those its table entry lists."""
        return {"status": self._object, "binding": self._binding, "scale": self._scale,
                "log": self._proxy_to_kubelet, "exec": self._proxy_to_kubelet,
                "portforward": portforward.upgrade_required}  # served as a WebSocket/SPDY upgrade only

    async def _subresource(self, request: Request, t: Target) -> Response:
        handler = self._handlers.get(t.subresource or "")
        if t.name is None or handler is None or t.subresource not in t.info.subresources:
            raise NotFound(f"{t.info.plural} have no subresource {t.subresource!r}")
        return await handler(request, t)

    async def _binding(self, request: Request, t: Target) -> Response:
        if request.method != "POST":
            raise MethodNotAllowed("binding supports POST only")
        body = await self._body(request)
        strategy = self.resources.strategy(t.info)
        bind = getattr(strategy, "bind", None)
        if bind is None:
            raise NotFound(f"{t.info.plural} have no subresource 'binding'")
        return _json(await anyio.to_thread.run_sync(lambda: bind(t.info, t.namespace or "default", t.name, body)),
                     201)

    async def _scale(self, request: Request, t: Target) -> Response:
        """Workloads: `spec.replicas` as an autoscaling/v1 Scale."""
        body = await self._body(request) if request.method in ("PUT", "PATCH") else None
        name = t.name or ""
        return _json(await anyio.to_thread.run_sync(
            lambda: workloads.scale(self.resources, t.info, t.namespace, name, request.method, body)))

    # --- watch ------------------------------------------------------------------------------
    async def _watch(self, request: Request, t: Target) -> Response:
        q = request.query_params
        labels = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"), t.info.kind)
        table = _wants_table(request)
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
        rv = q.get("resourceVersion")
        prefix = key_for(t.info, t.namespace)

        def matches(obj: dict[str, Any] | None) -> bool:
            return bool(obj) and labels_match(labels, obj["metadata"].get("labels")) and fields(obj)  # type: ignore

        def encode(etype: str, obj: dict[str, Any]) -> bytes:
            out = to_table(t.info, [obj]) if table and etype != "ERROR" else obj
            return jsonc.dumps({"type": etype, "object": out}) + b"\n"

        initial: list[dict[str, Any]] = []
        if not rv or rv == "0":
            items, revision = await anyio.to_thread.run_sync(lambda: self.resources.list(
                t.info, t.namespace, q.get("labelSelector"), q.get("fieldSelector")))
            initial, start = items, revision + 1
        else:
            start = int(rv) + 1
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StoreEvent] = asyncio.Queue(WATCH_QUEUE_MAX)

        def on_event(ev: StoreEvent) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, ev)

        try:
            cancel = await anyio.to_thread.run_sync(lambda: self.store.watch(prefix, start, on_event))
        except Gone as exc:
            gone = exc.to_status()
            gone["message"] = f"too old resource version: {rv}"
            return StreamingResponse(iter([encode("ERROR", gone)]), media_type="application/json")

        async def stream() -> AsyncIterator[bytes]:
            try:
                for obj in initial:
                    yield encode("ADDED", obj)
                deadline = loop.time() + timeout if timeout else None
                while True:
                    wait = None if deadline is None else max(0.0, deadline - loop.time())
                    try:
                        ev = await asyncio.wait_for(queue.get(), wait)
                    except TimeoutError:
                        return
                    if ev.type == "ERROR":
                        err = Gone(f"too old resource version: {rv}") if ev.revision else Unavailable("watch broke")
                        yield encode("ERROR", err.to_status())
                        return
                    now_in, was_in = matches(ev.object), matches(ev.prev)
                    if ev.type == "DELETED":
                        if now_in and ev.object:
                            yield encode("DELETED", ev.object)
                    elif now_in and ev.object:
                        yield encode("ADDED" if ev.type == "ADDED" or not was_in else "MODIFIED", ev.object)
                    elif was_in and ev.prev and ev.object:
                        yield encode("DELETED", ev.object)
            finally:
                cancel()

        return StreamingResponse(stream(), media_type="application/json")

    # --- kubelet proxy ----------------------------------------------------------------------
    async def _proxy_to_kubelet(self, request: Request, t: Target) -> Response:
        ns, name = t.namespace or "default", t.name or ""
        q = request.query_params
        target = await anyio.to_thread.run_sync(
            lambda: streams.kubelet_endpoint(self.resources, ns, name, q.get("container")))
        ip, port, container, node_name = target.host, target.port, target.container, target.node
        headers = {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}
        client = httpx.AsyncClient(timeout=httpx.Timeout(KUBELET_TIMEOUT_S, read=None))
        if t.subresource == "log":
            params = {k2: v for k2, v in q.items() if k2 in ("follow", "tailLines", "previous", "timestamps")}
            url = f"http://{ip}:{port}/containerLogs/{ns}/{name}/{container}"
            req = client.build_request("GET", url, params=params, headers=headers)
        else:
            if request.method != "POST" or request.headers.get("upgrade"):
                raise BadRequest("interactive exec speaks WebSocket (v5.channel.k8s.io or v4.channel.k8s.io) "
                                 "only, not SPDY; a plain POST takes a JSON {\"command\": [...]}")
            body = await self._body(request)
            url = f"http://{ip}:{port}/exec/{ns}/{name}/{container}"
            req = client.build_request("POST", url, json=body, headers=headers)
        try:
            upstream = await client.send(req, stream=True)
        except httpx.HTTPError as exc:
            await client.aclose()
            raise Unavailable(f'cannot reach the kubelet on node "{node_name}": {exc}') from None

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                await upstream.aclose()
                await client.aclose()

        return StreamingResponse(relay(), status_code=upstream.status_code,
                                 media_type=upstream.headers.get("content-type", "text/plain"))


def create_app(config: ApiServerConfig) -> FastAPI:
    return ApiServer(config).app
