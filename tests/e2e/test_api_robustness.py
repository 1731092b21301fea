"""The API refuses what it cannot serve, on the real cluster: a 4 MiB body gets 413 (over HTTP and
through `minik8s apply`), and the hypothesis fuzz (tests/apifuzz.py) throws generated bad manifests,
patches, parameters and raw bodies at the live API: no 5xx, no change to the objects that were there.
Every write the fuzz sends on the cluster is a dry run, so no fuzzed workload starts containers."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from minik8s import Client
from tests import apifuzz
from tests.e2e.conftest import run, unique

FUZZ_REQUESTS = int(os.environ.get("MINIK8S_FUZZ_REQUESTS", "10000"))
BIG_BODY_BYTES = 4 * 1024 * 1024
SETTLE_TIMEOUT_S = 60.0
SETTLE_INTERVAL_S = 3.0
NO_NODE = {"minik8s.io/fuzz": "no-such-node"}  # a nodeSelector no node matches

log = logging.getLogger(__name__)


@pytest.fixture
def http(client: Client) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=client.server, headers=client._headers, verify=client._verify, timeout=60) as c:
        yield c


@pytest.fixture
def namespace(client: Client) -> Iterator[str]:
    name = unique("robust")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    client.delete("Namespace", name, None)


def test_four_mib_body_is_413_over_http_and_one_line_in_the_cli(http: httpx.Client, namespace: str,
                                                                  tmp_path: Path) -> None:
    blob = "x" * BIG_BODY_BYTES
    r = http.post(f"/api/v1/namespaces/{namespace}/configmaps",
                  json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"b": blob}})
    assert r.status_code == 413, r.text[:300]
    assert r.json()["reason"] == "RequestEntityTooLarge"
    manifest = tmp_path / "big.yaml"
    manifest.write_text(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata: {{b: {blob}}}\n")
    proc = run("apply", "-f", str(manifest), "-n", namespace, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "too large" in lines[0], proc.stderr[:500]
    assert http.get(f"/api/v1/namespaces/{namespace}/configmaps/big").status_code == 404


def settled(http: httpx.Client, urls: list[str]) -> dict[str, Any]:
    """The objects once controllers have stopped changing them (a Deployment's revision annotation)."""
    def read() -> dict[str, Any]:
        return {url: apifuzz.intent(http.get(url).json()) for url in urls}

    previous = read()
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        time.sleep(SETTLE_INTERVAL_S)
        current = read()
        if current == previous:
            return current
        previous = current
    raise AssertionError(f"the snapshot objects kept changing for {SETTLE_TIMEOUT_S}s")


def test_fuzzed_requests_get_no_5xx_and_change_nothing(client: Client, http: httpx.Client, namespace: str) -> None:
    scratch = unique("robust-scratch")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": scratch}})
    try:
        urls = {}
        for plural, manifest in apifuzz.base_manifests(namespace, unique("keep")).items():
            if plural == "endpoints":  # the endpoints controller owns the one named after the Service
                continue
            coll = f"/api/v1/namespaces/{namespace}/{plural}" if manifest["apiVersion"] == "v1" else \
                f"/apis/{manifest['apiVersion']}/namespaces/{namespace}/{plural}"
            # the snapshot's workloads run nothing: scaled to zero, suspended, or for no node
            if plural in ("deployments", "replicasets"):
                manifest["spec"]["replicas"] = 0
            if plural == "daemonsets":
                manifest["spec"]["template"]["spec"]["nodeSelector"] = NO_NODE
            if plural == "pods":
                manifest["spec"]["nodeSelector"] = NO_NODE
            if plural in ("jobs", "cronjobs"):
                manifest["spec"]["suspend"] = True
            if plural == "horizontalpodautoscalers":  # it would scale the snapshot's Deployment
                manifest["spec"]["scaleTargetRef"]["name"] = "no-such-deployment"
            r = http.post(coll, json=manifest)
            assert r.status_code == 201, (plural, r.text)
            urls[plural] = f"{coll}/{manifest['metadata']['name']}"
        before = settled(http, list(urls.values()))
        target = apifuzz.Target(client.server, namespace, scratch, {p: u.rsplit("/", 1)[1] for p, u in urls.items()},
                                dry_creates=True)
        outcome, seconds = apifuzz.run_fuzz(target, dict(client._headers), FUZZ_REQUESTS, verify=client._verify)
        after = {url: apifuzz.intent(http.get(url).json()) for url in urls.values()}
    finally:
        client.delete("Namespace", scratch, None)
    log.warning("fuzz on the cluster: %d requests in %.1f s (%.0f/s), by status: %s", outcome.sent, seconds,
                outcome.sent / seconds, dict(sorted(outcome.by_code.items())))
    assert not outcome.failures, "\n".join(outcome.failures[:10])
    assert outcome.sent >= FUZZ_REQUESTS
    assert after == before  # status aside (controllers write it), every object is as it was
    assert http.get("/readyz").status_code == 200
