"""batch/v1 Job and CronJob: models, defaults, validation and printer columns (as Kubernetes 1.32).

Defaults the model can decide alone live in the models (parallelism 1, completions 1 unless a
work queue, backoffLimit 6, NonIndexed, suspend false; CronJob concurrencyPolicy Allow, history
limits 3/1). The generated selector and pod labels need the Job's uid, so the API server applies
them after allocating it (`job_defaults`). Fields of JobSpec this cluster does not implement
(podFailurePolicy, successPolicy, backoffLimitPerIndex, managedBy, ...) are not in the model, so
a manifest using them is refused with the field's name instead of being silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from minik8s.api import cron
from minik8s.api import printers as p
from minik8s.api import types as t
from minik8s.api import validation as v
from minik8s.api.apps import PodTemplateSpec, selector_string
from minik8s.api.selectors import labels_match, selector_from_match

GROUP, VERSION = "batch", "v1"
API_VERSION = f"{GROUP}/{VERSION}"

CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"
LEGACY_JOB_NAME_LABEL = "job-name"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"  # pod label and annotation
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
SCHEDULED_TIMESTAMP_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"

DEFAULT_BACKOFF_LIMIT = 6
MAX_INDEXED_COMPLETIONS = 100_000
MAX_CRONJOB_NAME = 52  # Jobs get NAME-<11 digits>, and that must still be a valid label value
JOB_RESTART_POLICIES = ("OnFailure", "Never")


# --- Job ---------------------------------------------------------------------------------------

class JobSpec(t.Model):
    parallelism: int | None = None
    completions: int | None = None
    activeDeadlineSeconds: int | None = None
    backoffLimit: int = DEFAULT_BACKOFF_LIMIT
    selector: t.LabelSelector | None = None
    manualSelector: bool | None = None
    template: PodTemplateSpec
    ttlSecondsAfterFinished: int | None = None
    completionMode: Literal["NonIndexed", "Indexed"] = "NonIndexed"
    suspend: bool = False
    podReplacementPolicy: Literal["TerminatingOrFailed", "Failed"] = "TerminatingOrFailed"

    @model_validator(mode="after")
    def _defaults(self) -> JobSpec:
        # SetDefaults_Job: both unset is one pod to completion; parallelism alone is a work queue
        if self.completions is None and self.parallelism is None:
            self.completions = 1
        if self.parallelism is None:
            self.parallelism = 1
        return self


class JobCondition(t.Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    lastProbeTime: str | None = None
    lastTransitionTime: str | None = None


class UncountedTerminatedPods(t.Model):
    succeeded: list[str] | None = None
    failed: list[str] | None = None


class JobStatus(t.Model):
    conditions: list[JobCondition] | None = None
    startTime: str | None = None
    completionTime: str | None = None
    active: int | None = None
    succeeded: int | None = None
    failed: int | None = None
    terminating: int | None = None
    ready: int | None = None
    completedIndexes: str | None = None
    failedIndexes: str | None = None
    uncountedTerminatedPods: UncountedTerminatedPods | None = None


class Job(t.TypedObject):
    spec: JobSpec
    status: JobStatus | None = None


# --- CronJob -----------------------------------------------------------------------------------

class JobTemplateSpec(t.Model):
    metadata: t.ObjectMeta = Field(default_factory=t.ObjectMeta)
    spec: JobSpec


class CronJobSpec(t.Model):
    schedule: str
    timeZone: str | None = None
    startingDeadlineSeconds: int | None = None
    concurrencyPolicy: Literal["Allow", "Forbid", "Replace"] = "Allow"
    suspend: bool = False
    jobTemplate: JobTemplateSpec
    successfulJobsHistoryLimit: int = 3
    failedJobsHistoryLimit: int = 1


class CronJobStatus(t.Model):
    active: list[t.ObjectReference] | None = None
    lastScheduleTime: str | None = None
    lastSuccessfulTime: str | None = None


class CronJob(t.TypedObject):
    spec: CronJobSpec
    status: CronJobStatus | None = None


# --- defaults needing the uid --------------------------------------------------------------------

def job_defaults(obj: dict[str, Any]) -> None:
    """generateSelector: unless manualSelector, select on the uid and label the template to match."""
    spec = obj.get("spec") or {}
    if spec.get("manualSelector"):
        return
    meta = obj["metadata"]
    uid, name = meta.get("uid"), meta.get("name")
    if not uid:
        return
    if not spec.get("selector"):
        spec["selector"] = {"matchLabels": {CONTROLLER_UID_LABEL: uid}}
    template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    labels = template_meta.setdefault("labels", {})
    for key, value in ((LEGACY_CONTROLLER_UID_LABEL, uid), (CONTROLLER_UID_LABEL, uid),
                       (LEGACY_JOB_NAME_LABEL, name), (JOB_NAME_LABEL, name)):
        labels.setdefault(key, value)


# --- validation --------------------------------------------------------------------------------

def _nonnegative(value: int | None, path: str, causes: v.Causes) -> None:
    if value is not None and value < 0:
        causes.append((path, f"Invalid value: {value}: must be greater than or equal to 0"))


def _validate_job_spec(spec: JobSpec, path: str, causes: v.Causes) -> None:
    _nonnegative(spec.parallelism, f"{path}.parallelism", causes)
    _nonnegative(spec.completions, f"{path}.completions", causes)
    _nonnegative(spec.activeDeadlineSeconds, f"{path}.activeDeadlineSeconds", causes)
    _nonnegative(spec.backoffLimit, f"{path}.backoffLimit", causes)
    _nonnegative(spec.ttlSecondsAfterFinished, f"{path}.ttlSecondsAfterFinished", causes)
    if spec.completionMode == "Indexed":
        if spec.completions is None:
            causes.append((f"{path}.completions", "Required value: when completion mode is Indexed"))
        elif spec.completions > MAX_INDEXED_COMPLETIONS:
            causes.append((f"{path}.completions", f"Invalid value: {spec.completions}: must be less than or "
                                                  f"equal to {MAX_INDEXED_COMPLETIONS} when completion mode is "
                                                  "Indexed"))
        if (spec.parallelism or 0) > MAX_INDEXED_COMPLETIONS:
            causes.append((f"{path}.parallelism", f"Invalid value: {spec.parallelism}: must be less than or "
                                                  f"equal to {MAX_INDEXED_COMPLETIONS} when completion mode is "
                                                  "Indexed"))
    tmpl = spec.template
    v.check_labels(tmpl.metadata.labels, f"{path}.template.metadata.labels", causes)
    v.validate_pod_spec(tmpl.spec, f"{path}.template.spec", causes)
    policy = tmpl.spec.restartPolicy
    if policy is None:
        causes.append((f"{path}.template.spec.restartPolicy",
                       'Required value: valid values: "OnFailure", "Never"'))
    elif policy not in JOB_RESTART_POLICIES:
        causes.append((f"{path}.template.spec.restartPolicy",
                       f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"'))
    if spec.selector is not None:
        sel = spec.selector
        v.check_labels(sel.matchLabels, f"{path}.selector.matchLabels", causes)
        for i, req in enumerate(sel.matchExpressions or []):
            v._check_requirement(req, f"{path}.selector.matchExpressions[{i}]", v.LABEL_OPERATORS, causes)
        reqs = selector_from_match(sel.model_dump(exclude_none=True))
        if not reqs:
            causes.append((f"{path}.selector", "Invalid value: empty selector is invalid for a job"))
        elif not labels_match(reqs, tmpl.metadata.labels):
            causes.append((f"{path}.template.metadata.labels",
                           f"Invalid value: {tmpl.metadata.labels or {}}: `selector` does not match template "
                           "`labels`"))


def validate_job(job: Job) -> v.Causes:
    causes: v.Causes = []
    v.check_meta(job.metadata, causes, label_name=True)
    spec = job.spec
    _validate_job_spec(spec, "spec", causes)
    if spec.manualSelector:
        if spec.selector is None:
            causes.append(("spec.selector", "Required value"))
    elif spec.selector is not None:
        uid = (spec.selector.matchLabels or {}).get(CONTROLLER_UID_LABEL)
        if not uid or uid != job.metadata.uid:
            causes.append(("spec.selector", f"Invalid value: {selector_string(spec.selector.to_dict())!r}: "
                                            "`selector` not auto-generated (set `manualSelector: true` to choose "
                                            "your own)"))
    return causes


_IMMUTABLE_JOB_FIELDS = ("template", "selector", "completionMode", "manualSelector", "podReplacementPolicy")


def validate_job_update(old: dict[str, Any], new: dict[str, Any]) -> v.Causes:
    """What may not change once a Job exists (ValidateJobUpdate, without the suspended-job exceptions).

    The generated selector and labels are filled in first (into `new`, as a create does), so re-applying
    the manifest a Job was made from is not mistaken for a change of its selector or template.
    """
    job_defaults(new)
    causes: v.Causes = []
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    for name in _IMMUTABLE_JOB_FIELDS:
        if old_spec.get(name) != new_spec.get(name):
            causes.append((f"spec.{name}", "Invalid value: field is immutable"))
    if old_spec.get("completions") != new_spec.get("completions"):
        causes.append(("spec.completions", "Invalid value: field is immutable"))
    return causes


def validate_cronjob(cj: CronJob) -> v.Causes:
    causes: v.Causes = []
    v.check_meta(cj.metadata, causes, label_name=True)
    if cj.metadata.name and len(cj.metadata.name) > MAX_CRONJOB_NAME:
        causes.append(("metadata.name", f'Invalid value: "{cj.metadata.name}": must be no more than '
                                        f"{MAX_CRONJOB_NAME} characters"))
    spec = cj.spec
    try:
        cron.parse(spec.schedule)
    except cron.CronError as exc:
        causes.append(("spec.schedule", f'Invalid value: "{spec.schedule}": {exc}'))
    if spec.timeZone is not None:
        try:
            cron.zone(spec.timeZone)
        except cron.CronError as exc:
            causes.append(("spec.timeZone", f'Invalid value: "{spec.timeZone}": {exc}'))
    _nonnegative(spec.startingDeadlineSeconds, "spec.startingDeadlineSeconds", causes)
    _nonnegative(spec.successfulJobsHistoryLimit, "spec.successfulJobsHistoryLimit", causes)
    _nonnegative(spec.failedJobsHistoryLimit, "spec.failedJobsHistoryLimit", causes)
    v.check_labels(spec.jobTemplate.metadata.labels, "spec.jobTemplate.metadata.labels", causes)
    job_spec = spec.jobTemplate.spec
    _validate_job_spec(job_spec, "spec.jobTemplate.spec", causes)
    if job_spec.manualSelector and job_spec.selector is None:
        causes.append(("spec.jobTemplate.spec.selector", "Required value"))
    elif not job_spec.manualSelector and job_spec.selector is not None:
        causes.append(("spec.jobTemplate.spec.selector", "Invalid value: `selector` will be auto-generated "
                                                         "(set `manualSelector: true` to choose your own)"))
    return causes


# --- conditions --------------------------------------------------------------------------------

def condition_true(obj: p.Obj, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def job_finished(obj: p.Obj) -> str | None:
    """"Complete" or "Failed" once the Job has finished, else None."""
    for ctype in ("Complete", "Failed"):
        if condition_true(obj, ctype):
            return ctype
    return None


# --- printer columns ---------------------------------------------------------------------------

def _job_status(obj: p.Obj) -> str:
    if condition_true(obj, "Complete"):
        return "Complete"
    if condition_true(obj, "Failed"):
        return "Failed"
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    for ctype in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if condition_true(obj, ctype):
            return ctype
    return "Running"


def _job_completions(obj: p.Obj) -> str:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    succeeded = int(status.get("succeeded") or 0)
    if spec.get("completions") is not None:
        return f"{succeeded}/{spec['completions']}"
    parallelism = int(spec.get("parallelism") or 0)
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def _job_duration(obj: p.Obj) -> str:
    status = obj.get("status") or {}
    start = p.parse_time(status.get("startTime"))
    if start is None:
        return ""
    end = p.parse_time(status.get("completionTime")) or p.now()
    return p.human_duration((end - start).total_seconds())


def _template_containers(template: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list(((template or {}).get("spec") or {}).get("containers") or [])


def _job_wide(template_of: Any) -> list[p.Column]:
    return [
        p.Column("CONTAINERS", lambda o: ",".join(str(c.get("name")) for c in _template_containers(template_of(o)))
                 or "<none>", wide=True),
        p.Column("IMAGES", lambda o: ",".join(str(c.get("image")) for c in _template_containers(template_of(o)))
                 or "<none>", wide=True),
        p.Column("SELECTOR", lambda o: selector_string((o.get("spec") or {}).get("selector")
                                                       or ((o.get("spec") or {}).get("jobTemplate") or {})
                                                       .get("spec", {}).get("selector")), wide=True),
    ]


def _last_schedule(obj: p.Obj) -> str:
    when = p.parse_time((obj.get("status") or {}).get("lastScheduleTime"))
    return p.human_duration((p.now() - when).total_seconds()) if when else "<none>"


JOB_COLUMNS = [
    p.Column("NAME", p.name), p.Column("STATUS", _job_status), p.Column("COMPLETIONS", _job_completions),
    p.Column("DURATION", _job_duration), p.Column("AGE", p.age),
    *_job_wide(lambda o: (o.get("spec") or {}).get("template")),
]

CRONJOB_COLUMNS = [
    p.Column("NAME", p.name), p.Column("SCHEDULE", lambda o: str((o.get("spec") or {}).get("schedule", ""))),
    p.Column("TIMEZONE", lambda o: str((o.get("spec") or {}).get("timeZone") or "<none>")),
    p.Column("SUSPEND", lambda o: str(bool((o.get("spec") or {}).get("suspend")))),
    p.Column("ACTIVE", lambda o: str(len((o.get("status") or {}).get("active") or [])), type="integer"),
    p.Column("LAST SCHEDULE", _last_schedule), p.Column("AGE", p.age),
    *_job_wide(lambda o: (((o.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template")),
]
