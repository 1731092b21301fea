"""The protobuf request bodies kubectl's generators send, decoded into the objects kubectl meant.

Each fixture pair in data/kubectl_protobuf was recorded from kubectl 1.32 itself: NAME.pb is the body of
``kubectl create ... --dry-run=server -v=9`` (the bytes kubectl's protobuf encoder wrote), NAME.json the
output of the same command with ``--dry-run=client -o json`` (the same object through kubectl's JSON
encoder). So the field numbers are checked against Kubernetes' own encoder, not against our reading of
the .proto files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from minik8s.apiserver import protobuf
from minik8s.errors import BadRequest, UnsupportedMediaType

DATA = Path(__file__).parent / "data" / "kubectl_protobuf"
CASES = sorted(p.stem for p in DATA.glob("*.pb"))


def _without_empties(value: Any) -> Any:
    """JSON as Go writes it minus what omitempty/null leaves out anyway ({}, null, "", [] and status)."""
    if isinstance(value, dict):
        kept = {k: _without_empties(v) for k, v in value.items() if k != "status"}
        return {k: v for k, v in kept.items() if v not in ({}, None, [], "")}
    if isinstance(value, list):
        return [_without_empties(v) for v in value]
    return value


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _field(1, api_version.encode()) + _field(2, kind.encode())
    return protobuf.MAGIC + _field(1, type_meta) + _field(2, raw)


#: Kinds whose bodies are built by hand in tests/unit/test_rbac.py and sent by kubectl itself in
#: tests/e2e/test_rbac.py (`kubectl create role|rolebinding ...`, `kubectl auth can-i|whoami`), and the TokenRequest
#: kubectl sent in tests/unit/test_protobuf_token_request.py; not recorded here.
HAND_BUILT = {(api_version, kind) for api_version, kind in protobuf.KINDS
              if api_version in ("rbac.authorization.k8s.io/v1", "authorization.k8s.io/v1",
                                 "authentication.k8s.io/v1")}


def test_every_kind_served_has_a_recorded_fixture() -> None:
    recorded = {(json.loads((DATA / f"{c}.json").read_text())["apiVersion"],
                 json.loads((DATA / f"{c}.json").read_text())["kind"]) for c in CASES}
    assert recorded == protobuf.KINDS - HAND_BUILT


@pytest.mark.parametrize("case", CASES)
def test_kubectl_body_decodes_to_the_object_kubectl_meant(case: str) -> None:
    decoded = protobuf.decode((DATA / f"{case}.pb").read_bytes())
    expected = json.loads((DATA / f"{case}.json").read_text())
    assert _without_empties(decoded) == _without_empties(expected)


def test_a_pointer_field_keeps_its_zero_and_a_plain_zero_is_dropped() -> None:
    deployment = protobuf.decode((DATA / "create_deployment_web.pb").read_bytes())
    assert deployment["spec"]["replicas"] == 0  # *int32: 0 means "no pods", not "default"
    assert "generation" not in deployment["metadata"]  # written as 0 by Go, absent in JSON
    assert "namespace" not in deployment["metadata"]


def test_binary_values_come_back_base64_as_in_json() -> None:
    cm = protobuf.decode((DATA / "create_configmap_settings.pb").read_bytes())
    assert cm["data"] == {"mode": "fast"}
    assert set(cm["binaryData"]) == {"blob"}


def test_an_unmodelled_field_with_a_value_is_refused_by_number() -> None:
    meta = _field(1, b"x")
    body = _envelope("v1", "ConfigMap", _field(1, meta) + _field(9, b"surprise"))
    with pytest.raises(UnsupportedMediaType, match="protobuf field 9 of ConfigMap"):
        protobuf.decode(body)


def test_an_unmodelled_field_holding_a_zero_is_ignored() -> None:
    body = _envelope("v1", "ConfigMap", _field(1, _field(1, b"x") + _field(15, b"")) + _field(9, 0))
    assert protobuf.decode(body) == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}


def test_a_kind_without_a_table_is_a_415_naming_it() -> None:
    with pytest.raises(UnsupportedMediaType, match="for v1/Pod"):
        protobuf.decode(_envelope("v1", "Pod", b""))


def test_a_body_without_the_magic_is_a_400() -> None:
    with pytest.raises(BadRequest, match="magic"):
        protobuf.decode(b'{"kind": "ConfigMap"}')


def test_a_truncated_body_is_a_400() -> None:
    body = (DATA / "create_namespace_team-a.pb").read_bytes()
    with pytest.raises(BadRequest, match="past the end"):
        protobuf.decode(body[:-5])


def test_negative_int_and_int_or_string() -> None:
    port = _field(1, b"p") + _field(3, 80) + _field(4, _field(1, 1) + _field(3, b"http"))
    spec = _field(1, port) + _field(12, (1 << 64) - 1)  # healthCheckNodePort -1, as Go writes a negative int32
    svc = protobuf.decode(_envelope("v1", "Service", _field(1, _field(1, b"s")) + _field(2, spec)))
    assert svc["spec"]["ports"] == [{"name": "p", "port": 80, "targetPort": "http"}]
    assert svc["spec"]["healthCheckNodePort"] == -1
