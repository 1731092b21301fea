"""Jobs and CronJobs on the real cluster, through kubectl and the minik8s CLI as a user drives them."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

from minik8s import Client, errors
from tests.e2e.conftest import run, unique, wait_for

JOB_S = 120.0  # a few pods pulled, run and finished, with one 10 s failure back-off


def kubectl(kc: Path, *args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kc), *args], input=input, capture_output=True, text=True,
                          timeout=timeout)


def job_manifest(name: str, command: str, spec: str = "", policy: str = "Never") -> str:
    return textwrap.dedent(f"""\
        apiVersion: batch/v1
        kind: Job
        metadata: {{name: {name}}}
        spec:
          {spec or "completions: 1"}
          template:
            spec:
              restartPolicy: {policy}
              terminationGracePeriodSeconds: 1
              containers:
              - name: main
                image: busybox
                command: [sh, -c, '{command}']
        """)


def condition(client: Client, name: str, ctype: str, ns: str) -> Any:
    job = client.get("Job", name, ns)
    return next((c for c in (job.status.conditions if job.status else None) or []
                 if c.type == ctype and c.status == "True"), None)


def job_pods(client: Client, name: str, ns: str) -> list[Any]:
    return client.list("Pod", ns, f"batch.kubernetes.io/job-name={name}").items


def gone(client: Client, kind: str, name: str, ns: str) -> bool:
    try:
        client.get(kind, name, ns)
    except errors.NotFound:
        return True
    return False


def test_indexed_job_completes_and_each_pod_sees_its_index(client: Client, kubeconfig: Path, ns: str) -> None:
    name = unique("idx")
    spec = "completions: 3\n          parallelism: 2\n          completionMode: Indexed"
    created = kubectl(kubeconfig, "apply", "-n", ns, "-f", "-",
                      input=job_manifest(name, "echo index=$JOB_COMPLETION_INDEX host=$(hostname)", spec))
    assert created.returncode == 0, created.stderr
    waited = kubectl(kubeconfig, "wait", "-n", ns, "--for=condition=complete", f"job/{name}",
                     f"--timeout={int(JOB_S)}s", timeout=JOB_S + 10)
    assert waited.returncode == 0, waited.stderr
    assert f"job.batch/{name} condition met" in waited.stdout
    job = client.get("Job", name, ns)
    assert job.status.succeeded == 3 and job.status.completedIndexes == "0-2"
    seen = set()
    for pod in job_pods(client, name, ns):
        index = pod.metadata.annotations["batch.kubernetes.io/job-completion-index"]
        assert run("logs", "-n", ns, pod.metadata.name).stdout.strip() == f"index={index} host={name}-{index}"
        seen.add(index)
    assert seen == {"0", "1", "2"}
    # the first pod's output, through both CLIs (kubectl finds it by the Job's selector)
    mine = run("logs", "-n", ns, f"job/{name}").stdout.strip()
    theirs = kubectl(kubeconfig, "logs", "-n", ns, f"job/{name}")
    assert theirs.returncode == 0, theirs.stderr
    assert mine.startswith("index=") and theirs.stdout.strip().startswith("index=")
    table = kubectl(kubeconfig, "get", "-n", ns, "jobs", name).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert table[1].split()[:3] == [name, "Complete", "3/3"]
    deleted = kubectl(kubeconfig, "delete", "-n", ns, "job", name)
    assert deleted.returncode == 0, deleted.stderr
    wait_for("the job's pods collected", lambda: not job_pods(client, name, ns), timeout=90)


def test_failing_job_reaches_backoff_limit(client: Client, ns: str) -> None:
    name = unique("fail")
    run("apply", "-n", ns, "-f", "-", input=job_manifest(name, "echo boom; exit 3", "backoffLimit: 1"))
    failed = wait_for("the job failed", lambda: condition(client, name, "Failed", ns), timeout=JOB_S)
    assert failed.reason == "BackoffLimitExceeded"
    job = client.get("Job", name, ns)
    assert job.status.failed == 2 and not job.status.active
    pods = job_pods(client, name, ns)
    assert len(pods) == 2 and all(p.status.phase == "Failed" for p in pods)
    assert run("logs", "-n", ns, f"job/{name}").stdout.strip() == "boom"
    row = run("get", "jobs", "-n", ns, name).stdout.splitlines()[1].split()
    assert row[:3] == [name, "Failed", "0/1"]
    run("delete", "job", "-n", ns, name)


def test_ttl_after_finished_deletes_job_and_pods(client: Client, ns: str) -> None:
    name = unique("ttl")
    run("apply", "-n", ns, "-f", "-", input=job_manifest(name, "true", "ttlSecondsAfterFinished: 0"))
    wait_for("the job deleted after finishing", lambda: gone(client, "Job", name, ns), timeout=JOB_S)
    wait_for("its pods deleted", lambda: not job_pods(client, name, ns), timeout=60)


def test_bad_job_is_refused(kubeconfig: Path, ns: str) -> None:
    name = unique("bad")
    manifest = job_manifest(name, "true").replace("restartPolicy: Never", "restartPolicy: Always")
    out = run("apply", "-n", ns, "-f", "-", input=manifest, check=False)
    assert out.returncode == 1
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Always"' in out.stdout + out.stderr
    assert kubectl(kubeconfig, "get", "-n", ns, "job", name).returncode != 0


def test_cronjob_fires_and_trims_history(client: Client, kubeconfig: Path, ns: str) -> None:
    name = unique("tick")
    manifest = textwrap.dedent(f"""\
        apiVersion: batch/v1
        kind: CronJob
        metadata: {{name: {name}}}
        spec:
          schedule: "*/1 * * * *"
          successfulJobsHistoryLimit: 0
          jobTemplate:
            spec:
              template:
                spec:
                  restartPolicy: OnFailure
                  terminationGracePeriodSeconds: 1
                  containers: [{{name: main, image: busybox, command: [echo, tick]}}]
        """)
    created = kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", input=manifest)
    assert created.returncode == 0, created.stderr
    header = kubectl(kubeconfig, "get", "-n", ns, "cj", name).stdout.splitlines()[0].split()
    assert header == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    # the next minute boundary, the job run, and (history limit 0) the finished job deleted
    status = wait_for("a scheduled job that succeeded",
                      lambda: (s := client.get("CronJob", name, ns).status) and s.lastSuccessfulTime and s, timeout=150)
    assert status.lastScheduleTime and not status.active
    wait_for("the finished job trimmed", lambda: not [j for j in client.list("Job", ns).items
                                                      if j.metadata.name.startswith(f"{name}-")], timeout=60)

    def reasons() -> set[str]:
        return {e.reason for e in client.list("Event", ns).items
                if e.involvedObject.name == name and e.involvedObject.kind == "CronJob"}

    wait_for("the CronJob's SuccessfulCreate and SuccessfulDelete events",
             lambda: {"SuccessfulCreate", "SuccessfulDelete"} <= reasons(), timeout=30)
    assert kubectl(kubeconfig, "delete", "-n", ns, "cronjob", name).returncode == 0
