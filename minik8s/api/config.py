"""ConfigMap, Secret and ServiceAccount (v1): shapes, defaults, validation and `get` columns as in Kubernetes 1.32.

Secrets travel base64-encoded in `data`; `stringData` is a write-only convenience folded into
`data` when the object is decoded (as Kubernetes' v1 conversion does), so it is never stored
and the validation below always sees the merged keys. Rules that compare an object with its
stored version (a Secret's type, `immutable`) are the `validate_*_update` functions.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from pydantic import Field, model_validator

from minik8s.api import printers as p
from minik8s.api import types as t
from minik8s.api.validation import Causes, check_config_key, check_meta

Obj = dict[str, Any]

#: Kubernetes' MaxSecretSize, which also bounds a ConfigMap's data.
MAX_DATA_BYTES = 1024 * 1024
REDACTED = "<secret contents redacted>"

SECRET_OPAQUE = "Opaque"
SECRET_SA_TOKEN = "kubernetes.io/service-account-token"
SECRET_DOCKERCFG = "kubernetes.io/dockercfg"
SECRET_DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
SECRET_BASIC_AUTH = "kubernetes.io/basic-auth"
SECRET_SSH_AUTH = "kubernetes.io/ssh-auth"
SECRET_TLS = "kubernetes.io/tls"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
#: Keys a typed Secret must hold (any one of a group of several is enough for basic-auth).
REQUIRED_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    SECRET_DOCKERCFG: ((".dockercfg",),),
    SECRET_DOCKERCONFIGJSON: ((".dockerconfigjson",),),
    SECRET_BASIC_AUTH: (("username", "password"),),
    SECRET_SSH_AUTH: (("ssh-privatekey",),),
    SECRET_TLS: (("tls.key",), ("tls.crt",)),
}
JSON_KEYS = {SECRET_DOCKERCFG: ".dockercfg", SECRET_DOCKERCONFIGJSON: ".dockerconfigjson"}
IMMUTABLE_MESSAGE = "Forbidden: field is immutable when `immutable` is set"
DEFAULT_SERVICE_ACCOUNT = "default"
#: 0644: ConfigMap and Secret volume files, Secrets included, as in Kubernetes.
DEFAULT_FILE_MODE = 0o644
#: A projected serviceAccountToken's lifetime when it names none (SetDefaults_ServiceAccountTokenProjection).
DEFAULT_TOKEN_EXPIRATION_S = 3600


# --- models ----------------------------------------------------------------------------------

class ConfigMap(t.TypedObject):
    data: dict[str, str] | None = None
    #: base64 on the wire, like every []byte field of the Kubernetes API.
    binaryData: dict[str, str] | None = None
    immutable: bool | None = None


class Secret(t.TypedObject):
    #: base64 on the wire.
    data: dict[str, str] | None = None
    #: Write-only: folded into `data` on decode, never stored or returned.
    stringData: dict[str, str] | None = Field(default=None, exclude=True)
    type: str | None = None
    immutable: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _fold_string_data(cls, values: Any) -> Any:
        """stringData wins over data for the same key, and an empty type means Opaque (SetDefaults_Secret)."""
        if not isinstance(values, dict):
            return values
        values = dict(values)
        if not values.get("type"):
            values["type"] = SECRET_OPAQUE
        plain = values.get("stringData")
        if isinstance(plain, dict):
            data = dict(values.get("data") or {}) if isinstance(values.get("data") or {}, dict) else values["data"]
            rest = {}
            for key, value in plain.items():
                if isinstance(value, str) and isinstance(data, dict):
                    data[key] = base64.b64encode(value.encode()).decode()
                else:
                    rest[key] = value  # left for the model to report as a wrong type
            values["data"] = data
            values["stringData"] = rest or None
        return values


class LocalObjectReference(t.Model):
    name: str | None = None


class ServiceAccount(t.TypedObject):
    secrets: list[t.ObjectReference] | None = None
    imagePullSecrets: list[LocalObjectReference] | None = None
    automountServiceAccountToken: bool | None = None


# --- validation ------------------------------------------------------------------------------

def decode_b64(value: str) -> bytes:
    """Go's StdEncoding as used for []byte JSON fields: padded, line breaks ignored."""
    return base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)


def _decoded(values: dict[str, str], field: str, plain: str, causes: Causes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in values.items():
        check_config_key(key, f"{field}[{key}]", causes)
        try:
            out[key] = decode_b64(value)
        except (binascii.Error, ValueError):
            causes.append((f"{field}[{key}]", f'Invalid value: "{REDACTED}": illegal base64 data: '
                                              f"the value must be base64-encoded (use {plain} for plain text)"))
    return out


def _check_size(total: int, field: str, causes: Causes) -> None:
    if total > MAX_DATA_BYTES:
        causes.append((field, f"Too long: may not be more than {MAX_DATA_BYTES} bytes"))


def validate_configmap(cm: ConfigMap) -> Causes:
    causes: Causes = []
    check_meta(cm.metadata, causes)
    total = 0
    for key, value in (cm.data or {}).items():
        check_config_key(key, f"data[{key}]", causes)
        total += len(value.encode())
    binary = _decoded(cm.binaryData or {}, "binaryData", "data", causes)
    for key, raw in binary.items():
        if key in (cm.data or {}):
            causes.append((f"binaryData[{key}]", f'Invalid value: "{key}": duplicate of key present in data'))
        total += len(raw)
    _check_size(total, "data", causes)
    return causes


def validate_secret(secret: Secret) -> Causes:
    causes: Causes = []
    check_meta(secret.metadata, causes)
    data = _decoded(secret.data or {}, "data", "stringData", causes)
    _check_size(sum(len(v) for v in data.values()), "data", causes)
    kind = secret.type or SECRET_OPAQUE
    if kind == SECRET_SA_TOKEN and not (secret.metadata.annotations or {}).get(SA_NAME_ANNOTATION):
        causes.append((f"metadata.annotations[{SA_NAME_ANNOTATION}]", "Required value"))
    for group in REQUIRED_KEYS.get(kind, ()):
        if not any(key in (secret.data or {}) for key in group):
            causes.extend((f"data[{key}]", "Required value") for key in group)
    json_key = JSON_KEYS.get(kind)
    if json_key and json_key in data:
        try:
            json.loads(data[json_key])
        except ValueError as exc:
            causes.append((f"data[{json_key}]", f'Invalid value: "{REDACTED}": not valid JSON: {exc}'))
    return causes


def validate_service_account(sa: ServiceAccount) -> Causes:
    causes: Causes = []
    check_meta(sa.metadata, causes)
    return causes


def _immutable_causes(old: Obj, new: Obj, fields: tuple[str, ...]) -> Causes:
    if not old.get("immutable"):
        return []
    causes: Causes = []
    if not new.get("immutable"):
        causes.append(("immutable", IMMUTABLE_MESSAGE))
    for name in fields:
        if (old.get(name) or {}) != (new.get(name) or {}):
            causes.append((name, IMMUTABLE_MESSAGE))
    return causes


def validate_configmap_update(old: Obj, new: Obj) -> Causes:
    return _immutable_causes(old, new, ("data", "binaryData"))


def validate_secret_update(old: Obj, new: Obj) -> Causes:
    causes: Causes = []
    old_type, new_type = old.get("type") or SECRET_OPAQUE, new.get("type") or SECRET_OPAQUE
    if old_type != new_type:
        causes.append(("type", f'Invalid value: "{new_type}": field is immutable'))
    return causes + _immutable_causes(old, new, ("data",))


def pod_config_defaults(spec: Obj) -> None:
    """The deprecated `serviceAccount` alias kept equal to `serviceAccountName` (SetDefaults_PodSpec; the
    `default` account itself is the ServiceAccount admission plug-in's), and the file mode of the pod's
    ConfigMap and Secret volumes (SetDefaults_*VolumeSource)."""
    name = spec.get("serviceAccountName") or spec.get("serviceAccount")
    if name:
        spec["serviceAccountName"] = name
        spec["serviceAccount"] = name
    for volume in spec.get("volumes") or []:
        for source in ("configMap", "secret", "projected"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", DEFAULT_FILE_MODE)
        for proj in (volume.get("projected") or {}).get("sources") or []:
            token = proj.get("serviceAccountToken") if isinstance(proj, dict) else None
            if isinstance(token, dict):
                token.setdefault("expirationSeconds", DEFAULT_TOKEN_EXPIRATION_S)


# --- printer columns -------------------------------------------------------------------------

def _count(*fields: str) -> p.Column:
    return p.Column("DATA", lambda o: str(sum(len(o.get(f) or {}) for f in fields)), type="integer")


CONFIGMAP_COLUMNS = [p.Column("NAME", p.name), _count("data", "binaryData"), p.Column("AGE", p.age)]
SECRET_COLUMNS = [p.Column("NAME", p.name), p.Column("TYPE", lambda o: str(o.get("type") or SECRET_OPAQUE)),
                  _count("data"), p.Column("AGE", p.age)]
SERVICEACCOUNT_COLUMNS = [p.Column("NAME", p.name),
                          p.Column("SECRETS", lambda o: str(len(o.get("secrets") or [])), type="integer"),
                          p.Column("AGE", p.age)]
