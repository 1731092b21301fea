"""The FastAPI application: routing, auth, watch streams, tables, and log/exec proxying."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

from minik8s import jsonc
from minik8s.api import kinds as k
from minik8s.api.selectors import labels_match, parse_field_selector, parse_label_selector
from minik8s.apiserver import (
    audit,
    discovery,
    eviction,
    limits,
    listing,
    masterservice,
    params,
    portforward,
    protobuf,
    reviews,
    streams,
    tokenrequest,
    warnings,
    workloads,
)
from minik8s.apiserver import join as node_join
from minik8s.apiserver import metrics as metrics_api
from minik8s.apiserver.admission import DefaultTolerationSeconds
from minik8s.apiserver.authfilter import AuthFilter
from minik8s.apiserver.resources import Resources, key_for
from minik8s.apiserver.streams import KubeletAccess
from minik8s.apiserver.uidcache import UidCache
from minik8s.apiserver.watchqueue import WatchQueue
from minik8s.auth import user, x509
from minik8s.auth.authn import Authenticator, AuthenticatorChain, TokenAuthenticator
from minik8s.auth.authz import AlwaysAllow, Authorizer, PrivilegedGroups, UnionAuthorizer
from minik8s.auth.escalation import RBACEscalation
from minik8s.auth.node import NodeAuthorizer
from minik8s.auth.policy import BOOTSTRAP_USER, BOOTSTRAPPERS, reconcile_policy
from minik8s.auth.rbac import RBACAuthorizer, RbacCache
from minik8s.auth.serviceaccount import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    ServiceAccountAuthenticator,
    TokenIssuer,
    load_or_create_key,
)
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
from minik8s.store import EtcdStore, StoreEvent, encryption
from minik8s.store.failover import EtcdTLS
from minik8s.store.watchcache import WatchCache

log = logging.getLogger("minik8s.apiserver")

UNAUTHENTICATED_PATHS = ("/healthz", "/livez", "/readyz")
JOIN_PATH = "/minik8s/join"
ADMIN_USER = UserInfo(user.ADMIN, (user.SYSTEM_MASTERS, user.AUTHENTICATED))  # the admin token's user
JOIN_USER = UserInfo(BOOTSTRAP_USER, (BOOTSTRAPPERS, user.AUTHENTICATED))  # a join-token holder
CACERTS_PATH = "/cacerts"  # the cluster CA, unauthenticated (k3s's): a joining node checks it against its token
PUBLIC_PATHS = (*UNAUTHENTICATED_PATHS, CACERTS_PATH)
KUBELET_TIMEOUT_S = 60.0
BINARY_MEDIA_TYPES = ("application/vnd.kubernetes.protobuf", "application/cbor")
WATCH_QUEUE_MAX = 10000


@dataclass
class ApiServerConfig:
    """Defaults documented here, once."""

    etcd_endpoints: list[str] = field(default_factory=lambda: ["http://127.0.0.1:12379"])
    # for https:// endpoints (kube-apiserver's --etcd-cafile/--etcd-certfile/--etcd-keyfile): the CA of the
    # members' serving certificates (None: the system's) and this server's client certificate toward them
    etcd_cafile: str | None = None
    etcd_certfile: str | None = None
    etcd_keyfile: str | None = None
    token: str | None = None  # the admin's bearer token (user `admin` in system:masters); None, with no
    # token_auth_file either, disables authentication and authorization (unit tests only)
    token_auth_file: str | None = None  # kube-apiserver's --token-auth-file: `token,user,uid,"groups"` lines
    authorization_mode: list[str] = field(default_factory=lambda: ["RBAC"])  # RBAC | AlwaysAllow, in order
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
    # ServiceAccount tokens: the signing key file (made 0600 at the first start; None: a key for this process
    # only), the `iss` claim, and the audiences this API accepts (`--api-audiences`; the first is the default)
    service_account_key_file: str | None = None
    service_account_issuer: str = DEFAULT_ISSUER
    api_audiences: list[str] = field(default_factory=lambda: [DEFAULT_AUDIENCE])
    # where pods reach this API server: the `default/kubernetes` Endpoints (None: no such Service is kept)
    advertise_address: str | None = None
    encryption_config: str | None = None  # an EncryptionConfiguration file: Secrets encrypted at rest
    audit_log: str | None = None  # where the audit log's JSON lines go (rotated); None: no audit log
    ca_cert: str | None = None  # the cluster CA (PEM file): client certificates must chain to it (x509 users)
    ca_key: str | None = None  # its key: signs the certificates of joining nodes (None: joins get none)
    kubelet_client_cert: str | None = None  # the API server's identity toward kubelets (TLS client certificate)
    kubelet_client_key: str | None = None
    # tolerationSeconds of the not-ready / unreachable NoExecute tolerations every new pod gets (kube-apiserver's
    # --default-not-ready-toleration-seconds / --default-unreachable-toleration-seconds): `up --pod-eviction-timeout`
    default_not_ready_toleration_seconds: int = 300
    default_unreachable_toleration_seconds: int = 300


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
    """`authenticators` join the token file's in the chain (ServiceAccount JWTs, node credentials);
    `authorizers` go in front of RBAC in the union (the Node authorizer: `--authorization-mode=Node,RBAC`).
    Both stay reachable as `self.authenticator.authenticators` and `self.authorizer.authorizers`."""

    def __init__(self, config: ApiServerConfig, store: EtcdStore | None = None,
                 authenticators: list[Authenticator] | None = None,
                 authorizers: list[Authorizer] | None = None) -> None:
        self.config = config
        transformer = encryption.load(config.encryption_config) if config.encryption_config else None
        tls = EtcdTLS(config.etcd_cafile, config.etcd_certfile, config.etcd_keyfile)
        self.store = store or EtcdStore(config.etcd_endpoints, transformer=transformer, tls=tls)
        self.resources = Resources(self.store, config.pod_cidr, config.node_cidr_prefix, config.service_cidr,
                                   default_tolerations=DefaultTolerationSeconds(
                                       config.default_not_ready_toleration_seconds,
                                       config.default_unreachable_toleration_seconds))
        self.rbac = RBACAuthorizer()
        self.rbac_cache = RbacCache(self.store, self.rbac)
        if authorizers is None:  # `--authorization-mode=Node,RBAC`: a node's own objects, then RBAC
            authorizers = [NodeAuthorizer(node_join.StorePodIndex(self.resources))]
        self.authorizer = UnionAuthorizer([*authorizers, PrivilegedGroups(), *self._modes()])
        self.resources.admission.validating.append(RBACEscalation(self.authorizer, self.rbac))
        self.metrics = MetricsStore()  # metrics.k8s.io: in memory, like metrics-server
        key_file = config.service_account_key_file
        self.token_issuer = TokenIssuer(load_or_create_key(key_file), config.service_account_issuer) if key_file \
            else TokenIssuer.ephemeral(config.service_account_issuer)
        self.watch_cache = WatchCache(self.store)  # one etcd watch per resource, shared by every client watch
        self.uids = UidCache(self.store)  # live Pod/ServiceAccount uids: a token dies with its pod or account
        self.service_accounts = ServiceAccountAuthenticator(self.token_issuer, self.uids,
                                                            tuple(config.api_audiences))
        self.auth_enabled = bool(config.token or config.token_auth_file or authenticators)
        # static tokens, then ServiceAccount JWTs (pods, `kubectl create token`), then node credentials
        self.authenticator = AuthenticatorChain([self._static_tokens(), self.service_accounts,
                                                 *(authenticators or [])])
        self.watch_queue_max = WATCH_QUEUE_MAX  # events one watcher may fall behind before it is closed (410)
        self.kubelets = KubeletAccess(_kubelet_tls(config))
        self.audit = audit.AuditLog(config.audit_log) if config.audit_log else None
        self._handlers = self._subresource_handlers()
        self.app = self._build()

    # --- app ---------------------------------------------------------------------------------
    def _build(self) -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            await self._startup()
            yield
            self.watch_cache.stop()
            self.uids.stop()  # its watches would otherwise outlive the server (tests start many)
            self.rbac_cache.stop()

        app = FastAPI(title="minik8s", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
        app.add_middleware(limits.BodyLimit)  # inside AuthFilter: who asks is known before the size matters
        app.add_middleware(AuthFilter, authenticate=self._check_token, authorizer=self.authorizer,
                           certificate=self._certificate_user)
        if self.audit is not None:  # added last, so outermost: it sees refused requests too
            app.add_middleware(audit.AuditMiddleware, audit=self.audit)
        streams.PodStreams(self.resources, self.kubelets).register(app)  # WebSocket exec and attach
        # the resource routes are plain Starlette routes: FastAPI's per-request dependency solving and
        # validation of path parameters cost ~0.2 ms of CPU on every call and gave these nothing
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        app.router.add_route("/api/{version}/{rest:path}", self._core, methods=methods, include_in_schema=False)
        for path in UNAUTHENTICATED_PATHS:
            app.get(path)(self._healthz)
        app.post(JOIN_PATH)(self._join)
        app.get(CACERTS_PATH)(self._cacerts)
        portforward.register(app, self.resources, self.kubelets)  # WebSocket: kubectl and client libraries
        metrics_api.register(app, self.metrics)  # before the generic /apis/{group}/{version} routes
        reviews.register(app, reviews.Reviews(self.authorizer, self.rbac))  # likewise
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

    def _static_tokens(self) -> TokenAuthenticator:
        tokens = TokenAuthenticator.load(self.config.token_auth_file) if self.config.token_auth_file \
            else TokenAuthenticator()
        if self.config.token:
            tokens.add(self.config.token, ADMIN_USER)
        return tokens

    def _modes(self) -> list[Authorizer]:
        by_name: dict[str, Authorizer] = {"RBAC": self.rbac, "AlwaysAllow": AlwaysAllow()}
        unknown = [m for m in self.config.authorization_mode if m not in by_name]
        if unknown:
            raise ValueError(f"authorization_mode: unknown mode(s) {unknown}; known: {sorted(by_name)}")
        return [by_name[m] for m in self.config.authorization_mode]

    def _start_rbac(self) -> None:
        """Reconcile the bootstrap policy, then fill the authorizer's cache (before the first request)."""
        reconcile_policy(self.resources)
        self.rbac_cache.start()

    async def _startup(self) -> None:
        await anyio.to_thread.run_sync(self.resources.ensure_system_namespaces)
        self.uids.start()
        await anyio.to_thread.run_sync(self._start_rbac)
        asyncio.get_running_loop().create_task(self._compactor())
        if self.config.advertise_address:
            asyncio.get_running_loop().create_task(self._master_service())

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

    async def _master_service(self) -> None:
        """Keep `default/kubernetes` pointing at this API server (kube-apiserver's bootstrap controller)."""
        address, cidr, port = self.config.advertise_address or "", self.config.service_cidr, self.config.port
        while True:
            try:
                await anyio.to_thread.run_sync(lambda: masterservice.reconcile(self.resources, cidr, address, port))
            except MiniK8sError as exc:  # etcd briefly away: try again next interval
                log.warning("reconciling the kubernetes service failed: %s", exc)
            await asyncio.sleep(masterservice.RECONCILE_INTERVAL_S)

    def _certificate_user(self, scope: dict[str, Any]) -> UserInfo | None:
        """The user a verified client certificate names (kube-apiserver asks it before the bearer token)."""
        if not self.auth_enabled or scope["path"] in (JOIN_PATH, *PUBLIC_PATHS):
            return None
        return x509.user_of_scope(scope)

    def _check_token(self, path: str, header: str) -> MiniK8sError | UserInfo:
        """Who is asking, or why not: the join token on JOIN_PATH, the authenticator chain everywhere else."""
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if path == JOIN_PATH:
            expected = self.config.join_token or ""
            if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
                return Unauthorized("invalid join token: use the token `minik8s token` prints")
            return JOIN_USER
        if not self.auth_enabled:
            return ADMIN_USER
        if path in PUBLIC_PATHS and not given:
            return ANONYMOUS_USER
        found = self.authenticator.authenticate(given)
        if found is None:
            return Unauthorized("Unauthorized: a valid bearer token is required")
        return found

    async def _cacerts(self) -> Response:
        ca = node_join.cluster_ca_pem(self.config)
        if not ca:
            return _error(NotFound("this API server has no cluster CA"))
        return Response(ca, media_type="application/x-pem-file")

    async def _join(self, request: Request) -> Response:
        """A node presents the join token, its wishes and its certificate requests; it gets its Node object,
        its certificates and the cluster's facts. Never the admin token."""
        try:
            body = await self._body(request)
            peer = x509.user_of_scope(request.scope)  # a node re-joining presents its own certificate
            reply = await anyio.to_thread.run_sync(
                lambda: node_join.join(self.resources, self.config, body, peer))
        except MiniK8sError as exc:
            return _error(exc)
        return _json(reply, 201)

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
        with warnings.collect() as said:  # admission's warnings (Pod Security `warn`) become headers
            try:
                target = parse_target(group, version, rest)
                response = await self._handle(request, target)
            except MiniK8sError as exc:
                response = _error(exc)
        return warnings.attach(response, said)

    async def _body(self, request: Request) -> Any:
        raw = await request.body()
        if not raw:
            return {}
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media == protobuf.MEDIA_TYPE:  # kubectl's typed clients (create configmap|role|..., auth can-i) send it
            return protobuf.decode(raw)
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
                if params.bool_param(q, "watch"):
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
            grace = params.int_param(q, "gracePeriodSeconds", 0,
                                     body.get("gracePeriodSeconds") if isinstance(body, dict) else None)
            policy = workloads.policy_of(q, body)  # garbage collection: Orphan / Background / Foreground
            obj = await run(lambda: workloads.delete(res, t.info, t.namespace, name, grace, policy))
            return _json(obj)
        raise MethodNotAllowed(f"{method} is not supported")

    # --- subresources -----------------------------------------------------------------------
    def _subresource_handlers(self) -> dict[str, SubresourceHandler]:
        """Handlers by subresource name; a kind serves those its table entry lists."""
        return {"status": self._object, "binding": self._binding, "scale": self._scale,
                "log": self._proxy_to_kubelet, "exec": self._proxy_to_kubelet,
                "portforward": portforward.upgrade_required,  # served as a WebSocket/SPDY upgrade only
                "token": self._token_request, "eviction": self._eviction}

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

    async def _token_request(self, request: Request, t: Target) -> Response:
        """ServiceAccounts: POST a TokenRequest, get a signed, bound, expiring token back."""
        if request.method != "POST":
            raise MethodNotAllowed("token supports POST only")
        ns, name = t.namespace or "default", t.name or ""
        body = await self._body(request)  # `kubectl create token` sends it as protobuf
        return _json(await anyio.to_thread.run_sync(lambda: tokenrequest.create_token(
            self.resources, self.token_issuer, ns, name, body, self.config.api_audiences)), 201)

    async def _eviction(self, request: Request, t: Target) -> Response:
        if request.method != "POST":
            raise MethodNotAllowed("eviction supports POST only")
        body = await self._body(request)
        name = t.name or ""
        dry = request.query_params.get("dryRun") == "All"
        return _json(await anyio.to_thread.run_sync(
            lambda: eviction.evict(self.resources, t.namespace or "default", name, body, dry)), 201)

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
        timeout = params.timeout_seconds(q)
        rv = params.resource_version(q)
        prefix = key_for(t.info, t.namespace)

        def matches(obj: dict[str, Any] | None) -> bool:
            return bool(obj) and labels_match(labels, obj["metadata"].get("labels")) and fields(obj)  # type: ignore

        def encode(etype: str, obj: dict[str, Any]) -> bytes:
            out = to_table(t.info, [obj]) if table and etype != "ERROR" else obj
            return jsonc.dumps({"type": etype, "object": out}) + b"\n"

        send_initial = listing.watch_initial_events(q)
        initial: list[dict[str, Any]] = []
        bookmark: dict[str, Any] | None = None
        if send_initial or (send_initial is None and (not rv or rv == "0")):
            # the objects as they are now (never older than `rv`: etcd's latest revision is at least that)
            items, revision = await anyio.to_thread.run_sync(lambda: self.resources.list(
                t.info, t.namespace, q.get("labelSelector"), q.get("fieldSelector")))
            initial, start = items, revision + 1
            if send_initial:
                bookmark = listing.initial_events_end(t.info, revision)
        elif not rv or rv == "0":  # sendInitialEvents=false from "any" revision: the changes from now on
            start = await anyio.to_thread.run_sync(self.store.revision) + 1
        else:
            start = int(rv) + 1
        loop = asyncio.get_running_loop()
        queue = WatchQueue(self.watch_queue_max)

        def on_event(ev: StoreEvent) -> None:
            loop.call_soon_threadsafe(queue.offer, ev)

        try:
            resource_prefix = key_for(t.info, None)
            cancel = await anyio.to_thread.run_sync(
                lambda: self.watch_cache.watch(resource_prefix, prefix, start, on_event))
        except Gone as exc:
            gone = exc.to_status()
            gone["message"] = f"too old resource version: {rv}"
            return StreamingResponse(iter([encode("ERROR", gone)]), media_type="application/json")

        async def stream() -> AsyncIterator[bytes]:
            try:
                for obj in initial:
                    yield encode("ADDED", obj)
                if bookmark is not None:
                    yield jsonc.dumps({"type": "BOOKMARK", "object": bookmark}) + b"\n"
                deadline = loop.time() + timeout if timeout else None
                while True:
                    wait = None if deadline is None else max(0.0, deadline - loop.time())
                    try:
                        ev = await asyncio.wait_for(queue.get(), wait)
                    except TimeoutError:
                        return
                    if ev.type == "ERROR":
                        if ev is queue.OVERFLOW:  # a slow reader: it relists, as after compaction
                            log.info("closing a watcher that fell behind", extra={"prefix": prefix})
                            yield encode("ERROR", queue.expired_status())
                            return
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
        client = httpx.AsyncClient(timeout=httpx.Timeout(KUBELET_TIMEOUT_S, read=None),
                                   verify=self.kubelets.ssl or False)
        base = self.kubelets.http_url(ip, port)
        if t.subresource == "log":
            params = {k2: v for k2, v in q.items() if k2 in ("follow", "tailLines", "previous", "timestamps")}
            url = f"{base}/containerLogs/{ns}/{name}/{container}"
            req = client.build_request("GET", url, params=params)
        else:
            if request.method != "POST" or request.headers.get("upgrade"):
                raise BadRequest("interactive exec speaks WebSocket (v5.channel.k8s.io or v4.channel.k8s.io) "
                                 "only, not SPDY; a plain POST takes a JSON {\"command\": [...]}")
            body = await self._body(request)
            url = f"{base}/exec/{ns}/{name}/{container}"
            req = client.build_request("POST", url, json=body)
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


def _kubelet_tls(config: ApiServerConfig) -> ssl.SSLContext | None:
    """TLS toward kubelets: their serving certificates must chain to the cluster CA; ours identifies us."""
    if not (config.ca_cert and config.kubelet_client_cert and config.kubelet_client_key):
        return None
    with open(config.ca_cert) as f:
        ca = f.read()
    return x509.client_context(ca, config.kubelet_client_cert, config.kubelet_client_key)


def create_app(config: ApiServerConfig) -> FastAPI:
    return ApiServer(config).app
