"""Hypothesis against the live API (real etcd, the API server in-process, real HTTP): at least
FUZZ_REQUESTS generated bad manifests, patch bodies, query parameters and raw bodies; no 5xx, every
refusal a Status with a message, and the objects that were there before are unchanged."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx

from minik8s import Client, jsonc
from tests import apifuzz
from tests.conftest import TEST_TOKEN, uniq

FUZZ_REQUESTS = int(os.environ.get("MINIK8S_FUZZ_REQUESTS", "10000"))
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}

log = logging.getLogger(__name__)


def seed_objects(http: httpx.Client, ns: str) -> dict[str, str]:
    """One object of each fuzzed kind in `ns`; returns plural -> its URL."""
    urls = {}
    for plural, manifest in apifuzz.base_manifests(ns, uniq("keep")).items():
        coll = f"/api/v1/namespaces/{ns}/{plural}" if manifest["apiVersion"] == "v1" else \
            f"/apis/{manifest['apiVersion']}/namespaces/{ns}/{plural}"
        r = http.post(coll, json=manifest)
        assert r.status_code == 201, (plural, r.text)
        urls[plural] = f"{coll}/{manifest['metadata']['name']}"
    return urls


def test_ten_thousand_bad_requests_get_no_5xx_and_change_nothing(apiserver: str, client: Client) -> None:
    ns, scratch = uniq("fuzz"), uniq("fuzz-scratch")
    for name in (ns, scratch):
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    with httpx.Client(base_url=apiserver, headers=AUTH, timeout=60) as http:
        urls = seed_objects(http, ns)
        before = {url: http.get(url).json() for url in urls.values()}
        target = apifuzz.Target(apiserver, ns, scratch, {p: u.rsplit("/", 1)[1] for p, u in urls.items()})
        outcome, seconds = apifuzz.run_fuzz(target, AUTH, FUZZ_REQUESTS)
        after = {url: http.get(url).json() for url in urls.values()}
    log.warning("fuzz: %d requests in %.1f s (%.0f/s), by status: %s", outcome.sent, seconds,
                outcome.sent / seconds, dict(sorted(outcome.by_code.items())))
    if os.environ.get("MINIK8S_FUZZ_REPORT"):  # every failing request, for whoever fixes them
        Path(os.environ["MINIK8S_FUZZ_REPORT"]).write_text("\n".join(outcome.failures))
    assert not outcome.failures, "\n".join(outcome.failures[:10])
    assert outcome.sent >= FUZZ_REQUESTS
    assert after == before  # no write reached an object that existed before
    assert sum(n for code, n in outcome.by_code.items() if 400 <= code < 500) > outcome.sent // 2


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "named"},
       "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
NAMED = [  # (method, path under the namespace, params, body, status, what the message must name)
    ("POST", "pods", {}, {**POD, "metadata": "x"}, 422, "metadata: Invalid value"),
    ("POST", "pods", {}, {**POD, "spec": []}, 422, "spec: Invalid value"),
    ("POST", "pods", {}, {**POD, "metadata": {"name": 7}}, 422, "metadata.name"),
    ("POST", "pods", {}, {**POD, "kind": "Service"}, 400, "this URL serves v1/Pod"),
    ("POST", "pods", {}, [POD], 400, "must be a JSON object"),
    ("POST", "pods", {}, {**POD, "spec": {**POD["spec"], "terminationGracePeriodSeconds": 2**63}}, 422,
     "spec.terminationGracePeriodSeconds"),
    ("POST", "pods", {}, b'{"spec": NaN}', 400, "not valid JSON"),
    ("POST", "pods", {}, b'{"metadata":' * 2000 + b"{}" + b"}" * 2000, 400, "not valid JSON"),
    ("PUT", "pods/named", {}, {**POD, "metadata": {"name": "other"}}, 400, "does not match the name in the URL"),
    ("PUT", "pods/named", {}, {**POD, "metadata": {"name": "named", "resourceVersion": "abc"}}, 422,
     "metadata.resourceVersion"),
    ("PUT", "pods/named", {}, {**POD, "apiVersion": "apps/v1"}, 400, "this URL serves v1/Pod"),
    ("PATCH", "pods/named", {}, b'{"metadata": "x"}', 422, "metadata: Invalid value"),
    ("PATCH", "pods/named", {}, b'[{"op": "replace", "path": "/spec", "value": 1}]', 422, "spec"),
    ("POST", "pods/named/binding", {}, {"target": {"name": 5}}, 422, "target.name"),
    ("GET", "pods", {"resourceVersion": "abc"}, None, 400, "resourceVersion"),
    ("GET", "pods", {"limit": "-1"}, None, 400, "limit"),
    ("GET", "pods", {"limit": "abc"}, None, 400, "limit"),
    ("GET", "pods", {"labelSelector": "a in ("}, None, 400, "label selector"),
    ("GET", "pods", {"fieldSelector": "spec.nope=1"}, None, 400, "spec.nope"),
    ("GET", "pods", {"watch": "true", "timeoutSeconds": "abc"}, None, 400, "timeoutSeconds"),
    ("GET", "pods", {"watch": "maybe"}, None, 400, "watch"),
    ("DELETE", "pods/missing", {"gracePeriodSeconds": "abc"}, None, 400, "gracePeriodSeconds"),
    ("DELETE", "pods/missing", {"propagationPolicy": "Sometimes"}, None, 400, "propagationPolicy"),
]


def test_wrong_typed_fields_and_parameters_are_named(apiserver: str, client: Client) -> None:
    ns = uniq("named")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    with httpx.Client(base_url=f"{apiserver}/api/v1/namespaces/{ns}/", headers=AUTH, timeout=30) as http:
        created = http.post("pods", json=POD).json()
        for method, path, params, body, status, named in NAMED:
            content = body if isinstance(body, bytes) or body is None else jsonc.dumps(body)
            ctype = "application/merge-patch+json" if method == "PATCH" and not content.startswith(b"[") else \
                "application/json-patch+json" if method == "PATCH" else "application/json"
            r = http.request(method, path, params=params, content=content, headers={"Content-Type": ctype})
            assert r.status_code == status, (method, path, params, r.text[:300])
            assert r.json()["kind"] == "Status" and named in r.json()["message"], (method, path, r.text[:300])
        assert http.get("pods/named").json() == created  # none of it changed the pod
