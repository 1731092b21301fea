"""Pure helpers of the Job and CronJob controllers: no I/O, so unit tests drive them with plain objects.

Completion indexes and their compressed form ("0-2,5"), pod failure back-off, OnFailure restart
counting, the pod a Job creates for an index, and Job conditions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Protocol

from minik8s.api import batch
from minik8s.api import types as t
from minik8s.controllers import workloads as w

KIND = "Job"


class Clock(Protocol):
    """What time it is; tests pass a clock they move by hand."""

    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


# --- indexes -----------------------------------------------------------------------------------

def pod_index(pod: t.Pod, completions: int | None) -> int | None:
    """The completion index a pod runs (annotation first, as Kubernetes reads it); None if absent or bad."""
    raw = (pod.metadata.annotations or {}).get(batch.COMPLETION_INDEX) \
        or (pod.metadata.labels or {}).get(batch.COMPLETION_INDEX)
    if raw is None or not raw.isdigit():
        return None
    index = int(raw)
    return index if completions is None or index < completions else None


def compress_indexes(indexes: Iterable[int]) -> str:
    """Sorted indexes as Kubernetes writes completedIndexes: `0-2,5,7-8`."""
    out: list[str] = []
    run: list[int] = []
    for i in sorted(set(indexes)):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(_run_text(run))
        run = [i]
    if run:
        out.append(_run_text(run))
    return ",".join(out)


def _run_text(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"


# --- failures and back-off ---------------------------------------------------------------------

def restarts(pod: t.Pod) -> int:
    statuses = [*(pod.status.initContainerStatuses or []), *(pod.status.containerStatuses or [])] \
        if pod.status else []
    return sum(cs.restartCount for cs in statuses)


def past_backoff_limit_on_failure(active: list[t.Pod], backoff_limit: int) -> bool:
    """restartPolicy OnFailure: the kubelet restarts in place, so failures are the active pods' restarts."""
    total = sum(restarts(p) for p in active if p.status and p.status.phase in ("Running", "Pending"))
    return total > 0 if backoff_limit == 0 else total >= backoff_limit


def finish_time(pod: t.Pod) -> dt.datetime | None:
    """When a finished pod's last container stopped (else its last condition change, else its creation)."""
    stamps = [w.parse_time(cs.state.terminated.finishedAt) for cs in (pod.status.containerStatuses or [])
              if cs.state and cs.state.terminated] if pod.status else []
    found = [s for s in stamps if s is not None]
    if found:
        return max(found)
    conds = [w.parse_time(c.lastTransitionTime) for c in (pod.status.conditions or [])] if pod.status else []
    known = [c for c in conds if c is not None]
    return max(known) if known else w.parse_time(pod.metadata.creationTimestamp)


def backoff_remaining(succeeded: list[t.Pod], failed: list[t.Pod], now: dt.datetime, base_s: float,
                      max_s: float) -> float:
    """Seconds before a replacement pod may start: base·2^(n-1), capped, after the n-th failure since the
    last success (Kubernetes' pod failure back-off for Jobs)."""
    last_success = max((f for f in map(finish_time, succeeded) if f is not None), default=None)
    failures = [f for f in map(finish_time, failed) if f is not None and (last_success is None or f > last_success)]
    if not failures:
        return 0.0
    delay = min(max_s, base_s * 2 ** (len(failures) - 1))
    return max(0.0, (max(failures) + dt.timedelta(seconds=delay) - now).total_seconds())


# --- pods ----------------------------------------------------------------------------------------

def pod_for(job: batch.Job, index: int | None) -> dict[str, Any]:
    """The pod the Job runs (for `index` when Indexed): its template with ownership and index wiring."""
    template = job.spec.template.to_dict()
    meta = dict(template.get("metadata") or {})
    for drop in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "ownerReferences"):
        meta.pop(drop, None)
    spec = template["spec"]
    name = job.metadata.name or ""
    if index is None:
        meta["generateName"] = f"{name}-"
    else:
        meta["generateName"] = f"{name}-{index}-"
        meta["labels"] = {**(meta.get("labels") or {}), batch.COMPLETION_INDEX: str(index)}
        meta["annotations"] = {**(meta.get("annotations") or {}), batch.COMPLETION_INDEX: str(index)}
        spec.setdefault("hostname", f"{name}-{index}")
        for c in [*(spec.get("initContainers") or []), *spec["containers"]]:
            env = [e for e in c.get("env") or [] if e.get("name") != batch.COMPLETION_INDEX_ENV]
            c["env"] = [*env, {"name": batch.COMPLETION_INDEX_ENV, "value": str(index)}]
    meta["ownerReferences"] = [w.owner_ref(job, batch.API_VERSION, KIND)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


# --- conditions ----------------------------------------------------------------------------------

def set_condition(conditions: list[batch.JobCondition], ctype: str, status: str, reason: str, message: str,
                  now: str) -> bool:
    """Add or update a condition in place; the transition time moves only when the status does.
    True when something changed."""
    for c in conditions:
        if c.type == ctype:
            if c.status == status and c.reason == reason and c.message == message:
                return False
            if c.status != status:
                c.lastTransitionTime = now
            c.status, c.reason, c.message, c.lastProbeTime = status, reason, message, now  # type: ignore[assignment]
            return True
    conditions.append(batch.JobCondition(type=ctype, status=status, reason=reason, message=message,  # type: ignore[arg-type]
                                         lastProbeTime=now, lastTransitionTime=now))
    return True


def finished_at(job: batch.Job) -> dt.datetime | None:
    """When the Job reached Complete or Failed (for ttlSecondsAfterFinished)."""
    status = job.status
    if status is None:
        return None
    for c in status.conditions or []:
        if c.type in ("Complete", "Failed") and c.status == "True":
            return w.parse_time(c.lastTransitionTime) or w.parse_time(status.completionTime)
    return None
