"""Jobs and CronJobs against a real etcd + API server, with the controllers in-process.

A fake kubelet in this module runs job pods by their command: `true` succeeds, `false` fails
(restartPolicy Never: the pod fails; OnFailure: its container restarts in place), anything else
keeps running. The CronJob controller is driven by a clock the test moves.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from minik8s import Client, errors
from minik8s.api import batch
from minik8s.controllers.cronjob import CronJobController, job_name
from minik8s.controllers.gc import GarbageCollector
from minik8s.controllers.job import JobConfig, JobController
from tests.conftest import TEST_TOKEN, uniq
from tests.integration.test_workloads import cli_env, run_cli, running_controllers, wait_for  # noqa: F401  (cli_env: a fixture)

POLL_S = 0.05
RUN_S = 0.2  # the fake kubelet lets a pod run this long before it finishes


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class JobKubelet:
    """Binds the pods of one namespace, runs them, finishes them by their command."""

    def __init__(self, client: Client, namespace: str) -> None:
        self.client, self.namespace = client, namespace
        self._stop = threading.Event()
        self._started: dict[str, float] = {}
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            for pod in self.client.list("Pod", self.namespace).items:
                try:
                    self._step(pod)
                except errors.MiniK8sError:
                    continue  # a race with a controller: the next pass sees fresh state

    def _step(self, pod: Any) -> None:
        name, phase = pod.metadata.name, pod.status.phase
        if pod.metadata.deletionTimestamp:
            self.client.delete("Pod", name, self.namespace, grace_period_seconds=0)
        elif not pod.spec.nodeName:
            self.client.bind(name, "fake-node", self.namespace)
        elif phase == "Pending":
            self._started[pod.metadata.uid] = time.monotonic()
            self._status(name, "Running", 0, {"running": {"startedAt": _stamp()}}, ready=True)
        elif phase == "Running" and time.monotonic() - self._started.get(pod.metadata.uid, 0) >= RUN_S:
            command = pod.spec.containers[0].command or []
            restarts = pod.status.containerStatuses[0].restartCount if pod.status.containerStatuses else 0
            done = {"terminated": {"exitCode": 0 if command == ["true"] else 1, "finishedAt": _stamp()}}
            if command == ["true"]:
                self._status(name, "Succeeded", restarts, done)
            elif command == ["false"] and pod.spec.restartPolicy == "Never":
                self._status(name, "Failed", restarts, done)
            elif command == ["false"]:
                self._started[pod.metadata.uid] = time.monotonic()
                self._status(name, "Running", restarts + 1, {"running": {"startedAt": _stamp()}}, ready=True)

    def _status(self, name: str, phase: str, restarts: int, state: dict[str, Any], ready: bool = False) -> None:
        self.client.patch("Pod", name, {"status": {
            "phase": phase, "conditions": [{"type": "Ready", "status": str(ready), "lastTransitionTime": _stamp()}],
            "containerStatuses": [{"name": "main", "ready": ready, "restartCount": restarts, "image": "busybox",
                                   "state": state}]}}, self.namespace, subresource="status")


@pytest.fixture(scope="module")
def controllers(apiserver: str) -> Iterator[None]:
    config = JobConfig(backoff_base_s=0.2, backoff_max_s=1.0)
    with running_controllers(apiserver, lambda c: [JobController(c, config), GarbageCollector(c)]):
        yield


@pytest.fixture
def ns(client: Client, controllers: None) -> Iterator[str]:
    name = uniq("batch")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    kubelet = JobKubelet(client, name)
    kubelet.start()
    yield name
    kubelet.stop()


def job(name: str, command: str = "true", policy: str = "Never", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {**spec, "template": {"spec": {"restartPolicy": policy, "containers": [
                {"name": "main", "image": "busybox", "command": [command]}]}}}}


def patch_retrying(client: Client, name: str, patch: dict[str, Any], ns: str) -> Any:
    def attempt() -> Any:
        try:
            return client.patch("Job", name, patch, ns)
        except errors.Conflict:
            return None
    return wait_for(f"patch of {name}", attempt)


def condition(client: Client, ns: str, name: str, ctype: str) -> Any:
    j = client.get("Job", name, ns)
    return next((c for c in (j.status.conditions if j.status else None) or []
                 if c.type == ctype and c.status == "True"), None)


def job_pods(client: Client, ns: str, name: str) -> list[Any]:
    return client.list("Pod", ns, f"{batch.JOB_NAME_LABEL}={name}").items


# --- API -----------------------------------------------------------------------------------------

def test_job_defaults_generated_selector_and_labels(client: Client, ns: str) -> None:
    j = client.create(job("defaults", suspend=True), ns)
    uid = j.metadata.uid
    assert (j.spec.parallelism, j.spec.completions, j.spec.backoffLimit) == (1, 1, 6)
    assert j.spec.completionMode == "NonIndexed" and j.spec.podReplacementPolicy == "TerminatingOrFailed"
    assert j.spec.selector.matchLabels == {batch.CONTROLLER_UID_LABEL: uid}
    assert j.spec.template.metadata.labels == {"controller-uid": uid, batch.CONTROLLER_UID_LABEL: uid,
                                               "job-name": "defaults", batch.JOB_NAME_LABEL: "defaults"}
    queue = client.create(job("queue", parallelism=3, suspend=True), ns)
    assert queue.spec.completions is None and queue.spec.parallelism == 3


@pytest.mark.parametrize("change,field,needle", [
    ({"template": {"spec": {"restartPolicy": None}}}, "spec.template.spec.restartPolicy", "Required value"),
    ({"template": {"spec": {"restartPolicy": "Always"}}}, "spec.template.spec.restartPolicy", "Unsupported"),
    ({"completionMode": "Indexed", "parallelism": 2}, "spec.completions", "when completion mode is Indexed"),
    ({"parallelism": -1}, "spec.parallelism", "greater than or equal to 0"),
    ({"selector": {"matchLabels": {"a": "b"}}}, "spec.selector", "not auto-generated"),
    ({"manualSelector": True, "selector": {"matchLabels": {"a": "b"}}}, "spec.template.metadata.labels",
     "does not match"),
    ({"podFailurePolicy": {"rules": []}}, "spec", 'unknown field "podFailurePolicy"'),
])
def test_bad_jobs_are_refused_with_the_field(client: Client, ns: str, change: dict[str, Any], field: str,
                                             needle: str) -> None:
    body = job("bad")
    for key, value in change.items():
        if key == "template":
            body["spec"]["template"]["spec"].update(value["spec"])
            body["spec"]["template"]["spec"] = {k: v for k, v in body["spec"]["template"]["spec"].items()
                                                if v is not None}
        else:
            body["spec"][key] = value
    with pytest.raises(errors.MiniK8sError) as exc:
        client.create(body, ns)
    assert exc.value.code == 422 and field in exc.value.message and needle in exc.value.message
    with pytest.raises(errors.NotFound):
        client.get("Job", "bad", ns)


def test_job_template_is_immutable(client: Client, ns: str) -> None:
    client.create(job("frozen", suspend=True), ns)
    with pytest.raises(errors.MiniK8sError) as exc:
        client.patch("Job", "frozen", {"spec": {"template": {"spec": {"containers": [
            {"name": "main", "image": "busybox:2", "command": ["true"]}]}}}}, ns)
    assert exc.value.code == 422 and "spec.template" in exc.value.message and "immutable" in exc.value.message
    # what may change still does (a retry when the controller's status write lands in between)
    assert patch_retrying(client, "frozen", {"spec": {"parallelism": 2}}, ns).spec.parallelism == 2


def test_bad_cronjobs_are_refused(client: Client, ns: str) -> None:
    def cronjob(name: str, **spec: Any) -> dict[str, Any]:
        return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
                "spec": {"schedule": "* * * * *", **spec, "jobTemplate": {"spec": job("x")["spec"]}}}
    for body, field in ((cronjob("a", schedule="61 * * * *"), "spec.schedule"),
                        (cronjob("b", schedule="@every 1m"), "spec.schedule"),
                        (cronjob("c", timeZone="Mars/Base"), "spec.timeZone"),
                        (cronjob("x" * 53), "metadata.name"),
                        (cronjob("d", concurrencyPolicy="Sometimes"), "spec.concurrencyPolicy")):
        with pytest.raises(errors.MiniK8sError) as exc:
            client.create(body, ns)
        assert exc.value.code == 422 and field in exc.value.message, exc.value.message
    cj = client.create(cronjob("ok"), ns)
    assert (cj.spec.concurrencyPolicy, cj.spec.suspend, cj.spec.successfulJobsHistoryLimit,
            cj.spec.failedJobsHistoryLimit) == ("Allow", False, 3, 1)


# --- Job controller --------------------------------------------------------------------------------

def test_job_runs_completions_with_parallelism(client: Client, ns: str) -> None:
    j = client.create(job("three", completions=3, parallelism=2), ns)
    done = wait_for("Complete", lambda: condition(client, ns, "three", "Complete"))
    assert done.reason == "CompletionsReached"
    j = client.get("Job", "three", ns)
    assert j.status.succeeded == 3 and j.status.active is None and j.status.completionTime and j.status.startTime
    assert condition(client, ns, "three", "SuccessCriteriaMet")
    pods = job_pods(client, ns, "three")
    assert len(pods) == 3 and all(p.status.phase == "Succeeded" for p in pods)
    assert all(p.metadata.ownerReferences[0].uid == j.metadata.uid for p in pods)


def test_indexed_job_gives_each_pod_its_index(client: Client, ns: str) -> None:
    client.create(job("idx", completions=3, parallelism=2, completionMode="Indexed"), ns)
    wait_for("Complete", lambda: condition(client, ns, "idx", "Complete"))
    assert client.get("Job", "idx", ns).status.completedIndexes == "0-2"
    pods = job_pods(client, ns, "idx")
    seen = set()
    for p in pods:
        index = p.metadata.annotations[batch.COMPLETION_INDEX]
        assert p.metadata.labels[batch.COMPLETION_INDEX] == index
        assert p.metadata.name.startswith(f"idx-{index}-") and p.spec.hostname == f"idx-{index}"
        assert {"name": "JOB_COMPLETION_INDEX", "value": index} in [e.to_dict() for e in p.spec.containers[0].env]
        seen.add(index)
    assert seen == {"0", "1", "2"}


def test_work_queue_job_completes_when_one_pod_succeeds(client: Client, ns: str) -> None:
    client.create(job("wq", parallelism=2), ns)
    wait_for("Complete", lambda: condition(client, ns, "wq", "Complete"))
    assert client.get("Job", "wq", ns).status.succeeded >= 1


def test_backoff_limit_fails_the_job_never_and_on_failure(client: Client, ns: str) -> None:
    client.create(job("never", command="false", backoffLimit=1), ns)
    failed = wait_for("Failed", lambda: condition(client, ns, "never", "Failed"))
    assert failed.reason == "BackoffLimitExceeded"
    assert client.get("Job", "never", ns).status.failed == 2  # the first failure was retried once
    assert len(job_pods(client, ns, "never")) == 2
    assert condition(client, ns, "never", "FailureTarget")

    client.create(job("onfail", command="false", policy="OnFailure", backoffLimit=2), ns)
    failed = wait_for("Failed", lambda: condition(client, ns, "onfail", "Failed"))
    assert failed.reason == "BackoffLimitExceeded"
    wait_for("its pod deleted", lambda: not job_pods(client, ns, "onfail"))


def test_active_deadline_kills_active_pods(client: Client, ns: str) -> None:
    client.create(job("slow", command="sleep", activeDeadlineSeconds=2), ns)
    wait_for("a pod", lambda: job_pods(client, ns, "slow"))
    failed = wait_for("DeadlineExceeded", lambda: condition(client, ns, "slow", "Failed"))
    assert failed.reason == "DeadlineExceeded"
    wait_for("pods gone", lambda: not job_pods(client, ns, "slow"))


def test_suspend_and_resume(client: Client, ns: str) -> None:
    client.create(job("sus", command="sleep", suspend=True, parallelism=2, completions=2), ns)
    wait_for("Suspended", lambda: condition(client, ns, "sus", "Suspended"))
    assert not job_pods(client, ns, "sus")
    patch_retrying(client, "sus", {"spec": {"suspend": False}}, ns)
    wait_for("2 pods", lambda: len(job_pods(client, ns, "sus")) == 2)
    # the controller creates the pods, then writes the status that clears Suspended: wait for that write
    wait_for("Suspended cleared", lambda: not condition(client, ns, "sus", "Suspended"))
    patch_retrying(client, "sus", {"spec": {"suspend": True}}, ns)
    wait_for("pods deleted", lambda: not job_pods(client, ns, "sus"))
    assert client.get("Job", "sus", ns).status.active is None


def test_ttl_after_finished_deletes_job_and_pods(client: Client, ns: str) -> None:
    client.create(job("ttl", ttlSecondsAfterFinished=1), ns)
    def gone() -> bool:
        try:
            client.get("Job", "ttl", ns)
        except errors.NotFound:
            return True
        return False
    wait_for("job deleted", gone)
    wait_for("pods deleted", lambda: not job_pods(client, ns, "ttl"))


def test_table_columns(client: Client, ns: str) -> None:
    client.create(job("cols", completions=2, parallelism=2), ns)
    wait_for("Complete", lambda: condition(client, ns, "cols", "Complete"))
    table = client.request("GET", f"/apis/batch/v1/namespaces/{ns}/jobs",
                           headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[:5] == ["Name", "Status", "Completions", "Duration", "Age"]
    row = next(r["cells"] for r in table["rows"] if r["cells"][0] == "cols")
    assert row[1:3] == ["Complete", "2/2"]


# --- CronJob controller ----------------------------------------------------------------------------

class FakeClock:
    def __init__(self, now: dt.datetime) -> None:
        self.at = now

    def now(self) -> dt.datetime:
        return self.at


@pytest.fixture
def cron_ctl(apiserver: str) -> Iterator[tuple[CronJobController, FakeClock]]:
    c = Client(apiserver, TEST_TOKEN)
    clock = FakeClock(dt.datetime.now(dt.UTC))
    ctl = CronJobController(c, clock=clock)
    ctl.start_informers()  # no workers: the test calls sync itself
    yield ctl, clock
    ctl.stop()
    c.close()


def cronjob(name: str, command: str = "true", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": "*/1 * * * *", **spec, "jobTemplate": {
                "metadata": {"labels": {"cron": name}}, "spec": job("x", command)["spec"]}}}


def cj_jobs(ctl: CronJobController, ns: str, name: str) -> list[Any]:
    return sorted((j for j in ctl.jobs.list() if j.metadata.namespace == ns
                   and (j.metadata.labels or {}).get("cron") == name), key=lambda j: j.metadata.name)


def caught_up(ctl: CronJobController, client: Client, ns: str, name: str) -> None:
    """Wait until the controller's caches hold what the server holds for the CronJob and its Jobs."""
    def same() -> bool:
        cached = ctl.cronjobs.get(f"{ns}/{name}")
        live_jobs = {j.metadata.name: j.metadata.resourceVersion for j in client.list("Job", ns).items}
        cached_jobs = {j.metadata.name: j.metadata.resourceVersion for j in ctl.jobs.list()
                       if j.metadata.namespace == ns}
        return bool(cached) and cached.metadata.resourceVersion == client.get("CronJob", name, ns).metadata.\
            resourceVersion and live_jobs == cached_jobs
    wait_for("caches caught up", same)


def finish(client: Client, ns: str, name: str, ctype: str) -> None:
    """Mark a Job finished as its controller would (a Job controller may be writing it too: retry)."""
    def attempt() -> bool:
        j = client.get("Job", name, ns).to_dict()
        j["status"] = {"startTime": _stamp(), "conditions": [{"type": ctype, "status": "True"}],
                       **({"completionTime": _stamp()} if ctype == "Complete" else {})}
        try:
            client.update_status(j)
        except errors.Conflict:
            return False
        return True
    wait_for(f"{name} marked {ctype}", attempt)


def test_cronjob_fires_once_per_minute_and_never_twice(client: Client, cron_ctl: Any) -> None:
    ctl, clock = cron_ctl
    ns = uniq("cron")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    cj = client.create(cronjob("tick", concurrencyPolicy="Forbid"), ns)
    key = f"{ns}/tick"
    wait_for("cache", lambda: ctl.cronjobs.get(key))
    created = dt.datetime.fromisoformat(cj.metadata.creationTimestamp.replace("Z", "+00:00"))
    first = created.replace(second=0) + dt.timedelta(minutes=1)
    clock.at = first + dt.timedelta(seconds=5)
    ctl.sync(key)
    expected = job_name("tick", first)
    wait_for("the job", lambda: [j.metadata.name for j in cj_jobs(ctl, ns, "tick")] == [expected])
    job_obj = client.get("Job", expected, ns)
    assert job_obj.metadata.ownerReferences[0].kind == "CronJob"
    assert job_obj.metadata.annotations[batch.SCHEDULED_TIMESTAMP_ANNOTATION] == first.strftime("%Y-%m-%dT%H:%M:%SZ")
    st = client.get("CronJob", "tick", ns).status
    assert st.lastScheduleTime == first.strftime("%Y-%m-%dT%H:%M:%SZ") and [r.name for r in st.active] == [expected]
    caught_up(ctl, client, ns, "tick")
    ctl.sync(key)  # same minute again: nothing new
    clock.at += dt.timedelta(minutes=1)  # next minute, but Forbid while the first runs
    caught_up(ctl, client, ns, "tick")
    ctl.sync(key)
    assert len(cj_jobs(ctl, ns, "tick")) == 1
    finish(client, ns, expected, "Complete")
    caught_up(ctl, client, ns, "tick")
    ctl.sync(key)
    wait_for("second job", lambda: len(cj_jobs(ctl, ns, "tick")) == 2)
    st = client.get("CronJob", "tick", ns).status
    assert st.lastSuccessfulTime and len(st.active) == 1


def test_cronjob_history_limits_and_missed_schedules(client: Client, cron_ctl: Any) -> None:
    ctl, clock = cron_ctl
    ns = uniq("cron")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    cj = client.create(cronjob("hist", successfulJobsHistoryLimit=1, failedJobsHistoryLimit=0), ns)
    key = f"{ns}/hist"
    created = dt.datetime.fromisoformat(cj.metadata.creationTimestamp.replace("Z", "+00:00"))
    wait_for("cache", lambda: ctl.cronjobs.get(key))
    made: list[str] = []
    for minute in range(1, 4):
        clock.at = created.replace(second=0) + dt.timedelta(minutes=minute, seconds=1)
        caught_up(ctl, client, ns, "hist")
        ctl.sync(key)
        name = job_name("hist", clock.at)
        made.append(name)
        finish(client, ns, name, "Complete" if minute < 3 else "Failed")
        caught_up(ctl, client, ns, "hist")
        ctl.sync(key)
    # one successful kept (the newest), no failed ones
    wait_for("trimmed", lambda: [j.metadata.name for j in cj_jobs(ctl, ns, "hist")] == [made[1]])

    # a long outage: only the most recent missed time starts, and "too many missed" is reported
    clock.at += dt.timedelta(minutes=150)
    caught_up(ctl, client, ns, "hist")
    ctl.sync(key)
    latest = job_name("hist", clock.at)
    wait_for("only the latest", lambda: ctl.jobs.get(f"{ns}/{latest}") is not None)
    assert len(cj_jobs(ctl, ns, "hist")) == 2
    events = wait_for("event", lambda: [e for e in client.list("Event", ns).items
                                        if e.reason == "TooManyMissedTimes"])
    assert "too many missed start times" in events[0].message

    # with a deadline, a missed time older than it is skipped
    client.patch("CronJob", "hist", {"spec": {"startingDeadlineSeconds": 10}}, ns)
    clock.at = clock.at.replace(second=0) + dt.timedelta(minutes=5, seconds=30)
    caught_up(ctl, client, ns, "hist")
    ctl.sync(key)
    assert len(cj_jobs(ctl, ns, "hist")) == 2


# --- CLI -------------------------------------------------------------------------------------------

@pytest.mark.usefixtures("cli_env")
def test_cli_get_tables_and_log_target(client: Client, ns: str) -> None:
    from cli.pods import _pod_of
    client.create(job("cli", completions=2, parallelism=1), ns)
    wait_for("Complete", lambda: condition(client, ns, "cli", "Complete"))
    out = run_cli("get", "jobs", "-n", ns)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert lines[1].split()[:3] == ["cli", "Complete", "2/2"]
    client.create(cronjob("nightly", schedule="0 3 * * *", timeZone="Europe/Paris"), ns)
    out = run_cli("get", "cj", "-n", ns)
    assert out.output.splitlines()[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST",
                                                  "SCHEDULE", "AGE"]
    assert out.output.splitlines()[1].split()[:7] == ["nightly", "0", "3", "*", "*", "*", "Europe/Paris"]
    # logs job/NAME reads the first of the Job's pods
    assert _pod_of(client, "job/cli", ns) in {p.metadata.name for p in job_pods(client, ns, "cli")}
    out = run_cli("logs", "job/missing", "-n", ns)
    assert out.exit_code == 1 and 'jobs "missing" not found' in out.output


def test_reapplying_the_same_manifest_is_unchanged(client: Client, ns: str) -> None:
    body = job("again", suspend=True)
    client.apply(body, ns)
    _, outcome = client.apply_outcome(body, ns)
    assert outcome == "unchanged"


def test_cronjob_replace_and_suspend(client: Client, cron_ctl: Any) -> None:
    ctl, clock = cron_ctl
    ns = uniq("cron")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    cj = client.create(cronjob("swap", concurrencyPolicy="Replace", suspend=True), ns)
    key = f"{ns}/swap"
    start = dt.datetime.fromisoformat(cj.metadata.creationTimestamp.replace("Z", "+00:00")).replace(second=0)
    clock.at = start + dt.timedelta(minutes=1, seconds=1)
    caught_up(ctl, client, ns, "swap")
    ctl.sync(key)
    assert not cj_jobs(ctl, ns, "swap")  # suspended: nothing starts
    client.patch("CronJob", "swap", {"spec": {"suspend": False}}, ns)
    caught_up(ctl, client, ns, "swap")
    ctl.sync(key)
    first = job_name("swap", clock.at)
    wait_for("first job", lambda: ctl.jobs.get(f"{ns}/{first}"))
    clock.at += dt.timedelta(minutes=1)
    caught_up(ctl, client, ns, "swap")
    ctl.sync(key)
    second = job_name("swap", clock.at)
    wait_for("the running job replaced", lambda: [j.metadata.name for j in client.list("Job", ns).items] == [second])
    assert [r.name for r in client.get("CronJob", "swap", ns).status.active] == [second]
