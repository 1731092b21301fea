"""Pure logic of batch/v1: Job defaults and columns, completion indexes, back-off, missed cron times."""

from __future__ import annotations

import datetime as dt
from typing import Any

from minik8s.api import batch, cron
from minik8s.api import types as t
from minik8s.controllers import jobutil as ju
from minik8s.controllers.cronjob import job_name, most_recent_schedule, rfc3339

UTC = dt.UTC
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def pod(phase: str, finished: dt.datetime | None = None, restarts: int = 0, index: str | None = None) -> t.Pod:
    state = {"terminated": {"exitCode": 0, "finishedAt": finished.strftime("%Y-%m-%dT%H:%M:%SZ")}} if finished \
        else {"running": {}}
    return t.Pod.model_validate({
        "metadata": {"name": "p", "annotations": {batch.COMPLETION_INDEX: index} if index is not None else None,
                     "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        "status": {"phase": phase, "containerStatuses": [{"name": "main", "ready": False, "restartCount": restarts,
                                                          "image": "busybox", "state": state}]}})


def test_compress_indexes() -> None:
    assert ju.compress_indexes([]) == ""
    assert ju.compress_indexes([2, 0, 1, 5, 7, 8, 8]) == "0-2,5,7-8"


def test_pod_index_ignores_bad_and_out_of_range() -> None:
    assert ju.pod_index(pod("Succeeded", index="2"), 3) == 2
    assert ju.pod_index(pod("Succeeded", index="3"), 3) is None
    assert ju.pod_index(pod("Succeeded", index="x"), 3) is None


def test_failure_backoff_doubles_and_resets_after_success() -> None:
    fails = [pod("Failed", T0), pod("Failed", T0 - dt.timedelta(seconds=5))]
    # two failures since the last success: 10s * 2 from the latest failure
    assert ju.backoff_remaining([], fails, T0, 10, 360) == 20
    assert ju.backoff_remaining([], fails, T0 + dt.timedelta(seconds=25), 10, 360) == 0
    # a success after the first failure: only one counts
    assert ju.backoff_remaining([pod("Succeeded", T0 - dt.timedelta(seconds=1))], fails, T0, 10, 360) == 10
    many = [pod("Failed", T0 - dt.timedelta(seconds=i)) for i in range(12)]
    assert ju.backoff_remaining([], many, T0, 10, 360) == 360


def test_on_failure_counts_restarts_of_active_pods() -> None:
    assert not ju.past_backoff_limit_on_failure([pod("Running", restarts=1)], 2)
    assert ju.past_backoff_limit_on_failure([pod("Running", restarts=1), pod("Running", restarts=1)], 2)
    assert ju.past_backoff_limit_on_failure([pod("Running", restarts=1)], 0)


def job(**spec: Any) -> batch.Job:
    return batch.Job.model_validate({"metadata": {"name": "pi", "uid": "u1"}, "spec": {**spec, "template": {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}})


def test_defaults_and_indexed_pod() -> None:
    assert (job().spec.completions, job().spec.parallelism) == (1, 1)
    assert (job(parallelism=4).spec.completions, job(completions=4).spec.parallelism) == (None, 1)
    obj = job().to_dict()
    batch.job_defaults(obj)
    assert obj["spec"]["selector"] == {"matchLabels": {batch.CONTROLLER_UID_LABEL: "u1"}}
    made = ju.pod_for(batch.Job.model_validate(obj), 2)
    assert made["metadata"]["generateName"] == "pi-2-" and made["spec"]["hostname"] == "pi-2"
    assert made["metadata"]["labels"][batch.JOB_NAME_LABEL] == "pi"
    assert {"name": "JOB_COMPLETION_INDEX", "value": "2"} in made["spec"]["containers"][0]["env"]
    assert made["metadata"]["ownerReferences"][0]["kind"] == "Job"


def cells(columns: list[Any], obj: dict[str, Any]) -> dict[str, str]:
    return {c.name: c.get(obj) for c in columns if not c.wide}


def test_job_and_cronjob_columns() -> None:
    running = {"metadata": {"name": "a"}, "spec": {"completions": 3}, "status": {"succeeded": 1}}
    assert cells(batch.JOB_COLUMNS, running)["STATUS"] == "Running"
    assert cells(batch.JOB_COLUMNS, running)["COMPLETIONS"] == "1/3"
    assert cells(batch.JOB_COLUMNS, running)["DURATION"] == ""
    queue = {"metadata": {"name": "q"}, "spec": {"parallelism": 2}, "status": {
        "startTime": "2024-05-01T12:00:00Z", "completionTime": "2024-05-01T12:01:05Z",
        "conditions": [{"type": "Complete", "status": "True"}]}}
    assert [cells(batch.JOB_COLUMNS, queue)[k] for k in ("STATUS", "COMPLETIONS", "DURATION")] == \
        ["Complete", "0/1 of 2", "65s"]
    cj = {"metadata": {"name": "c"}, "spec": {"schedule": "*/1 * * * *", "suspend": False},
          "status": {"active": [{"name": "c-1"}]}}
    row = cells(batch.CRONJOB_COLUMNS, cj)
    assert list(row) == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"]
    assert [row[k] for k in ("TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE")] == ["<none>", "False", "1", "<none>"]


def test_most_recent_schedule() -> None:
    every = cron.parse("*/5 * * * *")
    assert most_recent_schedule(every, UTC, T0, T0 + dt.timedelta(minutes=4)) == (None, 0)
    assert most_recent_schedule(every, UTC, T0, T0 + dt.timedelta(minutes=7)) == (T0 + dt.timedelta(minutes=5), 1)
    latest, missed = most_recent_schedule(every, UTC, T0, T0 + dt.timedelta(days=2, minutes=3))
    assert latest == T0 + dt.timedelta(days=2) and missed == 2 * 24 * 12
    # an uneven schedule: the answer is still a real scheduled time
    uneven = cron.parse("0 0 1,2,20 * *")
    latest, _ = most_recent_schedule(uneven, UTC, T0, dt.datetime(2024, 9, 10, tzinfo=UTC))
    assert latest == dt.datetime(2024, 9, 2, tzinfo=UTC)


def test_job_names_are_minutes_since_epoch() -> None:
    assert job_name("hello", T0) == f"hello-{int(T0.timestamp()) // 60}"
    assert rfc3339(T0) == "2024-05-01T12:00:00Z"
    assert rfc3339(T0.astimezone(cron.zone("Asia/Tokyo"))) == "2024-05-01T21:00:00+09:00"
