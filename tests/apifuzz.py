"""Property-based robustness of the live API: hypothesis generates bad manifests, patch bodies, query
parameters and raw bodies, and `run_fuzz` throws them at an API server over real HTTP. The property:
never a 5xx, every refusal is a Status naming the problem, and the objects that existed before are
exactly as they were (every write aimed at them is a dry run or must be refused).

Shared by tests/integration/test_api_fuzz.py (in-process apiserver) and tests/e2e/test_api_robustness.py
(the real cluster). Requests go out in batches over persistent HTTP/1.1 connections from a few threads,
so ten thousand of them take tens of seconds, not minutes.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from minik8s import jsonc
from minik8s.api.validation import int_range_causes

BATCH = 25  # cases per hypothesis example, their requests sent concurrently
MIN_FAN_OUT = 4  # requests per case, at least
WORKERS = 4
QUERY_KEYS = ("limit", "continue", "resourceVersion", "resourceVersionMatch", "labelSelector", "fieldSelector",
              "timeoutSeconds", "watch", "dryRun", "gracePeriodSeconds", "propagationPolicy", "orphanDependents",
              "allowWatchBookmarks", "fieldManager", "pretty")
PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json",
               "application/json-patch+json", "application/apply-patch+yaml", "application/x-unknown")
BODY_TYPES = ("application/json", "application/yaml", "text/plain", "application/vnd.kubernetes.protobuf", "")


def base_manifests(ns: str, name: str) -> dict[str, dict[str, Any]]:
    """One valid manifest per kind the fuzz mutates, by plural: the seeds of every generated body."""
    labels = {"app": name}
    template = {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1"],
                                         "ports": [{"containerPort": 80, "name": "http"}],
                                         "env": [{"name": "A", "value": "1"}],
                                         "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}}],
                         "restartPolicy": "Always"}}
    meta = {"name": name, "namespace": ns, "labels": labels, "annotations": {"a": "b"}}
    return copy.deepcopy({
        "pods": {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]},
        "configmaps": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}},
        "secrets": {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
                    "stringData": {"k": "v"}},
        "services": {"apiVersion": "v1", "kind": "Service", "metadata": meta,
                     "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                              "type": "ClusterIP"}},
        "deployments": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": template}},
        "replicasets": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta,
                        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": template}},
        "daemonsets": {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta,
                       "spec": {"selector": {"matchLabels": labels}, "template": template}},
        "serviceaccounts": {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        "endpoints": {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta,
                      "subsets": [{"addresses": [{"ip": "10.244.1.5"}], "ports": [{"name": "http", "port": 80}]}]},
        "jobs": {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
                 "spec": {"backoffLimit": 1, "template": {**template, "spec": {**template["spec"],
                                                                              "restartPolicy": "Never"}}}},
        "cronjobs": {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta,
                     "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {
                         **template, "spec": {**template["spec"], "restartPolicy": "Never"}}}}}},
        "leases": {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                   "spec": {"holderIdentity": "x", "leaseDurationSeconds": 10}},
        "horizontalpodautoscalers": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                                     "metadata": meta,
                                     "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                                                 "name": name},
                                              "minReplicas": 1, "maxReplicas": 3}},
        "ingresses": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
                      "spec": {"rules": [{"host": "a.example", "http": {"paths": [
                          {"path": "/", "pathType": "Prefix",
                           "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}},
    })


# --- values that do not belong ----------------------------------------------------------------------
HUGE_INTS = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, 2**31, -1, 0, 10**400])
ODD_STRINGS = st.sampled_from(["", "-1", "abc", "1e400", "0x10", " ", "\u0000", "a/b", "🙂", "../..", "*", "100Mi",
                               "nan", "a" * 300])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), HUGE_INTS,
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20), ODD_STRINGS)
# one level of nesting is enough to be the wrong type anywhere (and recursive strategies cost ~3x to draw)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=8), SCALARS, max_size=3),
                   st.lists(st.dictionaries(st.text(max_size=4), SCALARS, max_size=2), max_size=2))


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out += _paths(value, (*prefix, i))
    return out


def _set(obj: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = dict(obj) if isinstance(obj, dict) else list(obj)
    if not rest and delete:
        del copy[head]
    elif not rest:
        copy[head] = value  # a new key too
    else:
        copy[head] = _set(copy[head], rest, value, delete)
    return copy


@st.composite
def mutated(draw: st.DrawFn, seed: dict[str, Any]) -> Any:
    """The seed with one to three fields replaced by wrong-typed values, removed, or joined by unknown ones."""
    obj: Any = seed
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(obj)
        path = draw(st.sampled_from(paths))
        how = draw(st.sampled_from(["replace", "replace", "delete", "unknown"]))
        if how == "delete" and path:
            obj = _set(obj, path, None, delete=True)
        elif how == "unknown" and isinstance(_get(obj, path), dict):
            obj = _set(obj, (*path, draw(st.text(min_size=1, max_size=8))), draw(VALUES)) if path else \
                {**obj, draw(st.text(min_size=1, max_size=8)): draw(VALUES)}
        else:
            obj = _set(obj, path, draw(VALUES))
    return obj


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        obj = obj[part]
    return obj


def depth_bomb(depth: int) -> bytes:
    return b'{"metadata":' * depth + b"{}" + b"}" * depth


def encode(body: Any) -> bytes:
    """JSON, with Python's spelling of what JSON has no spelling for (NaN, Infinity) left in."""
    try:
        return jsonc.dumps(body)
    except (TypeError, ValueError):
        return json.dumps(body, allow_nan=True).encode()


RAW_BODIES = st.one_of(st.binary(max_size=64), st.text(max_size=64).map(str.encode),
                       st.sampled_from([b"NaN", b'{"spec": NaN}', b'{"metadata": {"name": Infinity}}', b"[]", b"null",
                                        b'"x"', b"1", b'{"a":"\\ud800"}', b"{" * 5000, b"[" * 100_000,
                                        depth_bomb(2000), depth_bomb(200), b"apiVersion: v1\nkind: Pod\n",
                                        b'{"metadata": {"name": "x"}, "metadata": 1}', b"\xff\xfe"]))
PARAM_VALUES = st.one_of(st.text(max_size=30), st.sampled_from(
    ["-1", "abc", "0", "1", "1.5", "true", "maybe", "9" * 30, "Exact", "NotOlderThan", "All", "x=", "=x", "a in (",
     "!!", "a,b", "metadata.name=x", "spec.nodeName!=", "status.phase=Running", "a==b==c", "Orphan", "Nope",
     "%00", "inf", "nan", "-0", "1e3"]))


@dataclass
class Target:
    """What the fuzz may touch: `ns` holds the snapshot objects (by plural, name); writes to them are
    dry runs; `scratch` is a namespace where creates may land."""

    base: str
    ns: str
    scratch: str
    existing: dict[str, str]  # plural -> name of a snapshot object in `ns`
    dry_creates: bool = False  # on a real cluster a valid fuzzed Deployment would start real containers


@dataclass
class Request:
    method: str
    url: str
    params: dict[str, str] = field(default_factory=dict)
    content: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    watch: bool = False
    expect: tuple[str, str] | None = None  # (apiVersion, kind) an accepted write must answer with


def requests(target: Target) -> st.SearchStrategy[list[Request]]:
    """Each drawn case is sent several ways (drawing is the slow part: ~10 ms a case, sending ~1 ms):
    a bad manifest as a create, a replace and two kinds of patch; bad parameters on a list, an
    all-namespaces list, a delete and a create."""
    seeds = base_manifests(target.ns, "fuzzed")
    plurals = st.sampled_from(sorted(seeds))
    params = st.dictionaries(st.sampled_from(QUERY_KEYS), PARAM_VALUES, min_size=1, max_size=4)
    json_body = {"Content-Type": "application/json"}
    dry_create = {"dryRun": "All"} if target.dry_creates else {}

    def coll(ns: str, plural: str) -> str:
        return f"/api/v1/namespaces/{ns}/{plural}" if seeds[plural]["apiVersion"] == "v1" else \
            f"/apis/{seeds[plural]['apiVersion']}/namespaces/{ns}/{plural}"

    def existing(plural: str) -> str:
        return f"{coll(target.ns, plural)}/{target.existing[plural]}"

    @st.composite
    def manifest(draw: st.DrawFn) -> list[Request]:
        """A mutated manifest: created in the scratch namespace (or under a taken name), and sent as a
        replacement and as a patch of the snapshot object (dry runs)."""
        plural = draw(st.sampled_from(sorted(target.existing)))
        name = draw(st.sampled_from(["fuzzed", target.existing[plural]]))
        ns = draw(st.sampled_from([target.scratch, target.ns]))
        body = draw(mutated(base_manifests(ns, name)[plural]))
        content = encode(body)
        patch_type = draw(st.sampled_from(PATCH_TYPES))
        return [Request("POST", coll(ns, plural), dry_create, content, json_body),
                Request("PUT", existing(plural), {"dryRun": "All"}, content, json_body),
                Request("PATCH", existing(plural), {"dryRun": "All"}, content,
                        {"Content-Type": "application/merge-patch+json"}),
                Request("PATCH", existing(plural), {"dryRun": "All"}, content, {"Content-Type": patch_type}),
                Request("PUT", f"{existing(plural)}/status", {"dryRun": "All"}, content, json_body),
                Request("PATCH", f"{existing(plural)}/status", {"dryRun": "All"}, content,
                        {"Content-Type": "application/merge-patch+json"})]

    @st.composite
    def patch(draw: st.DrawFn) -> list[Request]:
        """JSON patches and wrong-shaped patch bodies of every patch type (dry runs)."""
        plural = draw(st.sampled_from(sorted(target.existing)))
        body = draw(st.one_of(VALUES, st.lists(st.fixed_dictionaries(
            {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"]),
             "path": st.sampled_from(["/spec", "/metadata/name", "/metadata/labels/x", "/spec/containers/0",
                                      "/spec/containers/-", "/x/y", "", "/", "~", "/spec/containers/99",
                                      "/metadata", "/metadata/namespace", "/kind"]),
             "from": st.sampled_from(["/spec", "/metadata/labels", "/nope"]),
             "value": VALUES}), min_size=1, max_size=3)))
        content = encode(body)
        return [Request("PATCH", existing(plural), {"dryRun": "All"}, content, {"Content-Type": ctype})
                for ctype in PATCH_TYPES]

    @st.composite
    def query(draw: st.DrawFn) -> list[Request]:
        """Bad parameters on reads, a watch, a delete of a missing object and a create of a good one."""
        plural = draw(plurals)
        q = draw(params)
        watch = q.get("watch", "") in ("1", "t", "T", "TRUE", "true", "True")
        good = encode(base_manifests(target.scratch, "fuzz-param")[plural])
        return [Request("GET", coll(target.ns, plural), q, watch=watch),
                Request("GET", coll(target.ns, plural).replace(f"/namespaces/{target.ns}", ""), q, watch=watch),
                Request("GET", f"{coll(target.ns, plural)}?watch=1", {**q, "watch": "1"}, watch=True),
                Request("DELETE", f"{coll(target.scratch, plural)}/missing-x", q),
                Request("POST", coll(target.scratch, plural), {**q, "dryRun": "All"}, good, json_body)]

    @st.composite
    def raw(draw: st.DrawFn) -> list[Request]:
        """Bodies that are not a manifest at all, with every content type, to every write verb."""
        plural = draw(st.sampled_from(sorted(target.existing)))
        content = draw(RAW_BODIES)
        ctype = draw(st.sampled_from(BODY_TYPES + PATCH_TYPES))
        headers = {"Content-Type": ctype} if ctype else {}
        return [Request("POST", coll(target.scratch, plural), dry_create, content, headers),
                Request("PUT", existing(plural), {"dryRun": "All"}, content, headers),
                Request("PATCH", existing(plural), {"dryRun": "All"}, content, headers),
                Request("DELETE", f"{coll(target.scratch, plural)}/missing-x", {}, content, headers)]

    @st.composite
    def odd_path(draw: st.DrawFn) -> list[Request]:
        """URLs the routes do not expect; every verb but GET a dry run, and no path names a snapshot object."""
        seg = st.one_of(st.sampled_from(["pods", "status", "binding", "scale", "log", "exec", "x", "..", "%2F",
                                         "namespaces", "v1", "", "apps", "nodes"]), st.text("abc-./%", max_size=6))
        parts = draw(st.lists(seg, min_size=1, max_size=6))
        prefix = draw(st.sampled_from(["/api/v1/", f"/api/v1/namespaces/{target.ns}/", "/apis/apps/v1/",
                                       "/apis/", "/api/", f"/apis/apps/v1/namespaces/{target.scratch}/"]))
        content = encode(draw(VALUES))
        path = prefix + "/".join(parts)
        return [Request(method, path, {} if method == "GET" else {"dryRun": "All"},
                        b"" if method == "GET" else content, json_body)
                for method in ("GET", "POST", "PUT", "PATCH")]

    def tagged(reqs: list[Request]) -> list[Request]:
        """What kind an accepted write must answer with: the kind its URL serves (collection or object)."""
        for req in reqs:
            _, _, rest = req.url.partition("/namespaces/")
            parts = rest.split("?", 1)[0].split("/")
            if req.method in ("POST", "PUT", "PATCH") and len(parts) in (2, 3) and parts[1] in seeds:
                seed = seeds[parts[1]]
                if seed["apiVersion"] == "v1" and req.url.startswith("/api/v1/") or \
                        req.url.startswith(f"/apis/{seed['apiVersion']}/"):
                    req.expect = (seed["apiVersion"], seed["kind"])
        return reqs

    return st.one_of(manifest(), manifest(), patch(), query(), raw(), odd_path()).map(tagged)


# --- running ----------------------------------------------------------------------------------------
@dataclass
class Outcome:
    sent: int = 0
    by_code: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, req: Request, code: int, text: str) -> None:
        problem = _problem(req, code, text)
        with self.lock:
            self.sent += 1
            self.by_code[code] = self.by_code.get(code, 0) + 1
            if problem:
                self.failures.append(f"{req.method} {req.url} {req.params} {req.headers} "
                                     f"{req.content[:200]!r} -> {code} {problem}: {text[:300]}")


def _problem(req: Request, code: int, text: str) -> str:
    """Why this answer breaks the property, or "": no 5xx; a refusal is a Status with a message; an
    accepted write answers with the URL's kind and only integers a Go client can decode."""
    if code >= 500:
        return "server error"
    if 400 <= code < 500:
        return "" if _is_status(text) else "refusal without a Status"
    if req.expect is None or code >= 300:
        return ""
    body = json.loads(text)
    if (body.get("apiVersion"), body.get("kind")) != req.expect:
        return f"accepted as another kind: {body.get('apiVersion')}/{body.get('kind')}, not {req.expect}"
    causes = int_range_causes(body)
    return f"accepted an integer out of range: {causes[0]}" if causes else ""


def _is_status(text: str) -> bool:
    """A refusal is a Status with a message (kube-apiserver's shape), or a routing 404/405."""
    try:
        body = json.loads(text)
    except ValueError:
        return False
    return isinstance(body, dict) and (
        (body.get("kind") == "Status" and bool(body.get("message"))) or body.get("detail") is not None)


class Sender:
    """One persistent connection per worker thread."""

    def __init__(self, base: str, headers: dict[str, str], verify: Any = True) -> None:
        self.base, self.headers, self.verify = base, headers, verify
        self.local = threading.local()
        self.clients: list[httpx.Client] = []

    def client(self) -> httpx.Client:
        c = getattr(self.local, "client", None)
        if c is None:
            c = httpx.Client(base_url=self.base, headers=self.headers, verify=self.verify, timeout=60)
            self.local.client = c
            self.clients.append(c)
        return c

    def send(self, req: Request, outcome: Outcome) -> None:
        c = self.client()
        try:
            with c.stream(req.method, req.url, params=req.params, content=req.content or None,
                          headers=req.headers) as resp:
                if req.watch and resp.status_code == 200:
                    text = ""  # a watch that started: nothing to judge but that it started
                else:
                    text = resp.read().decode("utf-8", "replace")
            outcome.record(req, resp.status_code, text)
        except httpx.HTTPError as exc:  # a dropped connection is a failure too (a crash behind it)
            outcome.record(req, 599, f"{type(exc).__name__}: {exc}")
            self.local.client = None

    def close(self) -> None:
        for c in self.clients:
            c.close()


def run_fuzz(target: Target, headers: dict[str, str], total: int, verify: Any = True) -> tuple[Outcome, float]:
    """Send at least `total` generated requests; returns what came back and how long it took."""
    outcome = Outcome()
    sender = Sender(target.base, headers, verify)
    pool = ThreadPoolExecutor(WORKERS)
    examples = -(-total // (BATCH * MIN_FAN_OUT))

    # every failure is collected (the caller asserts there are none) rather than shrunk: a shrinking run
    # re-sends batches for minutes, and the failing requests are printed whole anyway
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.generate])
    @given(st.lists(requests(target), min_size=BATCH, max_size=BATCH))
    def batch(cases: list[list[Request]]) -> None:
        list(pool.map(lambda r: sender.send(r, outcome), [r for case in cases for r in case]))

    started = time.monotonic()
    try:
        batch()
    finally:
        pool.shutdown()
        sender.close()
    return outcome, time.monotonic() - started


def intent(obj: dict[str, Any]) -> dict[str, Any]:
    """What a user wrote of an object: all but its status and resourceVersion (on a live cluster the
    controllers go on writing status while the fuzz runs)."""
    meta = {key: value for key, value in obj["metadata"].items() if key not in ("resourceVersion", "managedFields")}
    return {**{key: value for key, value in obj.items() if key != "status"}, "metadata": meta}
