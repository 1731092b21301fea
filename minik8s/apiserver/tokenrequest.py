"""The `serviceaccounts/token` subresource: authentication.k8s.io/v1 TokenRequest (what `kubectl create token`
and the kubelet call). The token is bound to the ServiceAccount's uid and, when asked, to a Pod's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from minik8s.api import kinds as k
from minik8s.api.timefmt import now_iso
from minik8s.apiserver.resources import Resources
from minik8s.auth.serviceaccount import BoundPod, TokenIssuer
from minik8s.errors import BadRequest, Conflict, Invalid

GROUP = "authentication.k8s.io"
API_VERSION = f"{GROUP}/v1"
KIND = "TokenRequest"
DEFAULT_EXPIRATION_S = 3600  # TokenRequest's default
MIN_EXPIRATION_S = 600  # "may not specify a duration less than 10 minutes"
MAX_EXPIRATION_S = 1 << 32  # "may not specify a duration larger than 2^32 seconds"
SPEC_FIELDS = {"audiences", "expirationSeconds", "boundObjectRef"}
REF_FIELDS = {"kind", "apiVersion", "name", "uid"}

Obj = dict[str, Any]


def _invalid(name: str, field: str, message: str) -> Invalid:
    return Invalid(KIND, name, [(field, message)], GROUP)


def _spec(body: Any, name: str) -> Obj:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if body.get("kind") not in (None, KIND) or body.get("apiVersion") not in (None, API_VERSION):
        raise BadRequest(f"the body is a {body.get('apiVersion')}/{body.get('kind')}, "
                         f"but this URL serves {API_VERSION}/{KIND}")
    spec = body.get("spec") or {}
    if not isinstance(spec, dict):
        raise _invalid(name, "spec", "Invalid value: must be an object")
    unknown = sorted(set(spec) - SPEC_FIELDS)
    if unknown:
        raise BadRequest(f'strict decoding error: unknown field "spec.{unknown[0]}"')
    return spec


def _audiences(spec: Obj, name: str, default: list[str]) -> list[str]:
    audiences = spec.get("audiences")
    if audiences is None or audiences == []:
        return list(default)
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        raise _invalid(name, "spec.audiences", "Invalid value: must be a list of non-empty strings")
    return list(audiences)


def _expiration(spec: Obj, name: str) -> int:
    exp = spec.get("expirationSeconds")
    if exp is None:
        return DEFAULT_EXPIRATION_S
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise _invalid(name, "spec.expirationSeconds", f"Invalid value: {exp!r}: must be an integer")
    if exp < MIN_EXPIRATION_S:
        raise _invalid(name, "spec.expirationSeconds",
                       f"Invalid value: {exp}: may not specify a duration less than 10 minutes")
    if exp > MAX_EXPIRATION_S:
        raise _invalid(name, "spec.expirationSeconds",
                       f"Invalid value: {exp}: may not specify a duration larger than 2^32 seconds")
    return exp


def _bound_pod(res: Resources, spec: Obj, namespace: str, name: str) -> BoundPod | None:
    ref = spec.get("boundObjectRef")
    if ref is None:
        return None
    if not isinstance(ref, dict):
        raise _invalid(name, "spec.boundObjectRef", "Invalid value: must be an object")
    unknown = sorted(set(ref) - REF_FIELDS)
    if unknown:
        raise BadRequest(f'strict decoding error: unknown field "spec.boundObjectRef.{unknown[0]}"')
    kind, version = ref.get("kind"), ref.get("apiVersion") or "v1"
    if kind != "Pod" or version != "v1":
        raise _invalid(name, "spec.boundObjectRef.kind",
                       f'Unsupported value: "{kind}": supported values: "Pod" (apiVersion v1); '
                       "tokens bound to Secrets or Nodes are not served here")
    pod_name = ref.get("name")
    if not isinstance(pod_name, str) or not pod_name:
        raise _invalid(name, "spec.boundObjectRef.name", "Required value")
    pod = res.get(k.lookup("Pod"), namespace, pod_name)  # NotFound: 404 naming the pod, as kube-apiserver
    uid = pod["metadata"]["uid"]
    if ref.get("uid") and ref["uid"] != uid:
        raise Conflict(f'the UID in the bound object reference ({ref["uid"]}) does not match the UID in record '
                       f'({uid}); the object "{pod_name}" might have been deleted and then recreated')
    account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
    if account != name:
        raise BadRequest(f'cannot bind token for serviceaccount "{name}" to pod running with different '
                         f'serviceaccount name "{account}"')
    return BoundPod(pod_name, uid)


def create_token(res: Resources, issuer: TokenIssuer, namespace: str, name: str, body: Any,
                 default_audiences: list[str]) -> Obj:
    """POST serviceaccounts/{name}/token: a TokenRequest with `status.token` filled in."""
    spec = _spec(body, name)
    audiences = _audiences(spec, name, default_audiences)
    expiration = _expiration(spec, name)
    account = res.get(k.lookup("ServiceAccount"), namespace, name)  # 404 when the account does not exist
    pod = _bound_pod(res, spec, namespace, name)
    token, exp = issuer.issue(namespace, name, account["metadata"]["uid"], audiences, expiration, pod)
    out_spec: Obj = {"audiences": audiences, "expirationSeconds": expiration}
    if pod is not None:
        out_spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": pod.name, "uid": pod.uid}
    return {"kind": KIND, "apiVersion": API_VERSION,
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": now_iso()},
            "spec": out_spec,
            "status": {"token": token,
                       "expirationTimestamp": datetime.fromtimestamp(exp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}
