"""Decoding the protobuf TokenRequest kubectl sends (bytes captured from `kubectl create token robot
--duration 15m --audience minik8s --audience vault --bound-object-kind Pod --bound-object-name web
--bound-object-uid abc`, kubectl 1.32)."""

from __future__ import annotations

import pytest

from minik8s.apiserver import protobuf
from minik8s.errors import BadRequest

KUBECTL_BODY = bytes.fromhex(
    "6b3873000a280a1861757468656e7469636174696f6e2e6b38732e696f2f7631120c546f6b656e5265717565737412420a100a0012001a0022002a0032003800420012280a076d696e696b38730a057661756c741a130a03506f64120276311a0377656222036162632084071a040a0012001a002200")


def test_kubectl_token_request_decodes() -> None:
    assert protobuf.decode(KUBECTL_BODY) == {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": ["minik8s", "vault"], "expirationSeconds": 900,
                 "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "abc"}}}


def test_garbage_is_refused() -> None:
    with pytest.raises(BadRequest):
        protobuf.decode(b"{}")
    with pytest.raises(BadRequest):
        protobuf.decode(KUBECTL_BODY[:40])
