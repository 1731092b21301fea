"""Encryption at rest: values of chosen kinds (Secrets) are encrypted before they reach etcd.

Configured as Kubernetes' EncryptionConfiguration (apiserver.config.k8s.io/v1), one file:

    resources:
      - resources: [secrets]
        providers:                      # the first writes; every one listed may read
          - aesgcm: {keys: [{name: key1, secret: <base64 of 32 random bytes>}]}
          - identity: {}                # reads values written before encryption was on

A stored value is `k8s:enc:aesgcm:v1:<key name>:<12-byte nonce><ciphertext and tag>` with the etcd key as
associated data (a value copied under another key does not decrypt), or `k8s:enc:aescbc:v1:<key name>:<16-byte
IV><PKCS#7-padded ciphertext>` for `aescbc` - the layouts kube-apiserver writes. Rotation: put a new key first
(it writes), keep the old one listed (it still reads), rewrite the objects, then drop the old key.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from minik8s.errors import MiniK8sError

ENC_PREFIX = b"k8s:enc:"
GCM_NONCE_BYTES = 12
CBC_IV_BYTES = 16
AES_BLOCK_BITS = 128
KEY_BYTES = 32  # AES-256
KEY_SIZES = (16, 24, 32)
API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"
DEFAULT_RESOURCES = ("secrets",)
DEFAULT_KEY_NAME = "key1"
CONFIG_FILE = "encryption-config.yaml"  # in the cluster's state dir, mode 0600 (it holds the keys)


class EncryptionError(MiniK8sError):
    """A value cannot be read (unknown key, tampered data) or the configuration is wrong; says which."""


class Provider(Protocol):
    @property
    def prefix(self) -> bytes:
        """What values it writes start with; b"" for identity."""

    def encrypt(self, key: bytes, data: bytes) -> bytes: ...

    def decrypt(self, key: bytes, data: bytes) -> bytes:
        """`data` without the prefix."""


class Identity:
    prefix = b""

    def encrypt(self, key: bytes, data: bytes) -> bytes:
        return data

    def decrypt(self, key: bytes, data: bytes) -> bytes:
        return data


@dataclass
class AesGcm:
    name: str
    secret: bytes

    @property
    def prefix(self) -> bytes:
        return f"k8s:enc:aesgcm:v1:{self.name}:".encode()

    def encrypt(self, key: bytes, data: bytes) -> bytes:
        nonce = os.urandom(GCM_NONCE_BYTES)
        return self.prefix + nonce + AESGCM(self.secret).encrypt(nonce, data, key)

    def decrypt(self, key: bytes, data: bytes) -> bytes:
        nonce, sealed = data[:GCM_NONCE_BYTES], data[GCM_NONCE_BYTES:]
        try:
            return AESGCM(self.secret).decrypt(nonce, sealed, key)
        except Exception as exc:  # InvalidTag: wrong key, tampered value, or copied under another key
            raise EncryptionError(f"cannot decrypt {key.decode(errors='replace')} with key {self.name!r}: "
                                  f"{type(exc).__name__}") from None


@dataclass
class AesCbc:
    name: str
    secret: bytes

    @property
    def prefix(self) -> bytes:
        return f"k8s:enc:aescbc:v1:{self.name}:".encode()

    def encrypt(self, key: bytes, data: bytes) -> bytes:
        iv = os.urandom(CBC_IV_BYTES)
        padder = padding.PKCS7(AES_BLOCK_BITS).padder()
        enc = Cipher(algorithms.AES(self.secret), modes.CBC(iv)).encryptor()
        return self.prefix + iv + enc.update(padder.update(data) + padder.finalize()) + enc.finalize()

    def decrypt(self, key: bytes, data: bytes) -> bytes:
        iv, body = data[:CBC_IV_BYTES], data[CBC_IV_BYTES:]
        try:
            dec = Cipher(algorithms.AES(self.secret), modes.CBC(iv)).decryptor()
            unpadder = padding.PKCS7(AES_BLOCK_BITS).unpadder()
            return unpadder.update(dec.update(body) + dec.finalize()) + unpadder.finalize()
        except ValueError as exc:
            raise EncryptionError(f"cannot decrypt {key.decode(errors='replace')} with key {self.name!r}: "
                                  f"{exc}") from None


@dataclass
class Rule:
    """Providers for the keys under `prefixes`: the first writes, any whose prefix a value carries reads it."""

    prefixes: tuple[str, ...]
    providers: list[Provider]

    def write(self, key: bytes, data: bytes) -> bytes:
        return self.providers[0].encrypt(key, data)

    def stale(self, data: bytes) -> bool:
        """Stored otherwise than a write would store it now (an older key, or before encryption)."""
        prefix = self.providers[0].prefix
        return not data.startswith(prefix) if prefix else data.startswith(ENC_PREFIX)

    def read(self, key: bytes, data: bytes) -> bytes:
        for provider in self.providers:
            if provider.prefix and data.startswith(provider.prefix):
                return provider.decrypt(key, data[len(provider.prefix):])
        if data.startswith(ENC_PREFIX):
            label = b":".join(data.split(b":", 5)[:5]).decode(errors="replace")  # k8s:enc:<type>:v1:<key>
            raise EncryptionError(f"{key.decode(errors='replace')} is encrypted ({label}) with a key the "
                                  "encryption configuration does not list")
        if any(isinstance(p, Identity) for p in self.providers):
            return data
        raise EncryptionError(f"{key.decode(errors='replace')} is stored unencrypted and the encryption "
                              "configuration lists no identity provider to read it")


@dataclass
class ValueTransformer:
    """What the store applies to every value it writes and reads: by etcd key, the matching rule or nothing."""

    rules: list[Rule] = field(default_factory=list)

    def _rule(self, key: bytes) -> Rule | None:
        text = key.decode(errors="replace")
        return next((r for r in self.rules if text.startswith(r.prefixes)), None)

    def to_storage(self, key: bytes, data: bytes) -> bytes:
        rule = self._rule(key)
        return rule.write(key, data) if rule else data

    def from_storage(self, key: bytes, data: bytes) -> bytes:
        rule = self._rule(key)
        if rule is None:
            return data
        return rule.read(key, data)

    def stale(self, key: bytes, data: bytes) -> bool:
        rule = self._rule(key)
        return rule is not None and rule.stale(data)


def _secret(raw: Any, where: str) -> bytes:
    try:
        secret = base64.b64decode(str(raw), validate=True)
    except ValueError:
        raise EncryptionError(f"{where}.secret: not base64") from None
    if len(secret) not in KEY_SIZES:
        raise EncryptionError(f"{where}.secret: {len(secret)} bytes; AES needs 16, 24 or 32")
    return secret


def _providers(raw: list[Any], where: str) -> list[Provider]:
    providers: list[Provider] = []
    for i, entry in enumerate(raw or []):
        path = f"{where}.providers[{i}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise EncryptionError(f"{path}: one of aesgcm, aescbc or identity")
        (kind, body), = entry.items()
        if kind == "identity":
            providers.append(Identity())
            continue
        if kind not in ("aesgcm", "aescbc"):
            raise EncryptionError(f"{path}: unsupported provider {kind!r} (supported: aesgcm, aescbc, identity)")
        keys = (body or {}).get("keys") if isinstance(body, dict) else None
        if not keys:
            raise EncryptionError(f"{path}.{kind}.keys: at least one key is required")
        cls = AesGcm if kind == "aesgcm" else AesCbc
        for j, k in enumerate(keys):
            kpath = f"{path}.{kind}.keys[{j}]"
            if not isinstance(k, dict) or not k.get("name"):
                raise EncryptionError(f"{kpath}.name: required")
            providers.append(cls(str(k["name"]), _secret(k.get("secret"), kpath)))
    if not providers:
        raise EncryptionError(f"{where}.providers: at least one provider is required")
    return providers


def parse(doc: Any, key_prefix: Any) -> ValueTransformer:
    """The transformer an EncryptionConfiguration document describes. `key_prefix(resource)` gives the
    etcd key prefix of a resource named as Kubernetes names it (`secrets`, `deployments.apps`)."""
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise EncryptionError(f"not an {KIND} (apiVersion {API_VERSION})")
    rules = []
    for i, entry in enumerate(doc.get("resources") or []):
        where = f"resources[{i}]"
        names = entry.get("resources") if isinstance(entry, dict) else None
        if not names:
            raise EncryptionError(f"{where}.resources: at least one resource is required")
        rules.append(Rule(tuple(key_prefix(str(n)) for n in names), _providers(entry.get("providers"), where)))
    return ValueTransformer(rules)


def registry_prefix(resource: str) -> str:
    """`secrets` or `deployments.apps` -> the etcd prefix of that kind's objects."""
    from minik8s.api import kinds

    plural, _, group = resource.partition(".")
    for info in kinds.KINDS:
        if info.plural == plural and info.group == group:
            return info.key(None)
    raise EncryptionError(f"resources: unknown resource {resource!r}")


def load(path: str | Path) -> ValueTransformer:
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise EncryptionError(f"cannot read the encryption configuration {p}: {exc}") from None
    try:
        return parse(doc, registry_prefix)
    except EncryptionError as exc:
        raise EncryptionError(f"{p}: {exc}") from None


def default_config(key_name: str = DEFAULT_KEY_NAME) -> dict[str, Any]:
    """A new configuration: Secrets under a fresh AES-GCM key, plaintext from before still readable."""
    secret = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()
    return {"apiVersion": API_VERSION, "kind": KIND,
            "resources": [{"resources": list(DEFAULT_RESOURCES),
                           "providers": [{"aesgcm": {"keys": [{"name": key_name, "secret": secret}]}},
                                         {"identity": {}}]}]}


def config_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / CONFIG_FILE


def ensure_config(path: Path) -> Path:
    """Write a new configuration at `path` (mode 0600) unless one is there; never replace a key."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(default_config(), f, sort_keys=False)
    return path
