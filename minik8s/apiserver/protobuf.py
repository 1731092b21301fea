"""Request bodies in ``application/vnd.kubernetes.protobuf``: what kubectl's generators send.

kubectl 1.32's typed clients (``create configmap|secret|namespace|deployment|job|cronjob|service|
serviceaccount|ingress|role|clusterrole|rolebinding|clusterrolebinding``, ``auth can-i|whoami``, ``create token``) POST
protobuf, unconditionally: no discovery is read first and a 415 is not retried as JSON, so serving those verbs
means reading protobuf. The body is Kubernetes' ``runtime.Unknown`` envelope: the magic ``k8s\\x00``, then
``Unknown{typeMeta=1{apiVersion=1, kind=2}, raw=2, contentEncoding=3, contentType=4}``, where ``raw`` is the
typed object in the field numbers of k8s.io/api's generated.proto files.

This decodes that into the object's JSON shape (the one the rest of the API server handles) from a
table of the messages those verbs produce. Go's protobuf encoder writes every non-pointer field, zero
or not; JSON omits them (``omitempty``), so a zero scalar or an empty message is dropped unless the
field is a pointer (``?`` below: ``replicas: 0`` means something). A field the table does not know is
ignored when it carries a zero value (it would be absent in JSON) and otherwise refused, naming it:
nothing is silently lost.
"""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass
from typing import Any

from minik8s.errors import BadRequest, UnsupportedMediaType

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# Each message: "NUMBER JSON-NAME TYPE" entries separated by ";". TYPE is s (string), b (bytes, base64
# in JSON), i (int32/int64), o (bool), t (meta/v1 Time), q (resource Quantity), n (IntOrString),
# ms / mb / mq (map of string to string / bytes / Quantity), x (accepted and dropped: status, which
# the API server sets itself) or a message name. Suffix "?": a Go pointer (its zero value is kept);
# "*": repeated.
_SCHEMA_TEXT = {
    "ObjectMeta": "1 name s; 2 generateName s; 3 namespace s; 4 selfLink s; 5 uid s; 6 resourceVersion s;"
                  "7 generation i; 8 creationTimestamp t; 9 deletionTimestamp t; 10 deletionGracePeriodSeconds i?;"
                  "11 labels ms; 12 annotations ms; 13 ownerReferences OwnerReference*; 14 finalizers s*",
    "OwnerReference": "1 kind s; 3 name s; 4 uid s; 5 apiVersion s; 6 controller o?; 7 blockOwnerDeletion o?",
    "LabelSelector": "1 matchLabels ms; 2 matchExpressions LabelSelectorRequirement*",
    "LabelSelectorRequirement": "1 key s; 2 operator s; 3 values s*",
    "LocalObjectReference": "1 name s",
    "ObjectReference": "1 kind s; 2 namespace s; 3 name s; 4 uid s; 5 apiVersion s; 6 resourceVersion s;"
                       "7 fieldPath s",
    # core/v1
    "ConfigMap": "1 metadata ObjectMeta; 2 data ms; 3 binaryData mb; 4 immutable o?",
    "Secret": "1 metadata ObjectMeta; 2 data mb; 3 type s; 4 stringData ms; 5 immutable o?",
    "Namespace": "1 metadata ObjectMeta; 2 spec NamespaceSpec; 3 status x",
    "NamespaceSpec": "1 finalizers s*",
    "ServiceAccount": "1 metadata ObjectMeta; 2 secrets ObjectReference*; 3 imagePullSecrets LocalObjectReference*;"
                      "4 automountServiceAccountToken o?",
    "Service": "1 metadata ObjectMeta; 2 spec ServiceSpec; 3 status x",
    "ServiceSpec": "1 ports ServicePort*; 2 selector ms; 3 clusterIP s; 4 type s; 5 externalIPs s*;"
                   "7 sessionAffinity s; 8 loadBalancerIP s; 9 loadBalancerSourceRanges s*; 10 externalName s;"
                   "11 externalTrafficPolicy s; 12 healthCheckNodePort i; 13 publishNotReadyAddresses o;"
                   "17 ipFamilyPolicy s?; 18 clusterIPs s*; 19 ipFamilies s*; 20 allocateLoadBalancerNodePorts o?;"
                   "21 loadBalancerClass s?; 22 internalTrafficPolicy s?; 23 trafficDistribution s?",
    "ServicePort": "1 name s; 2 protocol s; 3 port i; 4 targetPort n; 5 nodePort i; 6 appProtocol s?",
    "PodTemplateSpec": "1 metadata ObjectMeta; 2 spec PodSpec",
    "PodSpec": "1 volumes Volume*; 2 containers Container*; 3 restartPolicy s; 4 terminationGracePeriodSeconds i?;"
               "5 activeDeadlineSeconds i?; 6 dnsPolicy s; 7 nodeSelector ms; 8 serviceAccountName s;"
               "9 serviceAccount s; 10 nodeName s; 11 hostNetwork o; 12 hostPID o; 13 hostIPC o;"
               "15 imagePullSecrets LocalObjectReference*; 16 hostname s; 17 subdomain s; 19 schedulerName s;"
               "20 initContainers Container*; 21 automountServiceAccountToken o?; 24 priorityClassName s;"
               "25 priority i?; 27 shareProcessNamespace o?; 29 runtimeClassName s?; 30 enableServiceLinks o?;"
               "31 preemptionPolicy s?; 35 setHostnameAsFQDN o?; 37 hostUsers o?",
    "Container": "1 name s; 2 image s; 3 command s*; 4 args s*; 5 workingDir s; 6 ports ContainerPort*;"
                 "7 env EnvVar*; 8 resources ResourceRequirements; 9 volumeMounts VolumeMount*;"
                 "13 terminationMessagePath s; 14 imagePullPolicy s; 16 stdin o; 17 stdinOnce o; 18 tty o;"
                 "19 envFrom EnvFromSource*; 20 terminationMessagePolicy s; 24 restartPolicy s?",
    "ContainerPort": "1 name s; 2 hostPort i; 3 containerPort i; 4 protocol s; 5 hostIP s",
    "EnvVar": "1 name s; 2 value s; 3 valueFrom EnvVarSource?",
    "EnvVarSource": "3 configMapKeyRef ConfigMapKeySelector?; 4 secretKeyRef SecretKeySelector?",
    "ConfigMapKeySelector": "1 localObjectReference LocalObjectReference; 2 key s; 3 optional o?",
    "SecretKeySelector": "1 localObjectReference LocalObjectReference; 2 key s; 3 optional o?",
    "EnvFromSource": "1 prefix s; 2 configMapRef ConfigMapEnvSource?; 3 secretRef SecretEnvSource?",
    "ConfigMapEnvSource": "1 localObjectReference LocalObjectReference; 2 optional o?",
    "SecretEnvSource": "1 localObjectReference LocalObjectReference; 2 optional o?",
    "ResourceRequirements": "1 limits mq; 2 requests mq",
    "VolumeMount": "1 name s; 2 readOnly o; 3 mountPath s; 4 subPath s; 6 subPathExpr s",
    "Volume": "1 name s; 2 volumeSource VolumeSource",
    "VolumeSource": "2 emptyDir EmptyDirVolumeSource?; 6 secret SecretVolumeSource?;"
                    "19 configMap ConfigMapVolumeSource?",
    "EmptyDirVolumeSource": "1 medium s; 2 sizeLimit q",
    "SecretVolumeSource": "1 secretName s; 2 items KeyToPath*; 3 defaultMode i?; 4 optional o?",
    "ConfigMapVolumeSource": "1 localObjectReference LocalObjectReference; 2 items KeyToPath*; 3 defaultMode i?;"
                             "4 optional o?",
    "KeyToPath": "1 key s; 2 path s; 3 mode i?",
    # apps/v1
    "Deployment": "1 metadata ObjectMeta; 2 spec DeploymentSpec; 3 status x",
    "DeploymentSpec": "1 replicas i?; 2 selector LabelSelector?; 3 template PodTemplateSpec;"
                      "4 strategy DeploymentStrategy; 5 minReadySeconds i; 6 revisionHistoryLimit i?; 7 paused o;"
                      "9 progressDeadlineSeconds i?",
    "DeploymentStrategy": "1 type s; 2 rollingUpdate RollingUpdateDeployment?",
    "RollingUpdateDeployment": "1 maxUnavailable n?; 2 maxSurge n?",
    # batch/v1
    "Job": "1 metadata ObjectMeta; 2 spec JobSpec; 3 status x",
    "JobSpec": "1 parallelism i?; 2 completions i?; 3 activeDeadlineSeconds i?; 4 selector LabelSelector?;"
               "5 manualSelector o?; 6 template PodTemplateSpec; 7 backoffLimit i?; 8 ttlSecondsAfterFinished i?;"
               "9 completionMode s?; 10 suspend o?; 12 backoffLimitPerIndex i?; 13 maxFailedIndexes i?;"
               "14 podReplacementPolicy s?; 16 managedBy s?",
    "JobTemplateSpec": "1 metadata ObjectMeta; 2 spec JobSpec",
    "CronJob": "1 metadata ObjectMeta; 2 spec CronJobSpec; 3 status x",
    "CronJobSpec": "1 schedule s; 2 startingDeadlineSeconds i?; 3 concurrencyPolicy s; 4 suspend o?;"
                   "5 jobTemplate JobTemplateSpec; 6 successfulJobsHistoryLimit i?; 7 failedJobsHistoryLimit i?;"
                   "8 timeZone s?",
    # networking.k8s.io/v1
    "Ingress": "1 metadata ObjectMeta; 2 spec IngressSpec; 3 status x",
    "IngressSpec": "1 defaultBackend IngressBackend?; 2 tls IngressTLS*; 3 rules IngressRule*;"
                   "4 ingressClassName s?",
    "IngressBackend": "3 resource TypedLocalObjectReference?; 4 service IngressServiceBackend?",
    "TypedLocalObjectReference": "1 apiGroup s?; 2 kind s; 3 name s",
    "IngressServiceBackend": "1 name s; 2 port ServiceBackendPort",
    "ServiceBackendPort": "1 name s; 2 number i",
    "IngressTLS": "1 hosts s*; 2 secretName s",
    "IngressRule": "1 host s; 2 ingressRuleValue IngressRuleValue",
    "IngressRuleValue": "1 http HTTPIngressRuleValue?",
    "HTTPIngressRuleValue": "1 paths HTTPIngressPath*",
    "HTTPIngressPath": "1 path s; 2 backend IngressBackend; 3 pathType s?",
    # rbac.authorization.k8s.io/v1 (kubectl create role|clusterrole|rolebinding|clusterrolebinding)
    "PolicyRule": "1 verbs s*; 2 apiGroups s*; 3 resources s*; 4 resourceNames s*; 5 nonResourceURLs s*",
    "Subject": "1 kind s; 2 apiGroup s; 3 name s; 4 namespace s",
    "RoleRef": "1 apiGroup s; 2 kind s; 3 name s",
    "Role": "1 metadata ObjectMeta; 2 rules PolicyRule*",
    "ClusterRole": "1 metadata ObjectMeta; 2 rules PolicyRule*",
    "RoleBinding": "1 metadata ObjectMeta; 2 subjects Subject*; 3 roleRef RoleRef",
    "ClusterRoleBinding": "1 metadata ObjectMeta; 2 subjects Subject*; 3 roleRef RoleRef",
    # authorization.k8s.io/v1 and authentication.k8s.io/v1 (kubectl auth can-i|whoami, kubectl create token)
    "ResourceAttributes": "1 namespace s; 2 verb s; 3 group s; 4 version s; 5 resource s; 6 subresource s; 7 name s",
    "NonResourceAttributes": "1 path s; 2 verb s",
    "SelfSubjectAccessReview": "1 metadata ObjectMeta; 2 spec SelfSubjectAccessReviewSpec; 3 status x",
    "SelfSubjectAccessReviewSpec": "1 resourceAttributes ResourceAttributes?;"
                                   "2 nonResourceAttributes NonResourceAttributes?",
    "SubjectAccessReview": "1 metadata ObjectMeta; 2 spec SubjectAccessReviewSpec; 3 status x",
    "LocalSubjectAccessReview": "1 metadata ObjectMeta; 2 spec SubjectAccessReviewSpec; 3 status x",
    "SubjectAccessReviewSpec": "1 resourceAttributes ResourceAttributes?;"
                               "2 nonResourceAttributes NonResourceAttributes?; 3 user s; 4 groups s*; 6 uid s",
    "SelfSubjectRulesReview": "1 metadata ObjectMeta; 2 spec SelfSubjectRulesReviewSpec; 3 status x",
    "SelfSubjectRulesReviewSpec": "1 namespace s",
    "SelfSubjectReview": "1 metadata ObjectMeta; 2 status x",
    "TokenRequest": "1 metadata ObjectMeta; 2 spec TokenRequestSpec; 3 status x",
    "TokenRequestSpec": "1 audiences s*; 3 boundObjectRef BoundObjectReference?; 4 expirationSeconds i?",
    "BoundObjectReference": "1 kind s; 2 apiVersion s; 3 name s; 4 uid s",
}
RBAC, AUTHZ = "rbac.authorization.k8s.io/v1", "authorization.k8s.io/v1"
# the top-level kinds, by the apiVersion/kind of the envelope
KINDS = {("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Namespace"), ("v1", "ServiceAccount"), ("v1", "Service"),
         ("apps/v1", "Deployment"), ("batch/v1", "Job"), ("batch/v1", "CronJob"),
         ("networking.k8s.io/v1", "Ingress"),
         *((RBAC, kind) for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")),
         *((AUTHZ, kind) for kind in ("SelfSubjectAccessReview", "SubjectAccessReview", "LocalSubjectAccessReview",
                                      "SelfSubjectRulesReview")),
         ("authentication.k8s.io/v1", "SelfSubjectReview"), ("authentication.k8s.io/v1", "TokenRequest")}
# Go embeds these structs, so JSON shows their fields one level up (envFrom[].configMapRef.name)
_INLINE = {"localObjectReference", "volumeSource", "ingressRuleValue"}
_SCALARS = {"s", "b", "i", "o", "t", "q", "n", "ms", "mb", "mq", "x"}


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    pointer: bool
    repeated: bool


def _parse_schema(text: dict[str, str]) -> dict[str, dict[int, Field]]:
    schema: dict[str, dict[int, Field]] = {}
    for message, spec in text.items():
        fields: dict[int, Field] = {}
        for entry in spec.split(";"):
            number, name, kind = entry.split()
            repeated, pointer = kind.endswith("*"), kind.endswith("?")
            kind = kind.rstrip("*?")
            fields[int(number)] = Field(name, kind, pointer, repeated)
        schema[message] = fields
    for message, fields in schema.items():  # a typo in the table fails at import, not on a request
        for field in fields.values():
            if field.type not in _SCALARS and field.type not in schema:
                raise AssertionError(f"{message}.{field.name}: unknown type {field.type}")
    return schema


SCHEMA = _parse_schema(_SCHEMA_TEXT)


class DecodeError(BadRequest):
    """The body is not valid protobuf for the kind it claims to be."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise DecodeError("the protobuf body ends inside a varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("the protobuf body has a varint longer than 10 bytes")


def fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field: an int for varints and fixed, bytes otherwise."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise DecodeError(f"field {number} runs past the end of the protobuf body")
            value, pos = data[pos:pos + size], pos + size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > len(data):
                raise DecodeError(f"field {number} runs past the end of the protobuf body")
            value, pos = int.from_bytes(data[pos:pos + width], "little"), pos + width
        else:
            raise DecodeError(f"field {number} has wire type {wire}, which Kubernetes' protobuf never uses")
        out.append((number, wire, value))
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _expect(field: Field, wire: int, want: int) -> None:
    if wire != want:
        raise DecodeError(f"field {field.name} has wire type {wire}, expected {want}")


def _text(field: Field, raw: int | bytes) -> str:
    if not isinstance(raw, bytes):
        raise DecodeError(f"field {field.name} is not length-delimited")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise DecodeError(f"field {field.name} is not valid UTF-8") from None


def _time(raw: bytes) -> str | None:
    parts = {n: v for n, _, v in fields(raw)}
    seconds = _signed(int(parts.get(1, 0)))
    if not seconds:
        return None  # Go's zero Time: null in JSON
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_or_string(raw: bytes) -> int | str:
    parts = {n: v for n, _, v in fields(raw)}
    if parts.get(1, 0) == 1:
        strval = parts.get(3, b"")
        return strval.decode() if isinstance(strval, bytes) else ""
    return _signed(int(parts.get(2, 0)))


def _map(field: Field, entries: list[bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in entries:
        parts = {n: v for n, _, v in fields(entry)}
        key, value = parts.get(1, b""), parts.get(2, b"")
        if not isinstance(key, bytes) or not isinstance(value, bytes):
            raise DecodeError(f"field {field.name} has a map entry that is not two strings")
        if field.type == "mb":
            out[key.decode()] = base64.b64encode(value).decode()
        elif field.type == "mq":
            out[key.decode()] = _text(field, {n: v for n, _, v in fields(value)}.get(1, b""))
        else:
            out[key.decode()] = _text(field, value)
    return out


def _value(field: Field, wire: int, raw: int | bytes, where: str) -> Any:
    kind = field.type
    if kind == "i":
        _expect(field, wire, 0)
        return _signed(int(raw))
    if kind == "o":
        _expect(field, wire, 0)
        return bool(raw)
    _expect(field, wire, 2)
    assert isinstance(raw, bytes)
    if kind == "s":
        return _text(field, raw)
    if kind == "b":
        return base64.b64encode(raw).decode()
    if kind == "t":
        return _time(raw)
    if kind == "q":
        return _text(field, {n: v for n, _, v in fields(raw)}.get(1, b""))
    if kind == "n":
        return _int_or_string(raw)
    return decode_message(kind, raw, f"{where}.{field.name}")


def _is_zero(value: Any) -> bool:
    return value in (None, "", 0, False, {}, [])


def decode_message(message: str, data: bytes, where: str = "") -> dict[str, Any]:
    """One message of the table as its JSON object."""
    schema = SCHEMA[message]
    out: dict[str, Any] = {}
    maps: dict[str, list[bytes]] = {}
    where = where or message
    for number, wire, raw in fields(data):
        field = schema.get(number)
        if field is None:
            if raw in (0, b""):
                continue  # a zero-valued field we do not model: JSON would not carry it either
            raise UnsupportedMediaType(
                f"protobuf field {number} of {message} (at {where}) is not supported by this server; "
                "send the object as JSON (e.g. kubectl apply -f)")
        if field.type == "x":
            continue
        if field.type in ("ms", "mb", "mq"):
            _expect(field, wire, 2)
            assert isinstance(raw, bytes)
            maps.setdefault(field.name, []).append(raw)
            continue
        value = _value(field, wire, raw, where)
        if field.repeated:
            out.setdefault(field.name, []).append(value)
        elif field.name in _INLINE and isinstance(value, dict):
            out.update(value)
        elif field.pointer or not _is_zero(value):
            out[field.name] = value
    for name, entries in maps.items():
        field = next(f for f in schema.values() if f.name == name)
        out[name] = _map(field, entries)
    return out


def decode(body: bytes) -> dict[str, Any]:
    """A ``runtime.Unknown``-wrapped object of one of KINDS, as the JSON object the client meant."""
    if not body.startswith(MAGIC):
        raise DecodeError("a protobuf body must start with the Kubernetes magic number k8s\\x00")
    envelope = {n: v for n, _, v in fields(body[len(MAGIC):])}
    type_meta = envelope.get(1, b"")
    raw = envelope.get(2, b"")
    encoding = envelope.get(3, b"")
    if not isinstance(type_meta, bytes) or not isinstance(raw, bytes) or encoding not in (b"", 0):
        raise DecodeError("the protobuf envelope (runtime.Unknown) is malformed or its raw bytes are encoded")
    meta = {n: v for n, _, v in fields(type_meta)}
    api_version, kind = (v.decode(errors="replace") if isinstance(v := meta.get(n), bytes) else "" for n in (1, 2))
    if (api_version, kind) not in KINDS:
        served = ", ".join(sorted(f"{v}/{k}" for v, k in KINDS))
        raise UnsupportedMediaType(
            f'the body of the request was in an unknown format ("{MEDIA_TYPE}") for {api_version}/{kind}: '
            f"protobuf is read for {served}; send application/json")
    return {"apiVersion": api_version, "kind": kind, **decode_message(kind, raw)}
