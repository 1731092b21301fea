"""A Deployment's Progressing condition and progressDeadlineSeconds without servers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from minik8s.api import apps
from minik8s.controllers import deployprogress as dp

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def deployment(status: dict[str, Any] | None = None, paused: bool = False, deadline: int = 10) -> apps.Deployment:
    return apps.Deployment.model_validate({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "paused": paused,
                 "progressDeadlineSeconds": deadline,
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}},
        **({"status": status} if status else {})})


def stuck_status(reason: str, updated_at: dt.datetime, rs: str = "web-abc") -> dict[str, Any]:
    return {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 0, "availableReplicas": 0,
            "conditions": [{"type": "Progressing", "status": "True", "reason": reason,
                            "message": f'ReplicaSet "{rs}" is progressing.', "lastUpdateTime": iso(updated_at),
                            "lastTransitionTime": iso(updated_at)}]}


STUCK = dp.Counts(updated=2, replicas=2, ready=0, available=0)


def test_a_new_rollout_progresses_and_bumps() -> None:
    p = dp.progressing(deployment(), dp.Counts(0, 0, 0, 0), False, "web-abc", T0)
    assert (p.status, p.reason, p.bump) == ("True", "ReplicaSetUpdated", True)


def test_no_progress_past_the_deadline_is_exceeded_and_stays_so() -> None:
    d = deployment(stuck_status("ReplicaSetUpdated", T0))
    within = dp.progressing(d, STUCK, False, "web-abc", T0 + dt.timedelta(seconds=5))
    assert (within.status, within.reason, within.bump) == ("True", "ReplicaSetUpdated", False)
    late = dp.progressing(d, STUCK, False, "web-abc", T0 + dt.timedelta(seconds=11))
    assert (late.status, late.reason) == ("False", "ProgressDeadlineExceeded")
    assert late.message == 'ReplicaSet "web-abc" has timed out progressing.'
    cond = dp.condition(late, d.status.conditions[0] if d.status and d.status.conditions else None, iso(T0))
    d2 = deployment({**stuck_status("x", T0), "conditions": [cond.to_dict()]})
    again = dp.progressing(d2, STUCK, False, "web-abc", T0 + dt.timedelta(seconds=12))
    assert again.reason == "ProgressDeadlineExceeded"


def test_progress_made_resets_the_deadline_and_completion_wins() -> None:
    d = deployment(stuck_status("ReplicaSetUpdated", T0))
    moved = dp.progressing(d, dp.Counts(2, 2, 1, 1), False, "web-abc", T0 + dt.timedelta(seconds=60))
    assert (moved.status, moved.reason, moved.bump) == ("True", "ReplicaSetUpdated", True)
    done = dp.progressing(d, dp.Counts(2, 2, 2, 2), True, "web-abc", T0 + dt.timedelta(seconds=60))
    assert (done.status, done.reason) == ("True", "NewReplicaSetAvailable")


def test_a_new_replica_set_is_progress_and_paused_is_unknown() -> None:
    d = deployment(stuck_status("ProgressDeadlineExceeded", T0, rs="web-old"))
    p = dp.progressing(d, STUCK, False, "web-new", T0 + dt.timedelta(seconds=600))
    assert (p.status, p.reason) == ("True", "ReplicaSetUpdated")
    paused = dp.progressing(deployment(stuck_status("ReplicaSetUpdated", T0), paused=True), STUCK, False,
                            "web-abc", T0 + dt.timedelta(seconds=600))
    assert (paused.status, paused.reason) == ("Unknown", "DeploymentPaused")


def test_recheck_at_the_deadline_only_while_progressing() -> None:
    d = deployment()
    cond = apps.DeploymentCondition(type="Progressing", status="True", reason="ReplicaSetUpdated",
                                    lastUpdateTime=iso(T0))
    assert dp.recheck_after(d, cond, T0 + dt.timedelta(seconds=4)) == 7.0
    cond.reason = "NewReplicaSetAvailable"
    assert dp.recheck_after(d, cond, T0) is None


def test_rollout_status_sees_the_exceeded_deadline() -> None:
    from cli.workloads import exceeded_progress_deadline

    assert not exceeded_progress_deadline(deployment(stuck_status("ReplicaSetUpdated", T0)))
    failed = stuck_status("ReplicaSetUpdated", T0)
    failed["conditions"][0].update(status="False", reason="ProgressDeadlineExceeded")
    assert exceeded_progress_deadline(deployment(failed))
    assert not exceeded_progress_deadline(deployment())
