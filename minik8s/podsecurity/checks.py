"""The Pod Security Standards' checks, on a pod spec as a plain dict (the wire form).

Each check returns the reasons a spec fails it, worded the way Kubernetes' pod-security admission words
them (`privileged (container "c" must not set securityContext.privileged=true)`), so messages users
search for mean the same here. Fields this API does not serve (hostPID, sysctls, seLinuxOptions ...)
are checked all the same: they cost nothing and keep the policy right if the API grows them.
Source of the rules: https://kubernetes.io/docs/concepts/security/pod-security-standards/ (v1.3x).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Obj = dict[str, Any]

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)

#: capabilities baseline lets a container add (Docker's default set, as the standard lists it)
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
RESTRICTED_ADDABLE_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes"})
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
RESTRICTED_VOLUME_TYPES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"})
SECCOMP_ALLOWED_RESTRICTED = ("RuntimeDefault", "Localhost")


def _containers(spec: Obj) -> Iterator[Obj]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            if isinstance(c, dict):
                yield c


def _sc(obj: Obj) -> Obj:
    sc = obj.get("securityContext")
    return sc if isinstance(sc, dict) else {}


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _who(names: list[str]) -> str:
    """`container "a"` or `containers "a", "b"`, as Kubernetes says it."""
    return f'{"containers" if len(names) > 1 else "container"} {_quoted(names)}'


def _offending(spec: Obj, bad: Callable[[Obj], bool]) -> list[str]:
    return [str(c.get("name")) for c in _containers(spec) if bad(c)]


# --- baseline ------------------------------------------------------------------------------------

def host_namespaces(spec: Obj) -> list[str]:
    used = [f"{f}=true" for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f) is True]
    return [f"host namespaces ({', '.join(used)})"] if used else []


def privileged(spec: Obj) -> list[str]:
    names = _offending(spec, lambda c: _sc(c).get("privileged") is True)
    return [f"privileged ({_who(names)} must not set securityContext.privileged=true)"] if names else []


def _added(c: Obj) -> list[str]:
    caps = _sc(c).get("capabilities")
    return [str(x) for x in ((caps or {}).get("add") or [])] if isinstance(caps, dict) else []


def capabilities_baseline(spec: Obj) -> list[str]:
    parts = []
    for c in _containers(spec):
        extra = [cap for cap in _added(c) if cap not in BASELINE_CAPABILITIES]
        if extra:
            parts.append(f'container "{c.get("name")}" must not include {_quoted(extra)} in '
                         "securityContext.capabilities.add")
    return [f"non-default capabilities ({'; '.join(parts)})"] if parts else []


def host_path_volumes(spec: Obj) -> list[str]:
    names = [str(v.get("name")) for v in spec.get("volumes") or [] if isinstance(v, dict) and "hostPath" in v]
    return [f"hostPath volumes ({'volumes' if len(names) > 1 else 'volume'} {_quoted(names)})"] if names else []


def host_ports(spec: Obj) -> list[str]:
    parts = []
    for c in _containers(spec):
        ports = [str(p["hostPort"]) for p in c.get("ports") or [] if isinstance(p, dict) and p.get("hostPort")]
        if ports:
            parts.append(f'container "{c.get("name")}" uses {"hostPorts" if len(ports) > 1 else "hostPort"} '
                         f"{', '.join(ports)}")
    return [f"hostPort ({'; '.join(parts)})"] if parts else []


def _profile_type(sc: Obj, field: str) -> str | None:
    profile = sc.get(field)
    return str(profile.get("type")) if isinstance(profile, dict) and profile.get("type") is not None else None


def apparmor(spec: Obj) -> list[str]:
    parts = []
    if _profile_type(_sc(spec), "appArmorProfile") == "Unconfined":
        parts.append('pod must not set securityContext.appArmorProfile.type to "Unconfined"')
    names = _offending(spec, lambda c: _profile_type(_sc(c), "appArmorProfile") == "Unconfined")
    if names:
        parts.append(f'{_who(names)} must not set securityContext.appArmorProfile.type to "Unconfined"')
    return [f"forbidden AppArmor profile ({'; '.join(parts)})"] if parts else []


def _selinux_bad(sc: Obj) -> bool:
    opts = sc.get("seLinuxOptions")
    if not isinstance(opts, dict):
        return False
    return opts.get("type", "") not in SELINUX_TYPES or bool(opts.get("user")) or bool(opts.get("role"))


def selinux(spec: Obj) -> list[str]:
    parts = ["pod"] if _selinux_bad(_sc(spec)) else []
    names = _offending(spec, lambda c: _selinux_bad(_sc(c)))
    if names:
        parts.append(_who(names))
    if not parts:
        return []
    return [f"seLinuxOptions ({' and '.join(parts)} set forbidden securityContext.seLinuxOptions: "
            "type, user or role)"]


def proc_mount(spec: Obj) -> list[str]:
    names = _offending(spec, lambda c: _sc(c).get("procMount") not in (None, "Default"))
    return [f'procMount ({_who(names)} must not set securityContext.procMount to "Unmasked")'] if names else []


def seccomp_baseline(spec: Obj) -> list[str]:
    parts = []
    if _profile_type(_sc(spec), "seccompProfile") == "Unconfined":
        parts.append('pod must not set securityContext.seccompProfile.type to "Unconfined"')
    names = _offending(spec, lambda c: _profile_type(_sc(c), "seccompProfile") == "Unconfined")
    if names:
        parts.append(f'{_who(names)} must not set securityContext.seccompProfile.type to "Unconfined"')
    return [f"seccompProfile ({'; '.join(parts)})"] if parts else []


def sysctls(spec: Obj) -> list[str]:
    names = [str(s.get("name")) for s in _sc(spec).get("sysctls") or []
             if isinstance(s, dict) and s.get("name") not in SAFE_SYSCTLS]
    return [f"forbidden sysctls ({', '.join(names)})"] if names else []


# --- restricted ----------------------------------------------------------------------------------

def volume_types(spec: Obj) -> list[str]:
    parts = []
    for v in spec.get("volumes") or []:
        if not isinstance(v, dict):
            continue
        kinds = [k for k in v if k != "name" and k not in RESTRICTED_VOLUME_TYPES]
        if kinds:
            parts.append(f'volume "{v.get("name")}" uses restricted volume type "{kinds[0]}"')
    return [f"restricted volume types ({', '.join(parts)})"] if parts else []


def privilege_escalation(spec: Obj) -> list[str]:
    names = _offending(spec, lambda c: _sc(c).get("allowPrivilegeEscalation") is not False)
    if not names:
        return []
    return [f"allowPrivilegeEscalation != false ({_who(names)} must set "
            "securityContext.allowPrivilegeEscalation=false)"]


def run_as_non_root(spec: Obj) -> list[str]:
    pod_says = _sc(spec).get("runAsNonRoot")
    explicit_false = _offending(spec, lambda c: _sc(c).get("runAsNonRoot") is False)
    unset = [] if pod_says is True else _offending(spec, lambda c: _sc(c).get("runAsNonRoot") is None)
    parts = []
    if pod_says is False:
        parts.append("pod must not set securityContext.runAsNonRoot=false")
    if explicit_false:
        parts.append(f"{_who(explicit_false)} must not set securityContext.runAsNonRoot=false")
    if unset:
        parts.append(f"pod or {_who(unset)} must set securityContext.runAsNonRoot=true")
    return [f"runAsNonRoot != true ({'; '.join(parts)})"] if parts else []


def run_as_user(spec: Obj) -> list[str]:
    parts = ["pod"] if _sc(spec).get("runAsUser") == 0 else []
    names = _offending(spec, lambda c: _sc(c).get("runAsUser") == 0)
    if names:
        parts.append(_who(names))
    return [f"runAsUser=0 ({' and '.join(parts)} must not set runAsUser=0)"] if parts else []


def seccomp_restricted(spec: Obj) -> list[str]:
    pod_type = _profile_type(_sc(spec), "seccompProfile")
    parts = []
    if pod_type is not None and pod_type not in SECCOMP_ALLOWED_RESTRICTED:
        parts.append(f'pod must not set securityContext.seccompProfile.type to "{pod_type}"')
    wrong = _offending(spec, lambda c: _profile_type(_sc(c), "seccompProfile") not in
                       (None, *SECCOMP_ALLOWED_RESTRICTED))
    if wrong:
        parts.append(f"{_who(wrong)} must not set securityContext.seccompProfile.type to a value other than "
                     '"RuntimeDefault" or "Localhost"')
    if pod_type not in SECCOMP_ALLOWED_RESTRICTED:
        unset = _offending(spec, lambda c: _profile_type(_sc(c), "seccompProfile") is None)
        if unset:
            parts.append(f'pod or {_who(unset)} must set securityContext.seccompProfile.type to '
                         '"RuntimeDefault" or "Localhost"')
    return [f"seccompProfile ({'; '.join(parts)})"] if parts else []


def capabilities_restricted(spec: Obj) -> list[str]:
    parts = []
    for c in _containers(spec):
        caps = _sc(c).get("capabilities")
        drop = (caps or {}).get("drop") or [] if isinstance(caps, dict) else []
        if "ALL" not in drop:
            parts.append(f'container "{c.get("name")}" must set securityContext.capabilities.drop=["ALL"]')
        extra = [cap for cap in _added(c) if cap not in RESTRICTED_ADDABLE_CAPABILITIES]
        if extra:
            parts.append(f'container "{c.get("name")}" must not include {_quoted(extra)} in '
                         "securityContext.capabilities.add")
    return [f"unrestricted capabilities ({'; '.join(parts)})"] if parts else []


Check = Callable[[Obj], list[str]]
BASELINE_CHECKS: tuple[Check, ...] = (
    host_namespaces, privileged, capabilities_baseline, host_path_volumes, host_ports, apparmor, selinux,
    proc_mount, seccomp_baseline, sysctls)
RESTRICTED_CHECKS: tuple[Check, ...] = (
    volume_types, privilege_escalation, run_as_non_root, run_as_user, seccomp_restricted, capabilities_restricted)

RESTRICTED_OVERRIDES: frozenset[Check] = frozenset({host_path_volumes, capabilities_baseline, seccomp_baseline})


def violations(spec: Obj, level: str) -> list[str]:
    """Every reason `spec` (a pod spec) fails `level`, in the standard's order; [] when it passes."""
    if level == PRIVILEGED or not isinstance(spec, dict):
        return []
    checks = BASELINE_CHECKS
    if level == RESTRICTED:  # restricted's own volume, capability and seccomp checks replace baseline's
        checks = tuple(c for c in BASELINE_CHECKS if c not in RESTRICTED_OVERRIDES) + RESTRICTED_CHECKS
    return [reason for check in checks for reason in check(spec)]
