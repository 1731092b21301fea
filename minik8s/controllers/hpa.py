"""HorizontalPodAutoscaler controller: every `sync_period_s`, size each HPA's target from its pods' metrics.

Per HPA: read the target's `scale` subresource (current replicas, selector), the pods it selects and
their PodMetrics (metrics.k8s.io), compute one proposal per metric (`hpa_algo.propose`), take the
largest, apply stabilization and rate policies (`hpa_algo.decide`) and min/max, write the scale,
then the status (currentMetrics, conditions AbleToScale/ScalingActive/ScalingLimited) and Events.
The recommendation history lives in memory, like kube-controller-manager: a restart forgets the
stabilization window (the conservative direction: it can only delay a scale-down).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from minik8s.api import autoscaling as a
from minik8s.api import kinds as k
from minik8s.api.quantity import QuantityError, parse_quantity
from minik8s.client import Client, InformerFactory
from minik8s.client.events import EventRecorder
from minik8s.client.informer import informer_for, object_key
from minik8s.controllers import hpa_algo as algo
from minik8s.controllers.base import QueueWorkers
from minik8s.errors import MiniK8sError, NotFound
from minik8s.metrics.types import GROUP_VERSION, cpu_nanocores, memory_usage_bytes, window_s

log = logging.getLogger("minik8s.controllers.hpa")

KIND = "HorizontalPodAutoscaler"
NANO_PER_MILLI = 1_000_000


@dataclass
class HPAConfig:
    """Defaults as kube-controller-manager's --horizontal-pod-autoscaler-* flags."""

    workers: int = 1
    sync_period_s: float = 15.0
    tolerance: float = algo.DEFAULT_TOLERANCE
    cpu_initialization_s: float = algo.CPU_INITIALIZATION_S
    initial_readiness_delay_s: float = algo.INITIAL_READINESS_DELAY_S
    resync_s: float = 30.0


@dataclass
class _Reading:
    name: str
    proposal: algo.MetricProposal | None = None
    error: str = ""
    spec: Any = None


@dataclass
class _State:
    history: algo.History = field(default_factory=algo.History)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def pod_info(pod: Any, resource: str, now: float) -> algo.PodInfo:
    """The algorithm's view of one pod (typed Pod model)."""
    status = pod.status
    ready: bool | None = None
    changed_at: float | None = None
    for cond in (status.conditions if status and status.conditions else []):
        if cond.type == "Ready":
            ready = cond.status == "True"
            changed_at = _ts(cond.lastTransitionTime)
    # a pod without startTime (not yet reported by its kubelet) is aged from its creation
    started = _ts(status.startTime if status and status.startTime else pod.metadata.creationTimestamp)
    total = 0.0
    request: float | None = 0.0
    for c in pod.spec.containers:
        req = ((c.resources.requests if c.resources else None) or {}).get(resource)
        if req is None:
            request = None
            break
        try:
            value = parse_quantity(req)
        except QuantityError:
            request = None
            break
        total += float(value * 1000) if resource == "cpu" else float(value)
    phase = status.phase if status else None
    return algo.PodInfo(
        name=pod.metadata.name or "", ready=ready,
        age_s=(now - started) if started is not None else None,
        ready_changed_s=(now - changed_at) if changed_at is not None else None,
        request=total if request is not None else None,
        deleting=bool(pod.metadata.deletionTimestamp), failed=phase == "Failed", pending=phase in (None, "Pending"))


def pod_usage(metrics: list[dict[str, Any]], resource: str) -> tuple[dict[str, float], float]:
    """pod name → usage (millicores for cpu, bytes for memory), and the longest window seen."""
    out: dict[str, float] = {}
    window = 0.0
    for pm in metrics:
        total = 0.0
        for c in pm.get("containers") or []:
            value = (c.get("usage") or {}).get(resource)
            total += cpu_nanocores(value) / NANO_PER_MILLI if resource == "cpu" else memory_usage_bytes(value)
        out[pm["metadata"]["name"]] = total
        window = max(window, window_s(pm.get("window")))
    return out, window


def _rules(r: a.HPAScalingRules | None, default: a.HPAScalingRules) -> algo.Rules:
    r = r or default
    pols = tuple(algo.Policy(p.type, p.value, p.periodSeconds) for p in (r.policies or []))
    window = r.stabilizationWindowSeconds if r.stabilizationWindowSeconds is not None else 0
    return algo.Rules(window, r.selectPolicy or "Max", pols)


def _metric_desc(m: a.MetricSpec) -> str:
    assert m.resource is not None
    if m.resource.target.type == "Utilization":
        return f"{m.resource.name} resource utilization (percentage of request)"
    return f"{m.resource.name} resource"


class HPAController(QueueWorkers):
    name = "horizontal-pod-autoscaler"

    def __init__(self, client: Client, config: HPAConfig | None = None,
                 clock: Callable[[], float] = time.time, informers: InformerFactory | None = None) -> None:
        self.config = config or HPAConfig()
        super().__init__(self.config.workers)
        self.client = client
        self.clock = clock
        self.hpas = informer_for(informers, client, KIND, resync_seconds=self.config.resync_s)
        self.events = EventRecorder(client, "horizontal-pod-autoscaler")
        self._state: dict[str, _State] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.hpas.add_handler(lambda o: self.queue.add(object_key(o)), self._updated, self._deleted)

    def start(self) -> None:
        self.hpas.start()
        self.hpas.wait_synced()
        self.run_workers()
        self._ticker = threading.Thread(target=self._tick, name="hpa-ticker", daemon=True)
        self._ticker.start()
        log.info("hpa controller started", extra={"period_s": self.config.sync_period_s})

    def stop(self) -> None:
        self._stop.set()
        self.shutdown()
        self.hpas.stop()

    def _tick(self) -> None:
        """Every HPA once per period (the queue folds a key that is already waiting)."""
        while not self._stop.wait(self.config.sync_period_s):
            for hpa in self.hpas.list():
                self.queue.add(object_key(hpa))

    def _updated(self, old: Any, new: Any) -> None:
        if old.metadata.generation != new.metadata.generation:  # our own status writes do not requeue
            self.queue.add(object_key(new))

    def _deleted(self, hpa: Any) -> None:
        with self._lock:
            self._state.pop(object_key(hpa), None)

    # --- sync -----------------------------------------------------------------------------------
    def sync(self, key: str) -> None:
        hpa = self.hpas.get(key)
        if hpa is None:
            return
        with self._lock:
            state = self._state.setdefault(key, _State())
        now = self.clock()
        ns = hpa.metadata.namespace or "default"
        spec = hpa.spec
        ref = spec.scaleTargetRef
        conditions: dict[str, tuple[str, str, str]] = {}
        try:
            info = k.by_kind(ref.apiVersion or "apps/v1", ref.kind)
            scale = self.client.request("GET", info.url(ns, ref.name, "scale"))
        except MiniK8sError as exc:
            msg = f"the HPA controller was unable to get the target's current scale: {exc.message}"
            conditions["AbleToScale"] = ("False", "FailedGetScale", msg)
            self.events.record(hpa, "Warning", "FailedGetScale", msg)
            self._write_status(hpa, int((hpa.status.currentReplicas if hpa.status else 0) or 0), None, None,
                               conditions, [])
            if isinstance(exc, NotFound):
                return
            raise
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        selector = (scale.get("status") or {}).get("selector") or ""
        if current == 0:
            conditions["AbleToScale"] = ("True", "SucceededGetScale", "the HPA controller was able to get the "
                                                                      "target's current scale")
            conditions["ScalingActive"] = ("False", "ScalingDisabled", "scaling is disabled since the replica count "
                                                                       "of the target is zero")
            self._write_status(hpa, 0, 0, None, conditions, [])
            return
        readings = self._readings(hpa, ns, selector, current, now)
        good = [r for r in readings if r.proposal is not None]
        last_scale: str | None = None
        if not good:
            errors = "; ".join(r.error for r in readings) or "no metrics configured"
            conditions["AbleToScale"] = ("True", "SucceededGetScale", "the HPA controller was able to get the "
                                                                      "target's current scale")
            conditions["ScalingActive"] = ("False", "FailedGetResourceMetric", errors)
            self.events.record(hpa, "Warning", "FailedGetResourceMetric", errors)
            # still honour min/max when metrics are missing, as Kubernetes does
            desired = min(max(current, spec.minReplicas), spec.maxReplicas)
        else:
            top = max(good, key=lambda r: r.proposal.replicas if r.proposal else 0)
            assert top.proposal is not None
            up = _rules(spec.behavior.scaleUp, a.default_scale_up())
            down = _rules(spec.behavior.scaleDown, a.default_scale_down())
            decision = algo.decide(state.history, now, current, top.proposal.replicas, spec.minReplicas,
                                   spec.maxReplicas, up, down)
            desired = decision.replicas
            conditions["ScalingActive"] = ("True", "ValidMetricFound", "the HPA was able to successfully calculate "
                                                                       f"a replica count from {top.name}")
            conditions["ScalingLimited"] = (("True", decision.limited_reason, decision.limited_message)
                                            if decision.limited_reason else
                                            ("False", "DesiredWithinRange", "the desired count is within the "
                                                                            "acceptable range"))
            reason = f"{top.name} above target" if desired > current else "All metrics below target"
            if desired != current:
                self._rescale(hpa, info, ns, ref.name, current, desired, reason, conditions)
                if conditions["AbleToScale"][0] == "True":
                    last_scale = _iso(now)
            else:
                conditions["AbleToScale"] = ("True", "ReadyForNewScale", "recommended size matches current size")
        if not good and desired != current:
            self._rescale(hpa, info, ns, ref.name, current, desired,
                          "Current number of replicas outside the min/max range", conditions)
            last_scale = _iso(now) if conditions["AbleToScale"][0] == "True" else None
        new_current = desired if last_scale else current
        self._write_status(hpa, new_current, desired, last_scale, conditions, readings)

    def _readings(self, hpa: Any, ns: str, selector: str, current: int, now: float) -> list[_Reading]:
        readings: list[_Reading] = []
        metrics_specs = hpa.spec.metrics or []
        if not metrics_specs:  # Kubernetes' default: cpu at 80% of request
            metrics_specs = [a.MetricSpec(type="Resource", resource=a.ResourceMetricSource(
                name="cpu", target=a.MetricTarget(type="Utilization", averageUtilization=80)))]
        try:
            pods = self.client.list("Pod", ns, label_selector=selector or None).items
            url = f"/apis/{GROUP_VERSION}/namespaces/{ns}/pods"
            pod_metrics = self.client.request("GET", url, params={"labelSelector": selector} if selector else {})
            items = list(pod_metrics.get("items") or [])
        except MiniK8sError as exc:
            return [_Reading(_metric_desc(m), error=f"unable to get metrics: {exc.message}", spec=m)
                    for m in metrics_specs]
        for m in metrics_specs:
            assert m.resource is not None
            resource, target = m.resource.name, m.resource.target
            name = _metric_desc(m)
            usage, window = pod_usage(items, resource)
            infos = [pod_info(p, resource, now) for p in pods]
            if not any(p.name in usage for p in infos):
                readings.append(_Reading(name, error=f"unable to get metrics for resource {resource}: no metrics "
                                                     "returned from resource metrics API", spec=m))
                continue
            try:
                average = None
                if target.type == "AverageValue" and target.averageValue is not None:
                    raw = parse_quantity(target.averageValue)
                    average = float(raw * 1000) if resource == "cpu" else float(raw)
                proposal = algo.propose(current, infos, usage, resource, target.averageUtilization
                                        if target.type == "Utilization" else None, average,
                                        self.config.tolerance, self.config.cpu_initialization_s,
                                        self.config.initial_readiness_delay_s, window)
                readings.append(_Reading(name, proposal, spec=m))
            except (algo.MissingRequests, ValueError) as exc:
                readings.append(_Reading(name, error=f"failed to get {resource} utilization: {exc}", spec=m))
        return readings

    def _rescale(self, hpa: Any, info: k.KindInfo, ns: str, name: str, current: int, desired: int, reason: str,
                 conditions: dict[str, tuple[str, str, str]]) -> None:
        try:
            self.client.request("PATCH", info.url(ns, name, "scale"), json={"spec": {"replicas": desired}},
                                headers={"Content-Type": "application/merge-patch+json"})
        except MiniK8sError as exc:
            msg = f"the HPA controller was unable to update the target scale: {exc.message}"
            conditions["AbleToScale"] = ("False", "FailedUpdateScale", msg)
            self.events.record(hpa, "Warning", "FailedRescale", f"New size: {desired}; reason: {reason}; "
                                                                 f"error: {exc.message}")
            return
        conditions["AbleToScale"] = ("True", "SucceededRescale",
                                     f"the HPA controller was able to update the target scale to {desired}")
        self.events.record(hpa, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {reason}")
        log.info("rescaled", extra={"hpa": object_key(hpa), "from": current, "to": desired, "reason": reason})

    def _write_status(self, hpa: Any, current: int, desired: int | None, last_scale: str | None,
                      conditions: dict[str, tuple[str, str, str]], readings: list[_Reading]) -> None:
        old = hpa.status or a.HorizontalPodAutoscalerStatus()
        now = _iso(self.clock())
        old_conds = {c.type: c for c in old.conditions or []}
        conds = []
        for ctype in ("AbleToScale", "ScalingActive", "ScalingLimited"):
            if ctype not in conditions:
                if ctype in old_conds:
                    conds.append(old_conds[ctype].to_dict())
                continue
            st, reason, msg = conditions[ctype]
            prev = old_conds.get(ctype)
            since = prev.lastTransitionTime if prev is not None and prev.status == st else now
            conds.append({"type": ctype, "status": st, "reason": reason, "message": msg,
                          "lastTransitionTime": since})
        current_metrics = []
        for r in readings:
            if r.proposal is None or r.spec is None or r.spec.resource is None:
                continue
            res = r.spec.resource
            value: dict[str, Any] = {}
            if r.proposal.utilization is not None:
                value["averageUtilization"] = r.proposal.utilization
            value["averageValue"] = (f"{int(r.proposal.average)}m" if res.name == "cpu"
                                     else str(int(r.proposal.average)))
            current_metrics.append({"type": "Resource", "resource": {"name": res.name, "current": value}})
        status: dict[str, Any] = {
            "observedGeneration": hpa.metadata.generation, "currentReplicas": current,
            "desiredReplicas": desired if desired is not None else old.desiredReplicas,
            "lastScaleTime": last_scale or old.lastScaleTime, "conditions": conds,
        }
        if current_metrics or readings:
            status["currentMetrics"] = current_metrics or None
        elif old.currentMetrics:
            status["currentMetrics"] = [m.to_dict() for m in old.currentMetrics]
        body = hpa.to_dict()
        body["status"] = {key: v for key, v in status.items() if v is not None}
        if body["status"] == (hpa.status.to_dict() if hpa.status else None):
            return
        self.client.update_status(body)  # a stale cache is a 409, retried with fresh data
