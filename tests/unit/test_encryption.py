"""Encryption at rest: AES-GCM and AES-CBC values in Kubernetes' layout, key rotation, plaintext fallback."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import yaml

from minik8s.store import encryption
from minik8s.store.encryption import EncryptionError

KEY = b"/registry/secrets/default/s"
DATA = b'{"data":{"password":"aHVudGVyMg=="}}'


def _config(*providers: dict) -> dict:
    return {"apiVersion": encryption.API_VERSION, "kind": encryption.KIND,
            "resources": [{"resources": ["secrets"], "providers": list(providers)}]}


def _key(name: str, fill: int) -> dict:
    return {"name": name, "secret": base64.b64encode(bytes([fill]) * 32).decode()}


def _transformer(*providers: dict) -> encryption.ValueTransformer:
    return encryption.parse(_config(*providers), encryption.registry_prefix)


@pytest.mark.parametrize("kind", ["aesgcm", "aescbc"])
def test_secrets_are_sealed_other_kinds_untouched(kind: str) -> None:
    t = _transformer({kind: {"keys": [_key("k1", 1)]}}, {"identity": {}})
    sealed = t.to_storage(KEY, DATA)
    assert sealed.startswith(f"k8s:enc:{kind}:v1:k1:".encode()) and b"password" not in sealed
    assert t.from_storage(KEY, sealed) == DATA
    assert t.to_storage(b"/registry/configmaps/default/c", DATA) == DATA
    assert t.from_storage(KEY, DATA) == DATA  # written before encryption was on: identity reads it


def test_gcm_binds_the_value_to_its_key_and_detects_tampering() -> None:
    t = _transformer({"aesgcm": {"keys": [_key("k1", 1)]}})
    sealed = t.to_storage(KEY, DATA)
    with pytest.raises(EncryptionError, match="cannot decrypt"):
        t.from_storage(b"/registry/secrets/default/other", sealed)
    with pytest.raises(EncryptionError, match="cannot decrypt"):
        t.from_storage(KEY, sealed[:-1] + bytes([sealed[-1] ^ 1]))
    with pytest.raises(EncryptionError, match="no identity provider"):
        t.from_storage(KEY, DATA)


def test_rotation_new_key_writes_old_key_still_reads() -> None:
    old = _transformer({"aesgcm": {"keys": [_key("k1", 1)]}})
    sealed_old = old.to_storage(KEY, DATA)
    rotated = _transformer({"aesgcm": {"keys": [_key("k2", 2), _key("k1", 1)]}})
    assert rotated.to_storage(KEY, DATA).startswith(b"k8s:enc:aesgcm:v1:k2:")
    assert rotated.from_storage(KEY, sealed_old) == DATA
    dropped = _transformer({"aesgcm": {"keys": [_key("k2", 2)]}})
    with pytest.raises(EncryptionError, match=r"k8s:enc:aesgcm:v1:k1.*does not list"):
        dropped.from_storage(KEY, sealed_old)


@pytest.mark.parametrize(("providers", "why"), [
    ([], "at least one provider"),
    ([{"kms": {}}], "unsupported provider 'kms'"),
    ([{"aesgcm": {"keys": [{"name": "k", "secret": base64.b64encode(b"short").decode()}]}}], "AES needs 16, 24 or 32"),
    ([{"aesgcm": {"keys": [{"name": "k", "secret": "!!"}]}}], "not base64"),
    ([{"aesgcm": {"keys": []}}], "at least one key"),
])
def test_bad_configuration_names_the_field(providers: list, why: str) -> None:
    with pytest.raises(EncryptionError, match=why):
        encryption.parse(_config(*providers), encryption.registry_prefix)
    with pytest.raises(EncryptionError, match="unknown resource 'widgets'"):
        encryption.parse({**_config({"identity": {}}), "resources": [
            {"resources": ["widgets"], "providers": [{"identity": {}}]}]}, encryption.registry_prefix)


def test_ensure_config_makes_a_private_file_once(tmp_path: Path) -> None:
    path = encryption.ensure_config(encryption.config_path(tmp_path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_text()
    encryption.ensure_config(path)
    assert path.read_text() == first  # never replaces a key
    doc = yaml.safe_load(first)
    assert [list(p) for p in doc["resources"][0]["providers"]] == [["aesgcm"], ["identity"]]
    t = encryption.load(path)
    assert t.from_storage(KEY, t.to_storage(KEY, DATA)) == DATA
