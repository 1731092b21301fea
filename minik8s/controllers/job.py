"""Job controller: run pods until `completions` succeed, or fail the Job (Kubernetes' job controller).

Pods are created from the template with a controller ownerReference (so the garbage collector
removes them with the Job) and counted from the informer: Succeeded pods toward completions
(distinct indexes when `completionMode: Indexed`), Failed pods toward `backoffLimit` (for
restartPolicy OnFailure the kubelet restarts containers in place, so their restarts count).
A replacement after a failure waits 10s·2^(n-1), capped at 6 min. The Job fails with
BackoffLimitExceeded or DeadlineExceeded (activeDeadlineSeconds) and its active pods are deleted;
`suspend` deletes active pods until resumed; `ttlSecondsAfterFinished` deletes a finished Job with
its pods. Status is written last, as a whole (PUT /status), so fields that drop to zero go away.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from minik8s.api import batch
from minik8s.api import types as t
from minik8s.client import Client, InformerFactory
from minik8s.client.events import EventRecorder
from minik8s.client.informer import informer_for, object_key
from minik8s.controllers import jobutil as ju
from minik8s.controllers import workloads as w
from minik8s.controllers.base import QueueWorkers
from minik8s.errors import AlreadyExists, MiniK8sError, NotFound

log = logging.getLogger("minik8s.controllers.job")

KIND = ju.KIND


@dataclass
class JobConfig:
    workers: int = 2
    burst: int = 100  # at most this many pods created or deleted per sync
    resync_s: float = 30.0
    backoff_base_s: float = 10.0  # Kubernetes' DefaultJobPodFailureBackOff
    backoff_max_s: float = 360.0  # Kubernetes' MaxJobPodFailureBackOff


@dataclass
class _Counts:
    active: list[t.Pod]
    terminating: list[t.Pod]
    succeeded: list[t.Pod]
    failed: list[t.Pod]
    done_indexes: set[int]
    indexed: bool

    @property
    def succeeded_count(self) -> int:
        return len(self.done_indexes) if self.indexed else len(self.succeeded)


class JobController(QueueWorkers):
    name = "job"

    def __init__(self, client: Client, config: JobConfig | None = None, clock: ju.Clock | None = None,
                 informers: InformerFactory | None = None) -> None:
        self.config = config or JobConfig()
        super().__init__(self.config.workers)
        self.client = client
        self.clock = clock or ju.SystemClock()
        self.jobs = informer_for(informers, client, KIND, resync_seconds=self.config.resync_s)
        self.pods = informer_for(informers, client, "Pod", resync_seconds=self.config.resync_s)
        self.events = EventRecorder(client, "job-controller")
        self.expectations = w.Expectations()
        # uids of Jobs this controller finished: a cache that has not yet seen that status write must not
        # make the Job run again
        self._finished: set[str] = set()
        self.jobs.add_handler(lambda o: self.queue.add(object_key(o)), lambda _o, n: self.queue.add(object_key(n)),
                              self._job_deleted)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    def start(self) -> None:
        self.jobs.start()
        self.pods.start()
        self.jobs.wait_synced()
        self.pods.wait_synced()
        self.run_workers()
        log.info("job controller started")

    def stop(self) -> None:
        self.shutdown()
        self.jobs.stop()
        self.pods.stop()

    # --- event handlers -------------------------------------------------------------------------
    def _job_deleted(self, job: batch.Job) -> None:
        self.expectations.forget(object_key(job))
        self._finished.discard(job.metadata.uid or "")

    def _owner_key(self, pod: t.Pod) -> str | None:
        ref = w.controller_ref(pod)
        if ref is None or ref.kind != KIND:
            return None
        job = self.jobs.get(f"{pod.metadata.namespace}/{ref.name}")
        return f"{pod.metadata.namespace}/{ref.name}" if job is not None and job.metadata.uid == ref.uid else None

    def _pod_added(self, pod: t.Pod) -> None:
        if key := self._owner_key(pod):
            self.expectations.creation_observed(key)
            self.queue.add(key)

    def _pod_updated(self, old: t.Pod, new: t.Pod) -> None:
        if key := self._owner_key(new):
            if new.metadata.deletionTimestamp and not old.metadata.deletionTimestamp:
                self.expectations.deletion_observed(key, new.metadata.uid)
            self.queue.add(key)

    def _pod_deleted(self, pod: t.Pod) -> None:
        if key := self._owner_key(pod):
            self.expectations.deletion_observed(key, pod.metadata.uid)
            self.queue.add(key)

    # --- sync -----------------------------------------------------------------------------------
    def sync(self, key: str) -> None:
        job: batch.Job | None = self.jobs.get(key)
        if job is None:
            self.expectations.forget(key)
            return
        now = self.clock.now()
        if batch.job_finished({"status": job.status.to_dict() if job.status else {}}):
            self._expire(job, key)
            return
        if job.metadata.uid in self._finished:
            return  # our cache lags our own write: its update event brings us back
        counts = self._count(job)
        status = (job.status or batch.JobStatus()).model_copy(deep=True)
        conditions = list(status.conditions or [])
        stamp = w.iso(now)
        deleted = 0
        spec = job.spec
        if spec.suspend:
            deleted = self._delete_pods(job, counts.active)
            counts.active = []
            if ju.set_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended", stamp):
                self.events.record(job, "Normal", "Suspended", "Job suspended")
        else:
            if any(c.type == "Suspended" and c.status == "True" for c in conditions):
                ju.set_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed", stamp)
                status.startTime = stamp  # activeDeadlineSeconds counts from the resume
                self.events.record(job, "Normal", "Resumed", "Job resumed")
            status.startTime = status.startTime or stamp
            finish = self._finish_reason(job, counts, status.startTime, now)
            if finish is not None:
                deleted = self._delete_pods(job, counts.active)
                counts.active = []
                self._finish(job, conditions, status, finish, stamp)
            elif self.expectations.satisfied(key) and job.metadata.deletionTimestamp is None:
                self._manage(job, key, counts, now)
            self._requeue_deadline(job, key, status.startTime, now, finish is None)
        self._write_status(job, status, conditions, counts, deleted)

    def _count(self, job: batch.Job) -> _Counts:
        uid, ns = job.metadata.uid, job.metadata.namespace
        pods = [p for p in self.pods.list() if p.metadata.namespace == ns
                and (ref := w.controller_ref(p)) is not None and ref.uid == uid]
        phase = {p.metadata.uid: (p.status.phase if p.status else None) for p in pods}
        succeeded = [p for p in pods if phase[p.metadata.uid] == "Succeeded"]
        failed = [p for p in pods if phase[p.metadata.uid] == "Failed"]
        active = [p for p in pods if w.is_active(p)]
        terminating = [p for p in pods if w.is_terminating(p) and phase[p.metadata.uid] not in ("Succeeded", "Failed")]
        indexed = job.spec.completionMode == "Indexed"
        done = {i for p in succeeded if (i := ju.pod_index(p, job.spec.completions)) is not None} if indexed else set()
        return _Counts(active, terminating, succeeded, failed, done, indexed)

    def _finish_reason(self, job: batch.Job, counts: _Counts, start: str | None,
                       now: dt.datetime) -> tuple[str, str, str] | None:
        spec = job.spec
        if len(counts.failed) > spec.backoffLimit or (
                spec.template.spec.restartPolicy == "OnFailure"
                and ju.past_backoff_limit_on_failure(counts.active, spec.backoffLimit)):
            return "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        started = w.parse_time(start)
        if spec.activeDeadlineSeconds is not None and started is not None and \
                (now - started).total_seconds() >= spec.activeDeadlineSeconds:
            return "Failed", "DeadlineExceeded", "Job was active longer than specified deadline"
        if spec.completionMode == "Indexed":
            complete = len(counts.done_indexes) >= (spec.completions or 0)
        elif spec.completions is not None:
            complete = len(counts.succeeded) >= spec.completions
        else:  # a work queue: done once one pod succeeded and the others have finished
            complete = bool(counts.succeeded) and not counts.active
        return ("Complete", "CompletionsReached", "Reached expected number of succeeded pods") if complete else None

    def _finish(self, job: batch.Job, conditions: list[batch.JobCondition], status: batch.JobStatus,
                finish: tuple[str, str, str], stamp: str) -> None:
        ctype, reason, message = finish
        interim = "SuccessCriteriaMet" if ctype == "Complete" else "FailureTarget"
        ju.set_condition(conditions, interim, "True", reason, message, stamp)
        ju.set_condition(conditions, ctype, "True", reason, message, stamp)
        if ctype == "Complete":
            status.completionTime = stamp
            self.events.record(job, "Normal", "Completed", "Job completed")
        else:
            self.events.record(job, "Warning", reason, message)
        log.info("job finished", extra={"job": job.metadata.name, "condition": ctype, "reason": reason})
        if job.spec.ttlSecondsAfterFinished is not None:
            self.queue.add_after(object_key(job), float(job.spec.ttlSecondsAfterFinished))

    def _requeue_deadline(self, job: batch.Job, key: str, start: str | None, now: dt.datetime,
                          running: bool) -> None:
        started = w.parse_time(start)
        if running and job.spec.activeDeadlineSeconds is not None and started is not None:
            left = job.spec.activeDeadlineSeconds - (now - started).total_seconds()
            self.queue.add_after(key, max(0.0, left))

    # --- pods -----------------------------------------------------------------------------------
    def _manage(self, job: batch.Job, key: str, counts: _Counts, now: dt.datetime) -> None:
        spec = job.spec
        parallelism = spec.parallelism or 0
        busy = len(counts.active) + (len(counts.terminating) if spec.podReplacementPolicy == "Failed" else 0)
        excess: list[t.Pod] = []
        indexes: list[int | None] = []
        if spec.completionMode == "Indexed":
            seen: set[int] = set()
            for pod in sorted(counts.active, key=lambda p: p.metadata.creationTimestamp or ""):
                i = ju.pod_index(pod, spec.completions)
                if i is None or i in seen or i in counts.done_indexes:
                    excess.append(pod)  # a duplicate, or an index that already succeeded
                else:
                    seen.add(i)
            pending = [i for i in range(spec.completions or 0) if i not in counts.done_indexes and i not in seen]
            indexes = list(pending[:max(0, parallelism - busy + len(excess))])
        else:
            if spec.completions is None:
                want = len(counts.active) if counts.succeeded else parallelism
            else:
                want = min(parallelism, spec.completions - len(counts.succeeded))
            if busy < want:
                indexes = [None] * (want - busy)
            elif len(counts.active) > want:
                excess = w.pods_to_delete(counts.active, len(counts.active) - want)
        if excess:
            self._delete_pods(job, excess[:self.config.burst])
        if indexes:
            wait = ju.backoff_remaining(counts.succeeded, counts.failed, now, self.config.backoff_base_s,
                                        self.config.backoff_max_s)
            if wait > 0:
                self.queue.add_after(key, wait)
                return
            self._create_pods(job, key, indexes[:self.config.burst])

    def _create_pods(self, job: batch.Job, key: str, indexes: list[int | None]) -> None:
        self.expectations.expect(key, adds=len(indexes))
        for done, index in enumerate(indexes):
            try:
                pod = self.client.create(ju.pod_for(job, index), job.metadata.namespace)
            except AlreadyExists:
                self.expectations.lower(key, adds=1)
                continue
            except MiniK8sError:
                self.expectations.lower(key, adds=len(indexes) - done)
                raise
            self.events.record(job, "Normal", "SuccessfulCreate", f"Created pod: {pod.metadata.name}")

    def _delete_pods(self, job: batch.Job, pods: list[t.Pod]) -> int:
        deleted = 0
        key = object_key(job)
        self.expectations.expect(key, deletes={p.metadata.uid or "" for p in pods})
        for pod in pods:
            try:
                self.client.delete("Pod", pod.metadata.name or "", pod.metadata.namespace)
                deleted += 1
            except NotFound:
                self.expectations.lower(key, uid=pod.metadata.uid)
                continue
            except MiniK8sError:
                self.expectations.lower(key, uid=pod.metadata.uid)
                raise
            self.events.record(job, "Normal", "SuccessfulDelete", f"Deleted pod: {pod.metadata.name}")
        return deleted

    # --- status and TTL -------------------------------------------------------------------------
    def _write_status(self, job: batch.Job, status: batch.JobStatus, conditions: list[batch.JobCondition],
                      counts: _Counts, deleted: int) -> None:
        status.conditions = conditions or None
        # Kubernetes omits zero counts (omitempty) but always reports ready and terminating
        status.active = len(counts.active) or None
        status.succeeded = counts.succeeded_count or None
        status.failed = len(counts.failed) or None
        status.ready = sum(1 for p in counts.active if w.is_ready(p))
        status.terminating = len(counts.terminating) + deleted
        status.completedIndexes = ju.compress_indexes(counts.done_indexes) or None
        if job.status is not None and job.status.to_dict() == status.to_dict():
            return
        body = job.to_dict()
        body["status"] = status.to_dict()
        self.client.update_status(body)
        if batch.job_finished(body):
            self._finished.add(job.metadata.uid or "")

    def _expire(self, job: batch.Job, key: str) -> None:
        """ttlSecondsAfterFinished: delete the finished Job, its pods first (as Kubernetes' TTL controller)."""
        ttl = job.spec.ttlSecondsAfterFinished
        done = ju.finished_at(job)
        if ttl is None or done is None or job.metadata.deletionTimestamp:
            return
        left = (done - self.clock.now()).total_seconds() + ttl
        if left > 0:
            self.queue.add_after(key, left)
            return
        try:
            self.client.delete(KIND, job.metadata.name or "", job.metadata.namespace, propagation_policy="Foreground")
        except NotFound:
            return
        log.info("deleted finished job (ttlSecondsAfterFinished)", extra={"job": key})
