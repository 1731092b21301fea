"""Pod Security Standards: each check refuses its field with Kubernetes' wording, and nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from minik8s.api import kinds as k
from minik8s.apiserver import warnings
from minik8s.apiserver.admission import AdmissionRequest
from minik8s.errors import Forbidden, Invalid
from minik8s.podsecurity.admission import NamespacePolicy, PodSecurity, label_causes
from minik8s.podsecurity.checks import BASELINE, PRIVILEGED, RESTRICTED, violations

Obj = dict[str, Any]


def spec(**pod: Any) -> Obj:
    containers = pod.pop("containers", [{"name": "c", "image": "busybox"}])
    return {"containers": containers, **pod}


def container(**fields: Any) -> Obj:
    return {"name": "c", "image": "busybox", **fields}


def sc(**fields: Any) -> Obj:
    return container(securityContext=fields)


RESTRICTED_OK: Obj = {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [sc(allowPrivilegeEscalation=False, capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]})],
    "volumes": [{"name": "v", "emptyDir": {}}, {"name": "s", "secret": {"secretName": "x"}}]}


@pytest.mark.parametrize(("pod", "reason"), [
    (spec(hostNetwork=True), "host namespaces (hostNetwork=true)"),
    (spec(hostNetwork=True, hostPID=True, hostIPC=True),
     "host namespaces (hostNetwork=true, hostPID=true, hostIPC=true)"),
    (spec(containers=[sc(privileged=True)]), 'privileged (container "c" must not set securityContext.privileged=true)'),
    (spec(containers=[sc(privileged=True), {**sc(privileged=True), "name": "d"}]),
     'privileged (containers "c", "d" must not set securityContext.privileged=true)'),
    (spec(initContainers=[sc(privileged=True)], containers=[container(name="m")]),
     'privileged (container "c" must not set securityContext.privileged=true)'),
    (spec(containers=[sc(capabilities={"add": ["NET_ADMIN", "CHOWN", "SYS_ADMIN"]})]),
     'non-default capabilities (container "c" must not include "NET_ADMIN", "SYS_ADMIN" in '
     "securityContext.capabilities.add)"),
    (spec(volumes=[{"name": "h", "hostPath": {"path": "/"}}]), 'hostPath volumes (volume "h")'),
    (spec(containers=[container(ports=[{"containerPort": 80, "hostPort": 8080}])]),
     'hostPort (container "c" uses hostPort 8080)'),
    (spec(containers=[sc(seccompProfile={"type": "Unconfined"})]),
     'seccompProfile (container "c" must not set securityContext.seccompProfile.type to "Unconfined")'),
    (spec(securityContext={"seccompProfile": {"type": "Unconfined"}}),
     'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")'),
    (spec(containers=[sc(appArmorProfile={"type": "Unconfined"})]),
     'forbidden AppArmor profile (container "c" must not set securityContext.appArmorProfile.type to "Unconfined")'),
    (spec(containers=[sc(procMount="Unmasked")]),
     'procMount (container "c" must not set securityContext.procMount to "Unmasked")'),
    (spec(securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "1"},
                                       {"name": "net.ipv4.tcp_syncookies", "value": "1"}]}),
     "forbidden sysctls (kernel.msgmax)"),
    (spec(containers=[sc(seLinuxOptions={"type": "spc_t"})]), "seLinuxOptions (container \"c\""),
])
def test_baseline_refuses_each_field(pod: Obj, reason: str) -> None:
    found = violations(pod, BASELINE)
    assert len(found) == 1 and found[0].startswith(reason), found
    assert violations(pod, PRIVILEGED) == []


@pytest.mark.parametrize("pod", [
    spec(),
    spec(hostNetwork=False, containers=[sc(privileged=False, capabilities={"add": ["CHOWN", "NET_BIND_SERVICE"]},
                                           seccompProfile={"type": "RuntimeDefault"})]),
    spec(containers=[container(ports=[{"containerPort": 80}])], volumes=[{"name": "e", "emptyDir": {}}]),
    spec(securityContext={"sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1 2"}]}),
])
def test_baseline_accepts_what_the_standard_allows(pod: Obj) -> None:
    assert violations(pod, BASELINE) == []


def test_restricted_accepts_a_hardened_pod_and_names_each_gap() -> None:
    assert violations(RESTRICTED_OK, RESTRICTED) == []
    found = violations(spec(volumes=[{"name": "h", "hostPath": {"path": "/"}}]), RESTRICTED)
    assert found == [
        'restricted volume types (volume "h" uses restricted volume type "hostPath")',
        'allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false)',
        'runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true)',
        'seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or '
        '"Localhost")',
        'unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"])',
    ]


@pytest.mark.parametrize(("change", "reason"), [
    ({"securityContext": {**RESTRICTED_OK["securityContext"], "runAsUser": 0}},
     "runAsUser=0 (pod must not set runAsUser=0)"),
    ({"containers": [{**RESTRICTED_OK["containers"][0], "securityContext": {
        **RESTRICTED_OK["containers"][0]["securityContext"], "runAsNonRoot": False}}]},
     'runAsNonRoot != true (container "c" must not set securityContext.runAsNonRoot=false)'),
    ({"containers": [{**RESTRICTED_OK["containers"][0], "securityContext": {
        **RESTRICTED_OK["containers"][0]["securityContext"], "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}}]},
     'unrestricted capabilities (container "c" must not include "CHOWN" in securityContext.capabilities.add)'),
    ({"volumes": [{"name": "g", "gitRepo": {"repository": "x"}}]},
     'restricted volume types (volume "g" uses restricted volume type "gitRepo")'),
])
def test_restricted_refuses_each_field(change: Obj, reason: str) -> None:
    assert violations({**RESTRICTED_OK, **change}, RESTRICTED) == [reason]


def test_namespace_policy_defaults_and_labels() -> None:
    assert NamespacePolicy.of("default", None).enforce == BASELINE
    assert NamespacePolicy.of("kube-system", {}).enforce == PRIVILEGED
    assert NamespacePolicy.of("kube-system", {"pod-security.kubernetes.io/enforce": "baseline"}).enforce == BASELINE
    policy = NamespacePolicy.of("x", {"pod-security.kubernetes.io/enforce": "privileged",
                                      "pod-security.kubernetes.io/warn": "restricted"})
    assert (policy.enforce, policy.warn) == (PRIVILEGED, RESTRICTED)
    assert label_causes({"pod-security.kubernetes.io/enforce": "strict",
                         "pod-security.kubernetes.io/warn-version": "1.29",
                         "pod-security.kubernetes.io/enforce-version": "v1.29"}) == [
        ("metadata.labels[pod-security.kubernetes.io/enforce]",
         'Unsupported value: "strict": supported values: "privileged", "baseline", "restricted"'),
        ("metadata.labels[pod-security.kubernetes.io/warn-version]",
         'Invalid value: "1.29": must be "latest" or "v1.N"')]


def _request(kind: str, obj: Obj, op: str = "CREATE", old: Obj | None = None) -> AdmissionRequest:
    return AdmissionRequest(op, k.lookup(kind), obj, old)  # type: ignore[arg-type]


def _pod(pod_spec: Obj, ns: str = "team") -> Obj:
    return {"metadata": {"name": "x", "namespace": ns}, "spec": pod_spec}


def test_plugin_refuses_pods_and_only_warns_on_workloads() -> None:
    labels = {"team": {"pod-security.kubernetes.io/warn": "restricted"}, "ops": {
        "pod-security.kubernetes.io/enforce": "privileged"}}
    plugin = PodSecurity(labels.get)
    bad = spec(containers=[sc(privileged=True)])
    with pytest.raises(Forbidden) as exc:
        plugin.admit(_request("Pod", _pod(bad)))
    assert exc.value.message == ('pods "x" is forbidden: violates PodSecurity "baseline:latest": privileged '
                                 '(container "c" must not set securityContext.privileged=true)')
    plugin.admit(_request("Pod", _pod(bad, "ops")))  # privileged namespace: accepted
    deploy = {"metadata": {"name": "d", "namespace": "team"},
              "spec": {"template": {"metadata": {}, "spec": bad}}}
    with warnings.collect() as said:
        plugin.admit(_request("Deployment", deploy))
        plugin.admit(_request("Pod", _pod(spec())))  # baseline-clean, restricted-warned
    assert any(w.startswith('would violate PodSecurity "baseline:latest": privileged') for w in said)
    assert any(w.startswith('would violate PodSecurity "restricted:latest": allowPrivilegeEscalation') for w in said)
    # a status- or metadata-only update is not held to the level again (the namespace may have tightened)
    stored = _pod(bad)
    plugin.admit(_request("Pod", {**stored, "metadata": {**stored["metadata"], "labels": {"a": "b"}}}, "UPDATE",
                          stored))
    with pytest.raises(Invalid, match="enforce"):
        plugin.admit(_request("Namespace", {"metadata": {"name": "n", "labels": {
            "pod-security.kubernetes.io/enforce": "nope"}}}))
