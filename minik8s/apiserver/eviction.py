"""The Eviction subresource (`POST .../pods/{name}/eviction`, a policy/v1 Eviction): a delete that
PodDisruptionBudgets may refuse.

As kube-apiserver's eviction REST: a pod that is terminal or still Pending goes at once; otherwise the
one budget selecting it must allow a disruption. Allowing one decrements the budget's
`disruptionsAllowed` and records the pod in `disruptedPods` in one compare-and-swap write of the
budget's status, so two evictions racing for the last allowed disruption cannot both win (the loser
re-reads and is refused); the disruption controller drops the entry once the pod is gone (or after a
timeout, if the delete never happened). Refusals are 429 TooManyRequests, which clients retry.
"""

from __future__ import annotations

import logging
from typing import Any

from minik8s.api import kinds as k
from minik8s.api import podutil
from minik8s.api.podutil import TERMINAL_PHASES
from minik8s.api.timefmt import now_iso
from minik8s.apiserver import workloads
from minik8s.apiserver.resources import Resources
from minik8s.errors import BadRequest, Conflict, Forbidden, MiniK8sError, TooManyRequests

log = logging.getLogger("minik8s.apiserver.eviction")

Obj = dict[str, Any]
EVICTION_VERSIONS = ("policy/v1", "policy/v1beta1")
MAX_DISRUPTED_PODS = 2000  # Kubernetes' MaxDisruptedPodSize
CAS_TRIES = 5
REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."


class MultipleBudgets(MiniK8sError):
    code = 500
    reason = "InternalError"


def _refuse(cause: str) -> TooManyRequests:
    return TooManyRequests(REFUSED, {"causes": [{"reason": "DisruptionBudget", "message": cause}]})


def _check_body(name: str, body: Any) -> Obj:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a policy/v1 Eviction object")
    if body.get("kind", "Eviction") != "Eviction" or body.get("apiVersion", "policy/v1") not in EVICTION_VERSIONS:
        raise BadRequest(f"the body is a {body.get('apiVersion')}/{body.get('kind')}, but this URL serves "
                         "policy/v1/Eviction")
    meta = body.get("metadata") or {}
    if meta.get("name") not in (None, name):
        raise BadRequest("name in URL does not match name in Eviction object")
    opts = body.get("deleteOptions") or {}
    if not isinstance(opts, dict):
        raise BadRequest("deleteOptions must be an object")
    return opts


def _success() -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def evict(res: Resources, namespace: str, name: str, body: Any, dry_run: bool = False) -> Obj:
    """`dry_run` (`?dryRun=All` or `deleteOptions.dryRun: [All]`): every check, no write."""
    opts = _check_body(name, body)
    dry_run = dry_run or "All" in (opts.get("dryRun") or [])
    pod_info = k.lookup("Pod")
    grace = opts.get("gracePeriodSeconds")
    grace = int(grace) if grace is not None else None
    pod = res.get(pod_info, namespace, name)
    pre = opts.get("preconditions") or {}
    if pre.get("uid") and pre["uid"] != pod["metadata"].get("uid"):
        raise Conflict(f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                       f"{pod['metadata'].get('uid')}")
    if pre.get("resourceVersion") and pre["resourceVersion"] != pod["metadata"].get("resourceVersion"):
        raise Conflict(f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                       f"ResourceVersion in object meta: {pod['metadata'].get('resourceVersion')}")

    def delete() -> None:
        if not dry_run:
            workloads.delete(res, pod_info, namespace, name, grace, None)

    phase = (pod.get("status") or {}).get("phase")
    if pod["metadata"].get("deletionTimestamp") or phase in (*TERMINAL_PHASES, "Pending"):
        delete()  # nothing a budget counts is lost
        return _success()
    for _ in range(CAS_TRIES):
        if _take_disruption(res, pod, dry_run):
            delete()
            log.info("pod evicted", extra={"pod": f"{namespace}/{name}"})
            return _success()
    raise _refuse("the disruption budget kept changing while the eviction was checked; try again")


def _take_disruption(res: Resources, pod: Obj, dry_run: bool = False) -> bool:
    """True when the pod may go (the budget's status already updated); False when the CAS lost a race."""
    pdb_info = k.lookup("PodDisruptionBudget")
    namespace = pod["metadata"].get("namespace") or "default"
    budgets = podutil.budgets_for(pod, res.list(pdb_info, namespace)[0])
    if not budgets:
        return True
    if len(budgets) > 1:
        raise MultipleBudgets("This pod has more than one PodDisruptionBudget, which the eviction subresource "
                              "does not support.")
    pdb = budgets[0]
    pdb_name = pdb["metadata"]["name"]
    status = dict(pdb.get("status") or {})
    if not podutil.is_ready(pod):
        policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") or "IfHealthyBudget"
        healthy, desired = int(status.get("currentHealthy", 0)), int(status.get("desiredHealthy", 0))
        if policy == "AlwaysAllow" or (healthy >= desired > 0):
            return True  # an unready pod does not count as healthy: removing it costs the budget nothing
    if int(status.get("observedGeneration") or 0) < int(pdb["metadata"].get("generation") or 1):
        raise _refuse(f"The disruption budget {pdb_name} is still being processed by the server.")
    allowed = int(status.get("disruptionsAllowed", 0))
    if allowed < 0:
        raise Forbidden("pdb disruptions allowed is negative")
    disrupted = dict(status.get("disruptedPods") or {})
    if len(disrupted) > MAX_DISRUPTED_PODS:
        raise Forbidden("DisruptedPods map too big - too many evictions not confirmed by PDB controller")
    if allowed == 0:
        raise _refuse(f"The disruption budget {pdb_name} needs {status.get('desiredHealthy', 0)} healthy pods and "
                      f"has {status.get('currentHealthy', 0)} currently")
    disrupted[pod["metadata"]["name"]] = now_iso()
    status.update(disruptionsAllowed=allowed - 1, disruptedPods=disrupted)
    if dry_run:
        return True
    try:
        res.update(pdb_info, namespace, pdb_name, {**pdb, "status": status}, subresource="status")
    except Conflict:
        return False
    return True
