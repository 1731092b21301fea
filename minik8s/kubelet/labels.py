"""Docker labels and names that tie a container to its pod, so a restarted kubelet adopts it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

#: Every container minik8s creates carries this label (value "true").
MANAGED = "io.minik8s.managed"
NODE = "io.minik8s.node"
POD_UID = "io.kubernetes.pod.uid"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_NAME = "io.kubernetes.pod.name"
CONTAINER_NAME = "io.kubernetes.container.name"
RESTART_COUNT = "io.kubernetes.container.restartCount"
#: "sandbox" for the pause container, "container" for app containers.
CONTAINER_TYPE = "io.minik8s.container.type"
#: Hash of the container spec the container was created from; a changed spec restarts it.
SPEC_HASH = "io.minik8s.container.hash"
#: The pod's terminationGracePeriodSeconds, so an orphan is killed as gracefully as asked.
GRACE_PERIOD = "io.minik8s.pod.terminationGracePeriod"

TYPE_SANDBOX = "sandbox"
TYPE_CONTAINER = "container"
#: An init container that runs to completion before the app containers.
TYPE_INIT = "init"
#: A native sidecar (an init container with ``restartPolicy: Always``): kept running, stopped after the app.
TYPE_SIDECAR = "sidecar"
#: Position of an init container or sidecar in ``spec.initContainers``: sidecars stop in reverse order.
INIT_INDEX = "io.minik8s.container.initIndex"
#: Container name used for the sandbox in labels and docker names (as dockershim did).
SANDBOX_NAME = "POD"
#: Docker name prefix, as dockershim: k8s_<container>_<pod>_<namespace>_<uid>_<attempt>.
NAME_PREFIX = "k8s"
HASH_LENGTH = 16


@dataclass(frozen=True)
class PodRef:
    """Identity of a pod as recorded on its containers."""

    uid: str
    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def container_labels(
    ref: PodRef, node: str, container: str, restart_count: int, spec_hash: str, grace_seconds: int
) -> dict[str, str]:
    """Labels of one container (the sandbox uses ``container=SANDBOX_NAME``)."""
    return {
        MANAGED: "true",
        NODE: node,
        POD_UID: ref.uid,
        POD_NAMESPACE: ref.namespace,
        POD_NAME: ref.name,
        CONTAINER_NAME: container,
        RESTART_COUNT: str(restart_count),
        CONTAINER_TYPE: TYPE_SANDBOX if container == SANDBOX_NAME else TYPE_CONTAINER,
        SPEC_HASH: spec_hash,
        GRACE_PERIOD: str(grace_seconds),
    }


def init_labels(index: int, sidecar: bool) -> dict[str, str]:
    """Labels that mark an init container (or sidecar), so a kill knows its stop order without the pod spec."""
    return {CONTAINER_TYPE: TYPE_SIDECAR if sidecar else TYPE_INIT, INIT_INDEX: str(index)}


def sidecar_index(labels: dict[str, str]) -> int | None:
    """The init index of a sidecar container, None for any other container."""
    if labels.get(CONTAINER_TYPE) != TYPE_SIDECAR:
        return None
    try:
        return int(labels.get(INIT_INDEX, "0"))
    except ValueError:
        return 0


def docker_name(ref: PodRef, container: str, attempt: int) -> str:
    return f"{NAME_PREFIX}_{container}_{ref.name}_{ref.namespace}_{ref.uid}_{attempt}"


def pod_ref_from_labels(labels: dict[str, str]) -> PodRef | None:
    """The pod a container belongs to, or None if it is not a complete minik8s container."""
    if labels.get(MANAGED) != "true":
        return None
    uid, ns, name = labels.get(POD_UID), labels.get(POD_NAMESPACE), labels.get(POD_NAME)
    if not uid or not ns or not name:
        return None
    return PodRef(uid=uid, namespace=ns, name=name)


def restart_count_of(labels: dict[str, str]) -> int:
    try:
        return int(labels.get(RESTART_COUNT, "0"))
    except ValueError:
        return 0


def spec_hash(spec: dict[str, Any]) -> str:
    """Stable hash of a container spec's wire form."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def label_filter(**extra: str) -> dict[str, list[str]]:
    """A docker ``filters`` dict selecting managed containers with the given label values."""
    names = {"uid": POD_UID, "namespace": POD_NAMESPACE, "name": POD_NAME, "container": CONTAINER_NAME}
    labels = [f"{MANAGED}=true"] + [f"{names[k]}={v}" for k, v in extra.items()]
    return {"label": labels}
