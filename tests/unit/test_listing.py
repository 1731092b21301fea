"""List options without servers: field selector labels per kind, continue tokens, resourceVersionMatch rules."""

from __future__ import annotations

import base64
import json

import pytest

from minik8s.api.selectors import parse_field_selector
from minik8s.apiserver.listing import ListOptions, decode_continue, encode_continue
from minik8s.errors import BadRequest, Invalid

POD = {"metadata": {"name": "p", "namespace": "ns"},
       "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler"},
       "status": {"phase": "Running", "podIP": "10.244.1.5"}}


@pytest.mark.parametrize(("selector", "matches"), [
    ("spec.nodeName=n1", True), ("spec.nodeName==n1", True), ("spec.nodeName!=n1", False),
    ("status.phase=Running,status.podIP=10.244.1.5", True), ("metadata.namespace=other", False),
    ("spec.serviceAccountName=", True), ("status.nominatedNodeName!=", False), ("spec.hostNetwork=false", True),
])
def test_pod_field_labels(selector: str, matches: bool) -> None:
    assert parse_field_selector(selector, "Pod")(POD) is matches


def test_field_values_as_kubernetes_formats_them() -> None:
    assert parse_field_selector("spec.unschedulable=false", "Node")({"spec": {}})
    assert parse_field_selector("spec.unschedulable=true", "Node")({"spec": {"unschedulable": True}})
    assert parse_field_selector("status.replicas=0", "ReplicaSet")({"status": {}})
    assert parse_field_selector("status.successful=0", "Job")({"status": {}})
    event = {"involvedObject": {"kind": "Pod", "name": "a", "fieldPath": "spec.containers{main}"},
             "source": {"component": "kubelet"}, "type": "Warning", "reason": "BackOff"}
    assert parse_field_selector("involvedObject.fieldPath=spec.containers{main},source=kubelet,type=Warning",
                                "Event")(event)
    assert parse_field_selector("type=Opaque", "Secret")({"type": "Opaque"})
    assert parse_field_selector("reason=a\\,b", "Event")({"reason": "a,b"})


@pytest.mark.parametrize(("kind", "label"), [
    ("Pod", "spec.containers"), ("Service", "status.phase"), ("Deployment", "status.replicas"),
    ("Event", "message"), ("Node", "spec.nodeName"),
])
def test_unsupported_field_label(kind: str, label: str) -> None:
    with pytest.raises(BadRequest, match=f"^field label not supported: {label}$"):
        parse_field_selector(f"{label}=x", kind)


def test_malformed_field_selector() -> None:
    with pytest.raises(BadRequest, match="invalid field selector"):
        parse_field_selector("spec.nodeName", "Pod")


def test_continue_token_round_trip_and_shape() -> None:
    token = encode_continue(42, "ns/p-7\x00")
    assert decode_continue(token) == (42, "ns/p-7\x00")
    raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    assert raw == {"v": "meta.k8s.io/v1", "rv": 42, "start": "ns/p-7\x00"}  # Kubernetes' own token shape


@pytest.mark.parametrize("token", ["garbage", encode_continue(0, "x"), encode_continue(5, "/registry/x"),
                                   base64.urlsafe_b64encode(b'{"v":"other","rv":1,"start":"x"}').decode()])
def test_bad_continue_tokens(token: str) -> None:
    with pytest.raises(BadRequest, match="continue key is not valid"):
        decode_continue(token)


@pytest.mark.parametrize(("opts", "error", "message"), [
    (ListOptions(match="Exact"), Invalid, "unless resourceVersion is provided"),
    (ListOptions(resource_version="0", match="Exact"), Invalid, 'forbidden for resourceVersion "0"'),
    (ListOptions(resource_version="5", match="Newest"), Invalid, "Unsupported value"),
    (ListOptions(resource_version="5", match="Exact", continue_token="x"), Invalid, "when continue is provided"),
    (ListOptions(resource_version="5", continue_token="x"), BadRequest, "not allowed when using continue"),
])
def test_list_option_rules(opts: ListOptions, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        opts.validate()


def test_limit_must_be_a_number() -> None:
    with pytest.raises(BadRequest, match="invalid limit"):
        ListOptions.from_query({"limit": "ten"})
    assert ListOptions.from_query({"limit": "10", "continue": "t"}).limit == 10


def test_negative_limit_and_bad_resource_version_are_refused() -> None:
    with pytest.raises(BadRequest, match='invalid limit "-1": must be at least 0'):
        ListOptions.from_query({"limit": "-1"})
    with pytest.raises(BadRequest, match='invalid resourceVersion "abc"'):
        ListOptions.from_query({"resourceVersion": "abc"})
    with pytest.raises(BadRequest, match="out of the int64 range"):
        ListOptions.from_query({"limit": "9" * 30})
