"""A Deployment's Progressing condition and its progressDeadlineSeconds, as Kubernetes' deployment controller
(`syncRolloutStatus`) keeps them.

- complete rollout (every replica updated and available, no old pods): True, NewReplicaSetAvailable;
- progress since the last sync (a new ReplicaSet, or more updated/ready/available replicas, or fewer old
  ones): True, ReplicaSetUpdated, with lastUpdateTime now;
- no progress for `progressDeadlineSeconds` since lastUpdateTime: False, ProgressDeadlineExceeded (kept
  until progress resumes; `kubectl rollout status` then fails);
- paused: Unknown, DeploymentPaused (no deadline runs while paused).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from minik8s.api import apps
from minik8s.controllers.workloads import parse_time

PROGRESSING = "Progressing"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
RS_UPDATED = "ReplicaSetUpdated"
DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"


@dataclass(frozen=True)
class Counts:
    """The replica counts a sync computed, compared with the last status to tell progress."""

    updated: int
    replicas: int
    ready: int
    available: int


@dataclass(frozen=True)
class Progress:
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    #: Progress was made now: lastUpdateTime moves (the deadline counts from it).
    bump: bool


def _progressed(old: apps.DeploymentStatus | None, new: Counts) -> bool:
    if old is None:
        return True
    return (new.updated > (old.updatedReplicas or 0) or new.ready > (old.readyReplicas or 0)
            or new.available > (old.availableReplicas or 0)
            or (new.replicas - new.updated) < ((old.replicas or 0) - (old.updatedReplicas or 0)))


def progressing(d: apps.Deployment, counts: Counts, complete: bool, new_rs: str, now: dt.datetime) -> Progress:
    """The Progressing condition the deployment should have now."""
    old = d.status
    prev = next((c for c in (old.conditions if old else None) or [] if c.type == PROGRESSING), None)
    if d.spec.paused:
        return Progress("Unknown", PAUSED, "Deployment is paused", False)
    if complete:
        return Progress("True", NEW_RS_AVAILABLE, f'ReplicaSet "{new_rs}" has successfully progressed.', False)
    updating = Progress("True", RS_UPDATED, f'ReplicaSet "{new_rs}" is progressing.', True)
    if prev is None or prev.reason == PAUSED or f'"{new_rs}"' not in (prev.message or "") \
            or _progressed(old, counts):
        return updating  # a new rollout, a resumed one, or one that moved
    if prev.reason == NEW_RS_AVAILABLE:  # was complete, nothing moved (a pod went unready): no deadline
        return Progress("True", NEW_RS_AVAILABLE, prev.message or "", False)
    if prev.reason == DEADLINE_EXCEEDED:
        return Progress("False", DEADLINE_EXCEEDED, prev.message or "", False)
    last = parse_time(prev.lastUpdateTime) or now
    if now >= last + dt.timedelta(seconds=d.spec.progressDeadlineSeconds):
        return Progress("False", DEADLINE_EXCEEDED, f'ReplicaSet "{new_rs}" has timed out progressing.', False)
    return Progress("True", RS_UPDATED, f'ReplicaSet "{new_rs}" is progressing.', False)


def condition(p: Progress, prev: apps.DeploymentCondition | None, now: str) -> apps.DeploymentCondition:
    """The condition object: unchanged when nothing moved, lastTransitionTime only on a status change."""
    if prev is not None and prev.status == p.status and prev.reason == p.reason and not p.bump:
        return prev
    changed = prev is None or prev.status != p.status
    return apps.DeploymentCondition(
        type=PROGRESSING, status=p.status, reason=p.reason, message=p.message, lastUpdateTime=now,
        lastTransitionTime=now if changed or prev is None else prev.lastTransitionTime)


def recheck_after(d: apps.Deployment, cond: apps.DeploymentCondition, now: dt.datetime) -> float | None:
    """Seconds until the deadline of a rollout in progress (to sync again then and notice it), else None."""
    if cond.status != "True" or cond.reason != RS_UPDATED:
        return None
    last = parse_time(cond.lastUpdateTime) or now
    return max(0.0, (last + dt.timedelta(seconds=d.spec.progressDeadlineSeconds) - now).total_seconds()) + 1.0
