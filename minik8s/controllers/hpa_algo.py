"""The HorizontalPodAutoscaler algorithm, pure: no API, no clock of its own (times are passed in).

Follows Kubernetes' `pkg/controller/podautoscaler` (replica_calculator.go, horizontal.go):
- per metric: usage ratio = current / target; within tolerance (10%) → keep the current count;
  otherwise desired = ceil(ratio × ready pods with metrics), with pods that are missing metrics assumed
  at 100% of target on scale-down and 0% on scale-up, and unready pods (not Ready, or just started)
  counted at 0% on scale-up only; the ratio is recomputed with these and a change of direction or a new
  ratio inside tolerance keeps the current count;
- several metrics → the largest proposal;
- behavior: stabilization (scale up to the lowest recommendation in the up window, down to the highest
  in the down window), then rate policies over their periods (selectPolicy Max/Min/Disabled) using the
  history of past scale events, then minReplicas/maxReplicas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DEFAULT_TOLERANCE = 0.1
#: A pod is "just started" for this long after it started (CPU only), as Kubernetes' --horizontal-pod-
#: autoscaler-cpu-initialization-period; its CPU sample is ignored on scale-up until then.
CPU_INITIALIZATION_S = 300.0
#: ...and its readiness is trusted only this long after start (--horizontal-pod-autoscaler-initial-readiness-delay).
INITIAL_READINESS_DELAY_S = 30.0


@dataclass(frozen=True)
class PodInfo:
    """What the algorithm needs to know about one pod of the target."""

    name: str
    #: The Ready condition's status; None when the pod has no Ready condition yet.
    ready: bool | None
    #: Seconds since the pod started (None: unknown / not started).
    age_s: float | None = None
    #: Seconds since the Ready condition last changed (None: unknown).
    ready_changed_s: float | None = None
    #: Sum of the containers' requests for the metric's resource (millicores or bytes); None if any lacks one.
    request: float | None = None
    deleting: bool = False
    failed: bool = False
    pending: bool = False


@dataclass(frozen=True)
class MetricProposal:
    replicas: int
    #: The measured value, as the status reports it: utilization percent, or the average value (raw units).
    utilization: int | None
    average: float
    reason: str


class MissingRequests(ValueError):
    """Utilization asked for, but some pod has no request for the resource."""


def _is_unready(pod: PodInfo, resource: str, cpu_init_s: float, readiness_delay_s: float,
                metric_window_s: float) -> bool:
    """Kubernetes' groupPods: only CPU samples are distrusted. A pod is unready (for cpu) when it has no
    Ready condition or start time; inside the CPU initialization period when it is not Ready or its
    readiness changed less than one metric window ago; later only when it is not Ready and has never
    been Ready (its readiness last changed within the initial readiness delay after start)."""
    if pod.pending:
        return True
    if resource != "cpu":
        return False
    if pod.ready is None or pod.age_s is None:
        return True
    changed = pod.ready_changed_s if pod.ready_changed_s is not None else pod.age_s
    if pod.age_s < cpu_init_s:
        return not pod.ready or changed < metric_window_s
    return not pod.ready and (pod.age_s - changed) < readiness_delay_s


def propose(current_replicas: int, pods: list[PodInfo], usage: dict[str, float], resource: str,
            target_utilization: int | None = None, target_average: float | None = None,
            tolerance: float = DEFAULT_TOLERANCE, cpu_init_s: float = CPU_INITIALIZATION_S,
            readiness_delay_s: float = INITIAL_READINESS_DELAY_S, metric_window_s: float = 0.0) -> MetricProposal:
    """One metric's proposal.

    `usage`: pod name → the pod's usage of `resource` (millicores or bytes), for pods that have metrics.
    Exactly one of `target_utilization` (percent of request) and `target_average` (same units as usage).
    """
    ready: dict[str, float] = {}
    unready: set[str] = set()
    missing: set[str] = set()
    requests: dict[str, float] = {}
    for pod in pods:
        if pod.deleting or pod.failed:
            continue
        if pod.pending:
            unready.add(pod.name)
        elif pod.name not in usage:
            missing.add(pod.name)
        elif _is_unready(pod, resource, cpu_init_s, readiness_delay_s, metric_window_s):
            unready.add(pod.name)
        else:
            ready[pod.name] = usage[pod.name]
        if target_utilization is not None:
            if pod.request is None or pod.request <= 0:
                raise MissingRequests(f"missing request for {resource} in pod {pod.name}")
            requests[pod.name] = pod.request
    if not ready and not unready and not missing:
        raise ValueError(f"no pods with {resource} metrics")

    def ratio_of(values: dict[str, float]) -> tuple[float, float]:
        """(usage ratio, measured value) over `values`."""
        if not values:
            return 0.0, 0.0
        if target_utilization is not None:
            total_req = sum(requests[n] for n in values)
            util = sum(values.values()) * 100.0 / total_req
            return util / target_utilization, util
        avg = sum(values.values()) / len(values)
        assert target_average is not None
        return avg / target_average, avg

    ratio, measured = ratio_of(ready)
    reported = measured
    if not ready:  # every pod unready or missing: nothing trustworthy to scale on
        return _proposal(current_replicas, None, 0.0, target_utilization, "no ready pods with metrics")
    if not missing and not unready:
        if abs(1.0 - ratio) <= tolerance:
            return _proposal(current_replicas, reported, measured, target_utilization, "within tolerance")
        return _proposal(math.ceil(ratio * len(ready)), reported, measured, target_utilization, "metric")
    # rebalance: missing pods at 100% of target on scale-down, 0% on scale-up; unready pods at 0% on scale-up
    filled = dict(ready)
    fill_high = requests if target_utilization is not None else None
    for name in missing:
        if ratio < 1.0:
            filled[name] = (fill_high[name] * target_utilization / 100.0 if fill_high is not None
                            and target_utilization is not None else float(target_average or 0))
        else:
            filled[name] = 0.0
    if ratio > 1.0:
        for name in unready:
            filled[name] = 0.0
    new_ratio, _ = ratio_of(filled)
    if abs(1.0 - new_ratio) <= tolerance or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return _proposal(current_replicas, reported, measured, target_utilization, "direction changed")
    desired = math.ceil(new_ratio * len(filled))
    if (new_ratio < 1.0 and desired > current_replicas) or (new_ratio > 1.0 and desired < current_replicas):
        desired = current_replicas
    return _proposal(desired, reported, measured, target_utilization, "metric")


def _proposal(replicas: int, reported: float | None, measured: float, target_utilization: int | None,
              reason: str) -> MetricProposal:
    util = int(reported) if (reported is not None and target_utilization is not None) else None
    return MetricProposal(replicas, util, measured, reason)


# --- behavior ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    type: str  # Pods | Percent
    value: int
    period_s: int


@dataclass(frozen=True)
class Rules:
    window_s: int
    select: str  # Max | Min | Disabled
    policies: tuple[Policy, ...]


@dataclass(frozen=True)
class ScaleEvent:
    at: float
    change: int  # positive: pods added; negative: pods removed


@dataclass
class History:
    """What one HPA remembers between syncs: recommendations (for stabilization) and scale events (for rates)."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_up_events: list[ScaleEvent] = field(default_factory=list)
    scale_down_events: list[ScaleEvent] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    replicas: int
    #: Why the count is not the raw recommendation: "" or ScaleUpLimit / ScaleDownLimit / TooFewReplicas /
    #: TooManyReplicas, as Kubernetes' ScalingLimited condition.
    limited_reason: str
    limited_message: str


def _stabilize(history: History, now: float, recommended: int, current: int, up: Rules, down: Rules) -> int:
    longest = max(up.window_s, down.window_s)
    history.recommendations = [(t, r) for t, r in history.recommendations if now - t <= longest]
    history.recommendations.append((now, recommended))
    up_floor, down_ceiling = recommended, recommended
    for t, r in history.recommendations:
        if now - t <= up.window_s:
            up_floor = min(up_floor, r)
        if now - t <= down.window_s:
            down_ceiling = max(down_ceiling, r)
    # scale up no higher than the lowest recommendation of the up window, down no lower than the
    # highest of the down window
    result = current
    if result < up_floor:
        result = up_floor
    if result > down_ceiling:
        result = down_ceiling
    return result


def _changed_in(events: list[ScaleEvent], now: float, period_s: int) -> int:
    return sum(abs(e.change) for e in events if now - e.at <= period_s)


def _scale_up_limit(current: int, events: list[ScaleEvent], now: float, rules: Rules) -> int:
    if rules.select == "Disabled":
        return current
    best: int | None = None
    for pol in rules.policies:
        added = _changed_in(events, now, pol.period_s)
        start = current - added  # the count at the period's start
        limit = start + pol.value if pol.type == "Pods" else math.ceil(start * (1 + pol.value / 100.0))
        if best is None:
            best = limit
        else:
            best = max(best, limit) if rules.select == "Max" else min(best, limit)
    return max(current, best) if best is not None else current


def _scale_down_limit(current: int, events: list[ScaleEvent], now: float, rules: Rules) -> int:
    if rules.select == "Disabled":
        return current
    best: int | None = None
    for pol in rules.policies:
        removed = _changed_in(events, now, pol.period_s)
        start = current + removed
        limit = start - pol.value if pol.type == "Pods" else math.ceil(start * (1 - pol.value / 100.0))
        if best is None:
            best = limit
        else:
            best = min(best, limit) if rules.select == "Max" else max(best, limit)
    return min(current, best) if best is not None else current


def decide(history: History, now: float, current: int, recommended: int, min_replicas: int, max_replicas: int,
           up: Rules, down: Rules) -> Decision:
    """The replica count to write, given the raw recommendation; records the scale event in `history`."""
    stabilized = _stabilize(history, now, recommended, current, up, down)
    longest = max([p.period_s for p in (*up.policies, *down.policies)] or [0])
    history.scale_up_events = [e for e in history.scale_up_events if now - e.at <= longest]
    history.scale_down_events = [e for e in history.scale_down_events if now - e.at <= longest]
    reason, message = "", ""
    desired = stabilized
    if stabilized > current:
        limit = _scale_up_limit(current, history.scale_up_events, now, up)
        if limit < stabilized:
            desired, reason, message = limit, "ScaleUpLimit", "the desired replica count is increasing faster " \
                                                              "than the maximum scale rate"
        if desired > max_replicas:
            desired, reason, message = max_replicas, "TooManyReplicas", "the desired replica count is more " \
                                                                        "than the maximum replica count"
    elif stabilized < current:
        limit = _scale_down_limit(current, history.scale_down_events, now, down)
        if limit > stabilized:
            desired, reason, message = limit, "ScaleDownLimit", "the desired replica count is decreasing faster " \
                                                                "than the maximum scale rate"
        if desired < min_replicas:
            desired, reason, message = min_replicas, "TooFewReplicas", "the desired replica count is less than " \
                                                                       "the minimum replica count"
    # clamp whatever the direction (a target outside [min, max] is brought back at once, as Kubernetes)
    if desired > max_replicas:
        desired, reason, message = max_replicas, "TooManyReplicas", "the desired replica count is more than the " \
                                                                    "maximum replica count"
    if desired < min_replicas:
        desired, reason, message = min_replicas, "TooFewReplicas", "the desired replica count is less than the " \
                                                                   "minimum replica count"
    if desired > current:
        history.scale_up_events.append(ScaleEvent(now, desired - current))
    elif desired < current:
        history.scale_down_events.append(ScaleEvent(now, desired - current))
    return Decision(desired, reason, message)
