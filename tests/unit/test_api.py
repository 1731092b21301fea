"""Quantities, selectors, validation and the kinds table: pure logic."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from minik8s.api import kinds, printers
from minik8s.api import types as t
from minik8s.api.quantity import QuantityError, cpu_millis, format_cpu, format_memory, memory_bytes
from minik8s.api.selectors import labels_match, parse_field_selector, parse_label_selector, selector_from_match
from minik8s.api.validation import pydantic_causes, validate_pod
from minik8s.apiserver.resources import merge_patch
from minik8s.errors import BadRequest, NotFound


@pytest.mark.parametrize("text, millis", [("100m", 100), ("1", 1000), ("0.5", 500), (2, 2000), ("1.5", 1500),
                                          ("250m", 250), ("1e0", 1000)])
def test_cpu(text: str, millis: int) -> None:
    assert cpu_millis(text) == millis


@pytest.mark.parametrize("text, nbytes", [("128Mi", 128 * 2**20), ("1Gi", 2**30), ("1G", 10**9), ("512", 512),
                                          ("1k", 1000), ("1.5Ki", 1536)])
def test_memory(text: str, nbytes: int) -> None:
    assert memory_bytes(text) == nbytes


@pytest.mark.parametrize("bad", ["lots", "1.2.3", "Mi", "-1", "1Qi", "", "1e3Mi", True])
def test_bad_quantities(bad: object) -> None:
    with pytest.raises(QuantityError):
        cpu_millis(bad)  # type: ignore[arg-type]


def test_formatting() -> None:
    assert format_cpu(2000) == "2" and format_cpu(250) == "250m"
    assert format_memory(128 * 2**20) == "128Mi" and format_memory(1000) == "1000"


def test_label_selectors() -> None:
    labels = {"app": "web", "tier": "front", "env": "prod"}
    assert labels_match(parse_label_selector("app=web,tier!=db"), labels)
    assert labels_match(parse_label_selector("env in (prod, staging),!canary,app"), labels)
    assert not labels_match(parse_label_selector("env notin (prod)"), labels)
    assert not labels_match(parse_label_selector("missing"), labels)
    assert labels_match(parse_label_selector(""), labels)
    assert labels_match(selector_from_match({"matchLabels": {"app": "web"},
                                             "matchExpressions": [{"key": "tier", "operator": "In",
                                                                   "values": ["front"]}]}), labels)
    with pytest.raises(BadRequest):
        parse_label_selector("a=(b")


def test_field_selectors() -> None:
    obj = {"metadata": {"name": "x"}, "spec": {"nodeName": "node-1"}}
    assert parse_field_selector("spec.nodeName=node-1")(obj)
    assert not parse_field_selector("spec.nodeName!=node-1")(obj)
    assert parse_field_selector("spec.nodeName=")({"spec": {}})
    assert parse_field_selector("metadata.name==x,spec.nodeName=node-1")(obj)


def _pod(**container: object) -> t.Pod:
    return t.Pod.model_validate({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "image": "busybox", **container}]}})


def test_pod_validation_reports_field_paths() -> None:
    assert validate_pod(_pod()) == []
    causes = validate_pod(_pod(resources={"limits": {"cpu": "lots"}}))
    assert causes[0][0] == "spec.containers[0].resources.limits.cpu"
    causes = validate_pod(_pod(volumeMounts=[{"name": "nope", "mountPath": "/x"}]))
    assert causes[0][0] == "spec.containers[0].volumeMounts[0].name"
    causes = validate_pod(_pod(ports=[{"containerPort": 70000}]))
    assert "between 1 and 65535" in causes[0][1]
    causes = validate_pod(_pod(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}))
    assert "less than or equal" in causes[0][1]


def test_unknown_and_missing_fields_name_their_path() -> None:
    with pytest.raises(ValidationError) as info:
        t.Pod.model_validate({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "imagee": "x"}]}})
    assert ("spec.containers[0]", 'unknown field "imagee"') in pydantic_causes(info.value)
    with pytest.raises(ValidationError) as info:
        t.Pod.model_validate({"metadata": {"name": "p"}, "spec": {"containers": [{"image": "x"}]}})
    assert ("spec.containers[0].name", "Required value") in pydantic_causes(info.value)


def test_kinds_lookup_by_every_name() -> None:
    for alias in ("Pod", "pods", "pod", "po"):
        assert kinds.lookup(alias).kind == "Pod"
    assert kinds.lookup("no").kind == "Node" and kinds.lookup("ns").kind == "Namespace"
    assert kinds.lookup("leases.coordination.k8s.io").kind == "Lease"
    assert kinds.lookup("Pod").url("default", "x", "status") == "/api/v1/namespaces/default/pods/x/status"
    assert kinds.lookup("Lease").url("ns") == "/apis/coordination.k8s.io/v1/namespaces/ns/leases"
    with pytest.raises(NotFound):
        kinds.lookup("widgets")


def test_merge_patch() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": [1]}) == \
        {"a": 1, "b": {"d": 3, "e": 4}, "f": [1]}


def test_pod_table_columns() -> None:
    pod = {"metadata": {"name": "p", "creationTimestamp": "2020-01-01T00:00:00Z"},
           "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "node-1"},
           "status": {"phase": "Running", "podIP": "10.244.1.5", "containerStatuses": [
               {"name": "a", "ready": True, "restartCount": 2, "state": {"running": {}}},
               {"name": "b", "ready": False, "restartCount": 1,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}
    headers, rows = printers.table_rows(printers.POD_COLUMNS, [pod], wide=True)
    assert headers == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert rows[0][:4] == ["p", "1/2", "CrashLoopBackOff", "3"] and rows[0][5:] == ["10.244.1.5", "node-1"]
    assert printers.human_duration(59) == "59s" and printers.human_duration(3 * 3600) == "3h"
