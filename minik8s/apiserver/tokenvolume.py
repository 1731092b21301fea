"""The ServiceAccount token volume admission adds to a pod (Kubernetes' `kube-api-access-<suffix>`).

A projected volume with three sources: a bound token for the pod's ServiceAccount (`token`), the
cluster CA from the `kube-root-ca.crt` ConfigMap every namespace holds (`ca.crt`), and the pod's
namespace through the downward API (`namespace`). Every container mounts it read-only at
/var/run/secrets/kubernetes.io/serviceaccount, unless it already mounts something there.
"""

from __future__ import annotations

import secrets
from typing import Any

from minik8s.api.config import DEFAULT_FILE_MODE

Obj = dict[str, Any]

VOLUME_PREFIX = "kube-api-access-"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_KEY = "ca.crt"
#: What kube-apiserver's admission asks for: one hour and seven seconds. The kubelet refreshes the token
#: at 80% of its lifetime; the odd seconds mark it as a kubelet-managed token.
TOKEN_EXPIRATION_S = 3607
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
SUFFIX_LEN = 5


def wants_token(pod: Obj, account: Obj | None) -> bool:
    """The pod's automountServiceAccountToken wins; then the ServiceAccount's; mounted by default."""
    spec = pod.get("spec") or {}
    if spec.get("automountServiceAccountToken") is not None:
        return bool(spec["automountServiceAccountToken"])
    if account is not None and account.get("automountServiceAccountToken") is not None:
        return bool(account["automountServiceAccountToken"])
    return True


def token_volume(name: str) -> Obj:
    return {"name": name, "projected": {"defaultMode": DEFAULT_FILE_MODE, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_S, "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": ROOT_CA_KEY, "path": ROOT_CA_KEY}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}


def add_token_volume(pod: Obj) -> str | None:
    """Add the volume and its mounts to `pod` (in place); the volume's name, or None if it already has one."""
    spec = pod.setdefault("spec", {})
    volumes = spec.setdefault("volumes", [])
    if any(str(v.get("name", "")).startswith(VOLUME_PREFIX) for v in volumes if isinstance(v, dict)):
        return None
    taken = {v.get("name") for v in volumes if isinstance(v, dict)}
    name = ""
    while not name or name in taken:
        name = VOLUME_PREFIX + "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(SUFFIX_LEN))
    volumes.append(token_volume(name))
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        mounts = c.setdefault("volumeMounts", [])
        if not any(isinstance(m, dict) and m.get("mountPath") == MOUNT_PATH for m in mounts):
            mounts.append({"name": name, "readOnly": True, "mountPath": MOUNT_PATH})
    return name
