"""Semantic validation beyond the models' shapes: names, quantities, uniqueness, references.

Every check reports a field path (`spec.containers[1].name`) so a user can find the line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from minik8s.api import downward, poddns
from minik8s.api import types as t
from minik8s.api.quantity import QuantityError, parse_quantity

Causes = list[tuple[str, str]]

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
MAX_LABEL = 63
MAX_SUBDOMAIN = 253
MAX_PORT = 65535
KNOWN_RESOURCES = {"cpu", "memory", "ephemeral-storage", "pods"}
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
ENV_VAR_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
MAX_FILE_MODE = 0o777
VOLUME_SOURCES = ("emptyDir", "hostPath", "configMap", "secret", "projected", "downwardAPI")
PROJECTION_SOURCES = ("secret", "configMap", "downwardAPI", "serviceAccountToken")
MIN_TOKEN_EXPIRATION_S = 600
MAX_TOKEN_EXPIRATION_S = 1 << 32
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
#: Fields Kubernetes types as int64; every other integer field of the kinds served here is int32 there,
#: and a Go client (kubectl, controllers) cannot decode an object with a bigger number in it.
INT64_FIELDS = frozenset({"generation", "observedGeneration", "terminationGracePeriodSeconds", "activeDeadlineSeconds",
                          "deletionGracePeriodSeconds", "runAsUser", "runAsGroup", "fsGroup", "tolerationSeconds",
                          "startingDeadlineSeconds", "value", "low", "high", "remainingItemCount",
                          "expirationSeconds"})


def pydantic_causes(err: ValidationError) -> Causes:
    """Turn pydantic's errors into (field path, message) pairs with Kubernetes wording."""
    causes: Causes = []
    for e in err.errors():
        path = ""
        for part in e["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif str(part) in ("str", "int", "float", "bool") or "[" in str(part):
                continue  # union member names pydantic adds to the location
            else:
                path += ("." if path else "") + str(part)
        etype = e["type"]
        if etype == "extra_forbidden":
            parent, _, field = path.rpartition(".")
            causes.append((parent or "<root>", f'unknown field "{field}"'))
        elif etype == "missing":
            causes.append((path, "Required value"))
        else:
            causes.append((path, f"Invalid value: {e.get('input')!r}: {e['msg']}"))
    # unions report each member's failure: keep one line per path
    seen: set[str] = set()
    unique = []
    for c in causes:
        if c[0] not in seen:
            seen.add(c[0])
            unique.append(c)
    return unique


def int_range_causes(obj: Any, path: str = "") -> Causes:
    """Integers too big for the Go type Kubernetes gives their field (int32, or int64 for INT64_FIELDS)."""
    causes: Causes = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            causes += int_range_causes(value, f"{path}.{key}" if path else str(key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            causes += int_range_causes(value, f"{path}[{i}]")
    elif isinstance(obj, int) and not isinstance(obj, bool):
        field = path.rsplit(".", 1)[-1].split("[", 1)[0]
        low, high = INT64 if field in INT64_FIELDS else INT32
        if not low <= obj <= high:
            bits = 64 if field in INT64_FIELDS else 32
            causes.append((path, f"Invalid value: {obj}: must fit in a {bits}-bit integer ({low} to {high})"))
    return causes


def check_name(value: str | None, path: str, causes: Causes, label: bool = False) -> None:
    if not value:
        causes.append((path, "Required value: name or generateName is required"))
        return
    pattern, limit = (DNS1123_LABEL, MAX_LABEL) if label else (DNS1123_SUBDOMAIN, MAX_SUBDOMAIN)
    if len(value) > limit or not pattern.match(value):
        kind = "a lowercase RFC 1123 label" if label else "a lowercase RFC 1123 subdomain"
        causes.append((path, f'Invalid value: "{value}": must be {kind} (a-z, 0-9, "-")'))


def check_labels(labels: dict[str, str] | None, path: str, causes: Causes) -> None:
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        if (prefix and not DNS1123_SUBDOMAIN.match(prefix)) or len(name) > MAX_LABEL \
                or not LABEL_NAME.match(name):
            causes.append((f"{path}", f'Invalid value: "{key}": not a valid label key'))
        if len(value) > MAX_LABEL or not LABEL_VALUE.match(value):
            causes.append((f"{path}.{key}", f'Invalid value: "{value}": not a valid label value'))


def check_meta(meta: t.ObjectMeta, causes: Causes, label_name: bool = False) -> None:
    if meta.name or not meta.generateName:
        check_name(meta.name, "metadata.name", causes, label=label_name)
    check_labels(meta.labels, "metadata.labels", causes)


def _check_quantities(values: dict[str, Any] | None, path: str, causes: Causes) -> None:
    for key, value in (values or {}).items():
        if key not in KNOWN_RESOURCES and "/" not in key:
            causes.append((f"{path}.{key}", f'Unsupported value: "{key}": supported: cpu, memory'))
            continue
        try:
            parse_quantity(value)
        except QuantityError as exc:
            causes.append((f"{path}.{key}", f"Invalid value: {exc}"))


def config_key_errors(key: str) -> list[str]:
    """Kubernetes' IsConfigMapKey: a ConfigMap/Secret key is a file name in a volume and an env source."""
    errors = []
    if len(key) > MAX_SUBDOMAIN:
        errors.append(f"must be no more than {MAX_SUBDOMAIN} characters")
    if not CONFIG_KEY.match(key):
        errors.append("a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
                      "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
                      "'[-._a-zA-Z0-9]+')")
    if key == ".":
        errors.append("must not be '.'")
    elif key == "..":
        errors.append("must not be '..'")
    elif key.startswith(".."):
        errors.append("must not start with '..'")
    return errors


def check_config_key(key: str, path: str, causes: Causes) -> None:
    for err in config_key_errors(key):
        causes.append((path, f'Invalid value: "{key}": {err}'))


def _check_env(c: t.Container, path: str, causes: Causes) -> None:
    for i, var in enumerate(c.env or []):
        vpath = f"{path}.env[{i}]"
        if not var.name:
            causes.append((f"{vpath}.name", "Required value"))
        src = var.valueFrom
        if src is None:
            continue
        if var.value:
            causes.append((f"{vpath}.valueFrom", 'Invalid value: "": may not be specified when `value` is not empty'))
        refs = [(n, r) for n, r in (("fieldRef", src.fieldRef), ("resourceFieldRef", src.resourceFieldRef),
                                    ("configMapKeyRef", src.configMapKeyRef),
                                    ("secretKeyRef", src.secretKeyRef)) if r is not None]
        if len(refs) != 1:
            causes.append((f"{vpath}.valueFrom", 'Invalid value: "": must specify exactly one of: `fieldRef`, '
                                                 "`resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
        for ref_name, ref in refs:
            if isinstance(ref, (t.ConfigMapKeySelector, t.SecretKeySelector)):
                if not ref.name:
                    causes.append((f"{vpath}.valueFrom.{ref_name}.name", "Required value"))
                check_config_key(ref.key, f"{vpath}.valueFrom.{ref_name}.key", causes)
    for i, src_from in enumerate(c.envFrom or []):
        fpath = f"{path}.envFrom[{i}]"
        refs_from = [(n, r) for n, r in (("configMapRef", src_from.configMapRef), ("secretRef", src_from.secretRef))
                     if r is not None]
        if len(refs_from) != 1:
            causes.append((fpath, "Invalid value: must specify exactly one of: `configMapRef` or `secretRef`"))
        for ref_name, ref_from in refs_from:
            if not ref_from.name:
                causes.append((f"{fpath}.{ref_name}.name", "Required value"))
        if src_from.prefix and not ENV_VAR_NAME.match(src_from.prefix):
            causes.append((f"{fpath}.prefix", f'Invalid value: "{src_from.prefix}": a valid environment variable '
                                              "name must consist of alphabetic characters, digits, '_', '-', or '.', "
                                              "and must not start with a digit"))


def _check_mode(mode: int | None, path: str, causes: Causes) -> None:
    if mode is not None and not 0 <= mode <= MAX_FILE_MODE:
        causes.append((path, f"Invalid value: {mode}: must be a number between 0 and 0777 (octal), both inclusive"))


def _check_file_path(value: str, path: str, causes: Causes) -> None:
    if not value:
        causes.append((path, "Required value"))
    elif value.startswith("/"):
        causes.append((path, f'Invalid value: "{value}": must be a relative path'))
    elif ".." in value.split("/"):
        causes.append((path, f'Invalid value: "{value}": must not contain \'..\''))
    elif value.startswith(".."):
        causes.append((path, f'Invalid value: "{value}": must not start with \'..\''))


def _check_projection(source: t.ConfigMapVolumeSource | t.SecretVolumeSource | t.ConfigMapProjection
                      | t.SecretProjection, path: str, causes: Causes) -> None:
    """items (key -> relative path, mode) and defaultMode of a ConfigMap or Secret volume."""
    _check_mode(getattr(source, "defaultMode", None), f"{path}.defaultMode", causes)
    for i, item in enumerate(source.items or []):
        ipath = f"{path}.items[{i}]"
        check_config_key(item.key, f"{ipath}.key", causes)
        _check_file_path(item.path, f"{ipath}.path", causes)
        _check_mode(item.mode, f"{ipath}.mode", causes)


def _check_projected(src: t.ProjectedVolumeSource, path: str, causes: Causes) -> None:
    """Each source names exactly one kind; no two files share a path (Kubernetes' validateProjectionSources)."""
    _check_mode(src.defaultMode, f"{path}.defaultMode", causes)
    paths: set[str] = set()

    def claim(value: str, where: str) -> None:
        if value in paths:
            causes.append((where, f'Invalid value: "{value}": conflicting duplicate paths'))
        paths.add(value)

    for i, proj in enumerate(src.sources or []):
        spath = f"{path}.sources[{i}]"
        kinds = [name for name in PROJECTION_SOURCES if getattr(proj, name) is not None]
        if len(kinds) != 1:
            causes.append((spath, f"must specify exactly one of: {', '.join(PROJECTION_SOURCES)}"))
        for kind in ("configMap", "secret"):
            ref = getattr(proj, kind)
            if ref is not None:
                if not ref.name:
                    causes.append((f"{spath}.{kind}.name", "Required value"))
                _check_projection(ref, f"{spath}.{kind}", causes)
                for j, item in enumerate(ref.items or []):
                    claim(item.path, f"{spath}.{kind}.items[{j}].path")
        if proj.downwardAPI is not None:
            for j, item in enumerate(proj.downwardAPI.items or []):
                ipath = f"{spath}.downwardAPI.items[{j}]"
                _check_file_path(item.path, f"{ipath}.path", causes)
                _check_mode(item.mode, f"{ipath}.mode", causes)
                downward.check_volume_file(item, ipath, causes)
                claim(item.path, f"{ipath}.path")
        token = proj.serviceAccountToken
        if token is not None:
            tpath = f"{spath}.serviceAccountToken"
            _check_file_path(token.path, f"{tpath}.path", causes)
            claim(token.path, f"{tpath}.path")
            exp = token.expirationSeconds
            if exp is not None and exp < MIN_TOKEN_EXPIRATION_S:
                causes.append((f"{tpath}.expirationSeconds",
                               f"Invalid value: {exp}: may not specify a duration less than 10 minutes"))
            if exp is not None and exp > MAX_TOKEN_EXPIRATION_S:
                causes.append((f"{tpath}.expirationSeconds",
                               f"Invalid value: {exp}: may not specify a duration larger than 2^32 seconds"))


def _check_volume(v: t.Volume, path: str, causes: Causes) -> None:
    sources = [s for s in VOLUME_SOURCES if getattr(v, s) is not None]
    if len(sources) != 1:
        causes.append((path, f"must specify exactly one of: {', '.join(VOLUME_SOURCES)}"))
    if v.hostPath and not v.hostPath.path.startswith("/"):
        causes.append((f"{path}.hostPath.path", "Invalid value: must be an absolute path"))
    if v.configMap is not None:
        if not v.configMap.name:
            causes.append((f"{path}.configMap.name", "Required value"))
        _check_projection(v.configMap, f"{path}.configMap", causes)
    if v.secret is not None:
        if not v.secret.secretName:
            causes.append((f"{path}.secret.secretName", "Required value"))
        _check_projection(v.secret, f"{path}.secret", causes)
    if v.projected is not None:
        _check_projected(v.projected, f"{path}.projected", causes)
    if v.downwardAPI is not None:
        _check_downward_volume(v.downwardAPI, f"{path}.downwardAPI", causes)


def _check_downward_volume(src: t.DownwardAPIVolumeSource, path: str, causes: Causes) -> None:
    _check_mode(src.defaultMode, f"{path}.defaultMode", causes)
    paths: set[str] = set()
    for i, item in enumerate(src.items or []):
        ipath = f"{path}.items[{i}]"
        _check_file_path(item.path, f"{ipath}.path", causes)
        _check_mode(item.mode, f"{ipath}.mode", causes)
        downward.check_volume_file(item, ipath, causes)
        if item.path in paths:
            causes.append((f"{ipath}.path", f'Invalid value: "{item.path}": conflicting duplicate paths'))
        paths.add(item.path)


def _check_container(c: t.Container, path: str, volumes: set[str], causes: Causes) -> None:
    check_name(c.name, f"{path}.name", causes, label=True)
    _check_env(c, path, causes)
    if not c.image:
        causes.append((f"{path}.image", "Required value"))
    if c.resources:
        _check_quantities(c.resources.requests, f"{path}.resources.requests", causes)
        _check_quantities(c.resources.limits, f"{path}.resources.limits", causes)
        for key, req in (c.resources.requests or {}).items():
            lim = (c.resources.limits or {}).get(key)
            try:
                if lim is not None and parse_quantity(req) > parse_quantity(lim):
                    causes.append((f"{path}.resources.requests.{key}",
                                   f'Invalid value: "{req}": must be less than or equal to {key} limit'))
            except QuantityError:
                pass  # already reported above
    port_names: set[str] = set()
    for i, p in enumerate(c.ports or []):
        if not 1 <= p.containerPort <= MAX_PORT:
            causes.append((f"{path}.ports[{i}].containerPort",
                           f"Invalid value: {p.containerPort}: must be between 1 and {MAX_PORT}"))
        if p.hostPort is not None and not 1 <= p.hostPort <= MAX_PORT:
            causes.append((f"{path}.ports[{i}].hostPort",
                           f"Invalid value: {p.hostPort}: must be between 1 and {MAX_PORT}"))
        if p.name:
            if p.name in port_names:
                causes.append((f"{path}.ports[{i}].name", f'Duplicate value: "{p.name}"'))
            port_names.add(p.name)
    _check_security_context(c.securityContext, f"{path}.securityContext", causes)
    _check_termination_message(c, path, causes)
    for i, m in enumerate(c.volumeMounts or []):
        if m.name not in volumes:
            causes.append((f"{path}.volumeMounts[{i}].name", f'Not found: "{m.name}" (no such volume in the pod)'))
        if not m.mountPath.startswith("/"):
            causes.append((f"{path}.volumeMounts[{i}].mountPath", f'Invalid value: "{m.mountPath}": must be absolute'))
        if m.subPath and (m.subPath.startswith("/") or ".." in m.subPath.split("/")):
            causes.append((f"{path}.volumeMounts[{i}].subPath",
                           f"Invalid value: \"{m.subPath}\": must be a relative path without '..'"))


TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
LIFECYCLE_HANDLERS = ("exec", "httpGet", "sleep")
#: An IANA service name: what a named port may be (Kubernetes' validatePortNumOrName).
PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
MAX_PORT_NAME = 15
#: Kubernetes' default terminationGracePeriodSeconds, the bound of a sleep hook when the pod sets none.
DEFAULT_GRACE_SECONDS = 30


def _check_termination_message(c: t.Container, path: str, causes: Causes) -> None:
    """The kubelet mounts the message file at the path and reads it per the policy: both must be usable."""
    policy = c.terminationMessagePolicy
    if policy is not None and policy not in TERMINATION_MESSAGE_POLICIES:
        causes.append((f"{path}.terminationMessagePolicy",
                       f'Unsupported value: "{policy}": supported values: "File", "FallbackToLogsOnError"'))
    message_path = c.terminationMessagePath
    if message_path is not None and not message_path.startswith("/"):
        causes.append((f"{path}.terminationMessagePath", f'Invalid value: "{message_path}": must be an absolute path'))


def _check_port_num_or_name(port: int | str, path: str, causes: Causes) -> None:
    if isinstance(port, int) or port.isdigit():
        if not 1 <= int(port) <= MAX_PORT:
            causes.append((path, f"Invalid value: {port}: must be between 1 and {MAX_PORT}, inclusive"))
    elif len(port) > MAX_PORT_NAME or not PORT_NAME.match(port) or "--" in port:
        causes.append((path, f'Invalid value: "{port}": must be a port number or an IANA service name '
                             f"(at most {MAX_PORT_NAME} lowercase letters, digits and '-', with a letter)"))


def _check_lifecycle_handler(h: t.LifecycleHandler, grace: int, path: str, causes: Causes) -> None:
    """Exactly one of exec, httpGet, sleep (Kubernetes' validateLifecycleHandler); tcpSocket is never run."""
    if h.tcpSocket is not None:
        causes.append((f"{path}.tcpSocket", "Forbidden: tcpSocket is not supported in lifecycle hooks (Kubernetes "
                                            "keeps it only for compatibility and never runs it): use exec, httpGet "
                                            "or sleep"))
    chosen = [name for name in LIFECYCLE_HANDLERS if getattr(h, name) is not None]
    if not chosen and h.tcpSocket is None:
        causes.append((path, "Required value: must specify a handler type (exec, httpGet or sleep)"))
    for extra in chosen[1:]:
        causes.append((f"{path}.{extra}", "Forbidden: may not specify more than 1 handler type"))
    if h.exec is not None and not h.exec.command:
        causes.append((f"{path}.exec.command", "Required value"))
    if h.httpGet is not None:
        _check_port_num_or_name(h.httpGet.port, f"{path}.httpGet.port", causes)
    if h.sleep is not None and not 0 <= h.sleep.seconds <= grace:
        causes.append((f"{path}.sleep.seconds", f"Invalid value: {h.sleep.seconds}: must be non-negative and not "
                                                f"more than terminationGracePeriodSeconds ({grace})"))


def _check_lifecycles(spec: t.PodSpec, path: str, causes: Causes) -> None:
    """postStart/preStop handlers; an init container has none unless it is a sidecar (restartPolicy Always)."""
    grace = spec.terminationGracePeriodSeconds
    grace = DEFAULT_GRACE_SECONDS if grace is None else grace
    for group, containers in (("initContainers", spec.initContainers or []), ("containers", spec.containers)):
        for i, c in enumerate(containers):
            if c.lifecycle is None:
                continue
            lpath = f"{path}.{group}[{i}].lifecycle"
            if group == "initContainers" and getattr(c, "restartPolicy", None) != "Always":
                causes.append((lpath, "Forbidden: may not be set for init containers without restartPolicy Always"))
                continue
            for hook in ("postStart", "preStop"):
                handler = getattr(c.lifecycle, hook)
                if handler is not None:
                    _check_lifecycle_handler(handler, grace, f"{lpath}.{hook}", causes)


def _check_seccomp(profile: t.SeccompProfile | None, path: str, causes: Causes) -> None:
    if profile is None:
        return
    if profile.type == "Localhost":  # the kubelet has no profile directory to read it from: refused, not ignored
        causes.append((f"{path}.type", 'Unsupported value: "Localhost": supported values: "RuntimeDefault", '
                                       '"Unconfined" (nodes here keep no seccomp profile directory)'))
    elif profile.localhostProfile is not None:
        causes.append((f"{path}.localhostProfile", 'Forbidden: can only be set when type is "Localhost"'))


def _check_security_context(sc: t.SecurityContext | None, path: str, causes: Causes) -> None:
    if sc is None:
        return
    _check_seccomp(sc.seccompProfile, f"{path}.seccompProfile", causes)
    if sc.privileged and sc.allowPrivilegeEscalation is False:
        causes.append((f"{path}.allowPrivilegeEscalation",
                       "Invalid value: false: cannot set `allowPrivilegeEscalation` to false and `privileged` "
                       "to true"))
    for field, uid in (("runAsUser", sc.runAsUser), ("runAsGroup", sc.runAsGroup)):
        if uid is not None and uid < 0:
            causes.append((f"{path}.{field}", f"Invalid value: {uid}: must be between 0 and 2147483647, inclusive"))


def _check_container_restart_policy(c: t.Container, path: str, init: bool, causes: Causes) -> None:
    """Kubernetes' rules for native sidecars: ``restartPolicy`` only on init containers (only "Always"),
    and probes only on init containers that are sidecars (a run-to-completion container is never probed)."""
    if not init:
        if c.restartPolicy is not None:
            causes.append((f"{path}.restartPolicy", "Forbidden: may not be set for non-init containers"))
        return
    if c.restartPolicy == "Always":  # any other value is refused by the type (Literal["Always"])
        return
    for field, probe in (("livenessProbe", c.livenessProbe), ("readinessProbe", c.readinessProbe),
                         ("startupProbe", c.startupProbe)):
        if probe is not None:
            causes.append((f"{path}.{field}", "Forbidden: may not be set for init containers without "
                                              "restartPolicy=Always"))


def validate_pod_spec(spec: t.PodSpec, path: str, causes: Causes) -> None:
    volumes: set[str] = set()
    for i, v in enumerate(spec.volumes or []):
        check_name(v.name, f"{path}.volumes[{i}].name", causes, label=True)
        if v.name in volumes:
            causes.append((f"{path}.volumes[{i}].name", f'Duplicate value: "{v.name}"'))
        volumes.add(v.name)
        _check_volume(v, f"{path}.volumes[{i}]", causes)
    if not spec.containers:
        causes.append((f"{path}.containers", "Required value: at least one container"))
    names: set[str] = set()
    for group, containers in (("initContainers", spec.initContainers or []), ("containers", spec.containers)):
        for i, c in enumerate(containers):
            cpath = f"{path}.{group}[{i}]"
            if c.name in names:
                causes.append((f"{cpath}.name", f'Duplicate value: "{c.name}"'))
            names.add(c.name)
            _check_container(c, cpath, volumes, causes)
            _check_container_restart_policy(c, cpath, group == "initContainers", causes)
    if spec.terminationGracePeriodSeconds is not None and spec.terminationGracePeriodSeconds < 0:
        causes.append((f"{path}.terminationGracePeriodSeconds", "Invalid value: must be >= 0"))
    _check_lifecycles(spec, path, causes)
    if spec.affinity:
        validate_affinity(spec.affinity, f"{path}.affinity", causes)
    validate_spread(spec.topologySpreadConstraints or [], f"{path}.topologySpreadConstraints", causes)
    if spec.priorityClassName is not None:
        check_name(spec.priorityClassName, f"{path}.priorityClassName", causes)
    if spec.securityContext is not None:
        _check_seccomp(spec.securityContext.seccompProfile, f"{path}.securityContext.seccompProfile", causes)
    downward.check_pod_downward(spec, path, causes)
    poddns.check_pod_dns(spec, path, causes)


def check_label_selector(sel: t.LabelSelector, path: str, causes: Causes) -> None:
    check_labels(sel.matchLabels, f"{path}.matchLabels", causes)
    for i, req in enumerate(sel.matchExpressions or []):
        _check_requirement(req, f"{path}.matchExpressions[{i}]", LABEL_OPERATORS, causes)


def validate_spread(constraints: list[t.TopologySpreadConstraint], path: str, causes: Causes) -> None:
    """The rules kube-apiserver applies to topologySpreadConstraints (ValidateTopologySpreadConstraints)."""
    seen: set[tuple[str, str]] = set()
    for i, c in enumerate(constraints):
        cpath = f"{path}[{i}]"
        if c.maxSkew <= 0:
            causes.append((f"{cpath}.maxSkew", f"Invalid value: {c.maxSkew}: must be greater than zero"))
        if not c.topologyKey:
            causes.append((f"{cpath}.topologyKey", "Required value: can not be empty"))
        if c.minDomains is not None:
            if c.minDomains <= 0:
                causes.append((f"{cpath}.minDomains", f"Invalid value: {c.minDomains}: must be greater than zero"))
            if c.whenUnsatisfiable != "DoNotSchedule":
                causes.append((f"{cpath}.minDomains", f"Invalid value: {c.minDomains}: can only use minDomains "
                                                      "if whenUnsatisfiable=DoNotSchedule, not ScheduleAnyway"))
        pair = (c.topologyKey, c.whenUnsatisfiable)
        if pair in seen:
            causes.append((cpath, f'Duplicate value: "{{{c.topologyKey}, {c.whenUnsatisfiable}}}"'))
        seen.add(pair)
        if c.labelSelector is not None:
            check_label_selector(c.labelSelector, f"{cpath}.labelSelector", causes)
        selector_keys = set((c.labelSelector.matchLabels or {}) if c.labelSelector else {}) | \
            {r.key for r in (c.labelSelector.matchExpressions or [] if c.labelSelector else [])}
        for j, key in enumerate(c.matchLabelKeys or []):
            if c.labelSelector is None:
                causes.append((f"{cpath}.matchLabelKeys[{j}]", "Forbidden: must not be specified when "
                                                               "labelSelector is not set"))
            elif key in selector_keys:
                causes.append((f"{cpath}.matchLabelKeys[{j}]", f'Invalid value: "{key}": exists in both '
                                                               "matchLabelKeys and labelSelector"))


NODE_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
LABEL_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
NODE_FIELDS = ("metadata.name",)
MAX_AFFINITY_WEIGHT = 100


def _check_requirement(req: t.NodeSelectorRequirement | t.LabelSelectorRequirement, path: str,
                       operators: tuple[str, ...], causes: Causes) -> None:
    if req.operator not in operators:
        supported = ", ".join(f'"{o}"' for o in operators)
        causes.append((f"{path}.operator", f'Unsupported value: "{req.operator}": supported values: {supported}'))
        return
    values = req.values or []
    if req.operator in ("In", "NotIn") and not values:
        causes.append((f"{path}.values", "Required value: must be specified when `operator` is 'In' or 'NotIn'"))
    elif req.operator in ("Exists", "DoesNotExist") and values:
        causes.append((f"{path}.values", "Forbidden: may not be specified when `operator` is 'Exists' or "
                                         "'DoesNotExist'"))
    elif req.operator in ("Gt", "Lt") and (len(values) != 1 or not values[0].lstrip("-").isdigit()):
        causes.append((f"{path}.values", "Required value: must be specified single integer value when `operator` "
                                         "is 'Lt' or 'Gt'"))


def _check_node_term(term: t.NodeSelectorTerm, path: str, causes: Causes) -> None:
    for i, req in enumerate(term.matchExpressions or []):
        _check_requirement(req, f"{path}.matchExpressions[{i}]", NODE_OPERATORS, causes)
    for i, req in enumerate(term.matchFields or []):
        if req.key not in NODE_FIELDS:
            causes.append((f"{path}.matchFields[{i}].key", f'Unsupported value: "{req.key}": supported values: '
                                                            '"metadata.name"'))
        _check_requirement(req, f"{path}.matchFields[{i}]", ("In", "NotIn"), causes)


def _check_weight(weight: int, path: str, causes: Causes) -> None:
    if not 1 <= weight <= MAX_AFFINITY_WEIGHT:
        causes.append((path, f"Invalid value: {weight}: must be in the range 1-{MAX_AFFINITY_WEIGHT}"))


def _check_pod_terms(rules: t.PodAffinity | t.PodAntiAffinity, path: str, causes: Causes) -> None:
    required = [(f"{path}.requiredDuringSchedulingIgnoredDuringExecution[{i}]", term)
                for i, term in enumerate(rules.requiredDuringSchedulingIgnoredDuringExecution or [])]
    for i, wt in enumerate(rules.preferredDuringSchedulingIgnoredDuringExecution or []):
        wpath = f"{path}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
        _check_weight(wt.weight, f"{wpath}.weight", causes)
        required.append((f"{wpath}.podAffinityTerm", wt.podAffinityTerm))
    for tpath, term in required:
        if not term.topologyKey:
            causes.append((f"{tpath}.topologyKey", "Required value: can not be empty"))
        for sel_name, sel in (("labelSelector", term.labelSelector), ("namespaceSelector", term.namespaceSelector)):
            for j, req in enumerate((sel.matchExpressions if sel else None) or []):
                _check_requirement(req, f"{tpath}.{sel_name}.matchExpressions[{j}]", LABEL_OPERATORS, causes)


def validate_affinity(aff: t.Affinity, path: str, causes: Causes) -> None:
    """Operators, values and weights of node and inter-pod (anti-)affinity, as Kubernetes checks them."""
    na = aff.nodeAffinity
    if na and na.requiredDuringSchedulingIgnoredDuringExecution:
        rpath = f"{path}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        terms = na.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms
        if not terms:
            causes.append((f"{rpath}.nodeSelectorTerms", "Required value: must have at least one node selector term"))
        for i, term in enumerate(terms):
            _check_node_term(term, f"{rpath}.nodeSelectorTerms[{i}]", causes)
    for i, pref in enumerate((na.preferredDuringSchedulingIgnoredDuringExecution if na else None) or []):
        ppath = f"{path}.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
        _check_weight(pref.weight, f"{ppath}.weight", causes)
        _check_node_term(pref.preference, f"{ppath}.preference", causes)
    if aff.podAffinity:
        _check_pod_terms(aff.podAffinity, f"{path}.podAffinity", causes)
    if aff.podAntiAffinity:
        _check_pod_terms(aff.podAntiAffinity, f"{path}.podAntiAffinity", causes)


def validate_pod(pod: t.Pod) -> Causes:
    causes: Causes = []
    check_meta(pod.metadata, causes)
    validate_pod_spec(pod.spec, "spec", causes)
    return causes


def validate_namespace(ns: t.Namespace) -> Causes:
    causes: Causes = []
    check_meta(ns.metadata, causes, label_name=True)
    return causes


def validate_node(node: t.Node) -> Causes:
    causes: Causes = []
    check_meta(node.metadata, causes)
    return causes


def validate_generic(obj: t.TypedObject) -> Causes:
    causes: Causes = []
    check_meta(obj.metadata, causes)
    return causes


Validator = Callable[[Any], Causes]
