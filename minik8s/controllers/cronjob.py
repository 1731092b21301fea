"""CronJob controller: create a Job at each scheduled time (Kubernetes' cronjob controller v2).

Each Job is named NAME-<scheduled time in minutes since the epoch>, so a restarted controller finds
the Job it made instead of firing twice. After an outage only the most recent missed time is
started, and only if it is within `startingDeadlineSeconds` (always, when unset); more than 100
missed times is reported as an event. concurrencyPolicy Allow/Forbid/Replace, suspend, and the
successful/failed history limits (oldest finished Jobs deleted first) behave as in Kubernetes.
Time comes from a Clock so tests move it by hand.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from minik8s.api import batch, cron
from minik8s.api import types as t
from minik8s.client import Client, InformerFactory
from minik8s.client.events import EventRecorder
from minik8s.client.informer import informer_for, object_key
from minik8s.controllers import jobutil as ju
from minik8s.controllers import workloads as w
from minik8s.controllers.base import QueueWorkers
from minik8s.errors import AlreadyExists, NotFound

log = logging.getLogger("minik8s.controllers.cronjob")

KIND = "CronJob"
TOO_MANY_MISSED = 100  # Kubernetes reports more missed start times than this as an event
REQUEUE_SLACK_S = 0.1  # wake just after the scheduled time, not just before it


@dataclass
class CronJobConfig:
    workers: int = 2
    resync_s: float = 30.0


def job_name(cj_name: str, scheduled: dt.datetime) -> str:
    return f"{cj_name}-{int(scheduled.timestamp()) // 60}"


def rfc3339(when: dt.datetime) -> str:
    text = when.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def most_recent_schedule(sched: cron.Schedule, zone: dt.tzinfo, earliest: dt.datetime,
                         now: dt.datetime) -> tuple[dt.datetime | None, int]:
    """The latest scheduled time in (earliest, now], and about how many there were (as Kubernetes counts)."""
    t1 = sched.next(earliest, zone)
    if t1 is None or t1 > now:
        return None, 0
    t2 = sched.next(t1, zone)
    if t2 is None or t2 > now:
        return t1, 1
    interval = max(1.0, (t2 - t1).total_seconds())
    missed = int((now - t1).total_seconds() // interval) + 1
    # find a start close before `now` by widening the look-back, then walk forward: no walk over the
    # whole outage (a year of a once-a-minute schedule)
    window = interval
    while True:
        start = max(t1, now - dt.timedelta(seconds=window))
        found = t1 if start <= t1 else sched.next(start, zone)
        if found is not None and found <= now:
            break
        window *= 2
    latest = found
    while (nxt := sched.next(latest, zone)) is not None and nxt <= now:
        latest = nxt
    return latest, missed


def job_from_template(cj: batch.CronJob, scheduled: dt.datetime, zone: dt.tzinfo) -> dict[str, Any]:
    tmpl = cj.spec.jobTemplate
    meta: dict[str, Any] = {"name": job_name(cj.metadata.name or "", scheduled),
                            "labels": dict(tmpl.metadata.labels or {}),
                            "annotations": {**(tmpl.metadata.annotations or {}),
                                            batch.SCHEDULED_TIMESTAMP_ANNOTATION: rfc3339(scheduled.astimezone(zone))},
                            "ownerReferences": [w.owner_ref(cj, batch.API_VERSION, KIND)]}
    if not meta["labels"]:
        del meta["labels"]
    return {"apiVersion": batch.API_VERSION, "kind": "Job", "metadata": meta, "spec": tmpl.spec.to_dict()}


def _job_ref(job: batch.Job) -> dict[str, Any]:
    return {"apiVersion": batch.API_VERSION, "kind": "Job", "name": job.metadata.name,
            "namespace": job.metadata.namespace, "uid": job.metadata.uid,
            "resourceVersion": job.metadata.resourceVersion}


class CronJobController(QueueWorkers):
    name = "cronjob"

    def __init__(self, client: Client, config: CronJobConfig | None = None, clock: ju.Clock | None = None,
                 informers: InformerFactory | None = None) -> None:
        self.config = config or CronJobConfig()
        super().__init__(self.config.workers)
        self.client = client
        self.clock = clock or ju.SystemClock()
        self.cronjobs = informer_for(informers, client, KIND, resync_seconds=self.config.resync_s)
        self.jobs = informer_for(informers, client, "Job", resync_seconds=self.config.resync_s)
        self.events = EventRecorder(client, "cronjob-controller")
        self.cronjobs.add_handler(lambda o: self.queue.add(object_key(o)),
                                  lambda _o, n: self.queue.add(object_key(n)), None)
        self.jobs.add_handler(self._job_changed, lambda _o, n: self._job_changed(n), self._job_changed)

    def start_informers(self) -> None:
        self.cronjobs.start()
        self.jobs.start()
        self.cronjobs.wait_synced()
        self.jobs.wait_synced()

    def start(self) -> None:
        self.start_informers()
        self.run_workers()
        log.info("cronjob controller started")

    def stop(self) -> None:
        self.shutdown()
        self.cronjobs.stop()
        self.jobs.stop()

    def _job_changed(self, job: Any) -> None:
        ref = w.controller_ref(job)
        if ref is not None and ref.kind == KIND:
            self.queue.add(f"{job.metadata.namespace}/{ref.name}")

    # --- sync -----------------------------------------------------------------------------------
    def sync(self, key: str) -> None:
        cj: batch.CronJob | None = self.cronjobs.get(key)
        if cj is None:
            return
        now = self.clock.now()
        status = (cj.status or batch.CronJobStatus()).model_copy(deep=True)
        jobs = [j for j in self.jobs.list() if j.metadata.namespace == cj.metadata.namespace
                and (ref := w.controller_ref(j)) is not None and ref.uid == cj.metadata.uid]
        self._reconcile_active(cj, status, jobs)
        if cj.metadata.deletionTimestamp is None and not cj.spec.suspend:
            self._schedule(cj, key, status, jobs, now)
        self._write_status(cj, status)
        self._trim_history(cj, jobs)

    def _reconcile_active(self, cj: batch.CronJob, status: batch.CronJobStatus, jobs: list[batch.Job]) -> None:
        active = {r.uid: r for r in status.active or []}
        for job in jobs:
            finished = batch.job_finished(job.to_dict())
            uid = job.metadata.uid
            if uid in active and finished:
                del active[uid]
                self.events.record(cj, "Normal", "SawCompletedJob",
                                   f"Saw completed job: {job.metadata.name}, condition: {finished}")
            elif uid not in active and not finished:
                # made by us before a crash lost the status write: it still counts for concurrency
                active[uid] = t.ObjectReference.model_validate(_job_ref(job))
            completed = w.parse_time(job.status.completionTime if job.status else None)
            last = w.parse_time(status.lastSuccessfulTime)
            if finished == "Complete" and completed and (last is None or completed > last):
                status.lastSuccessfulTime = w.iso(completed)
        known = {j.metadata.uid for j in jobs}
        for uid, ref in list(active.items()):
            if uid not in known and not self._job_exists(ref):
                del active[uid]
        status.active = list(active.values()) or None

    def _job_exists(self, ref: Any) -> bool:
        """The informer may not have seen a Job we just made: ask the API before forgetting it."""
        try:
            return bool(self.client.get("Job", ref.name, ref.namespace).metadata.uid == ref.uid)
        except NotFound:
            return False

    def _schedule(self, cj: batch.CronJob, key: str, status: batch.CronJobStatus, jobs: list[batch.Job],
                  now: dt.datetime) -> None:
        try:
            zone = cron.zone(cj.spec.timeZone)
            sched = cron.parse(cj.spec.schedule)
        except cron.CronError as exc:
            self.events.record(cj, "Warning", "InvalidSchedule", str(exc))
            return
        earliest = w.parse_time(status.lastScheduleTime) or w.parse_time(cj.metadata.creationTimestamp) or now
        deadline = cj.spec.startingDeadlineSeconds
        if deadline is not None:
            earliest = max(earliest, now - dt.timedelta(seconds=deadline))
        scheduled, missed = most_recent_schedule(sched, zone, earliest, now)
        self._requeue_next(key, sched, zone, now)
        if missed > TOO_MANY_MISSED:
            self.events.record(cj, "Warning", "TooManyMissedTimes",
                               f"too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds "
                               "or check clock skew")
        if scheduled is None:
            return
        if deadline is not None and scheduled + dt.timedelta(seconds=deadline) < now:
            self.events.record(cj, "Warning", "MissSchedule", f"Missed scheduled time to start a job: "
                                                              f"{rfc3339(scheduled)}")
            return
        name = job_name(cj.metadata.name or "", scheduled)
        if any(j.metadata.name == name for j in jobs) or any(r.name == name for r in status.active or []):
            status.lastScheduleTime = w.iso(scheduled)  # made before, its status write lost
            return
        if cj.spec.concurrencyPolicy == "Forbid" and status.active:
            self.events.record(cj, "Normal", "JobAlreadyActive", "Not starting job because prior execution is "
                                                                 "running and concurrency policy is Forbid")
            return
        if cj.spec.concurrencyPolicy == "Replace":
            for ref in status.active or []:
                self._delete_job(cj, ref.name or "")
            status.active = None
        self._create_job(cj, status, scheduled, zone)

    def _create_job(self, cj: batch.CronJob, status: batch.CronJobStatus, scheduled: dt.datetime,
                    zone: dt.tzinfo) -> None:
        body = job_from_template(cj, scheduled, zone)
        try:
            job = self.client.create(body, cj.metadata.namespace)
        except AlreadyExists:
            job = self.client.get("Job", body["metadata"]["name"], cj.metadata.namespace)
            if batch.job_finished(job.to_dict()):
                job = None
        else:
            self.events.record(cj, "Normal", "SuccessfulCreate", f"Created job {job.metadata.name}")
            log.info("created job", extra={"cronjob": cj.metadata.name, "job": job.metadata.name})
        if job is not None and not any(r.uid == job.metadata.uid for r in status.active or []):
            status.active = [*(status.active or []), t.ObjectReference.model_validate(_job_ref(job))]
        status.lastScheduleTime = w.iso(scheduled)

    def _delete_job(self, cj: batch.CronJob, name: str) -> None:
        try:
            self.client.delete("Job", name, cj.metadata.namespace, propagation_policy="Foreground")
        except NotFound:
            log.info("job to delete was already gone", extra={"cronjob": cj.metadata.name, "job": name})
            return
        self.events.record(cj, "Normal", "SuccessfulDelete", f"Deleted job {name}")

    def _requeue_next(self, key: str, sched: cron.Schedule, zone: dt.tzinfo, now: dt.datetime) -> None:
        nxt = sched.next(now, zone)
        if nxt is not None:
            self.queue.add_after(key, (nxt - now).total_seconds() + REQUEUE_SLACK_S)

    def _write_status(self, cj: batch.CronJob, status: batch.CronJobStatus) -> None:
        if cj.status is not None and cj.status.to_dict() == status.to_dict():
            return
        if cj.status is None and not status.to_dict():
            return
        body = cj.to_dict()
        body["status"] = status.to_dict()
        self.client.update_status(body)

    def _trim_history(self, cj: batch.CronJob, jobs: list[batch.Job]) -> None:
        """Delete the oldest finished Jobs beyond the successful/failed history limits."""
        for outcome, limit in (("Complete", cj.spec.successfulJobsHistoryLimit),
                               ("Failed", cj.spec.failedJobsHistoryLimit)):
            done = [j for j in jobs if batch.job_finished(j.to_dict()) == outcome and not j.metadata.deletionTimestamp]
            if len(done) <= limit:
                continue
            done.sort(key=lambda j: ((j.status.startTime if j.status else None) or j.metadata.creationTimestamp or "",
                                     j.metadata.name or ""))
            for job in done[:len(done) - limit]:
                self._delete_job(cj, job.metadata.name or "")
