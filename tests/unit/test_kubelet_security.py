"""The kubelet applies every securityContext field the API accepts (or refuses the container, naming why)."""

from __future__ import annotations

from typing import Any

import pytest

from minik8s.api import kinds as k
from minik8s.api.types import Pod
from minik8s.kubelet.spec import SpecError, image_user_needed, security_kwargs


def pod(container_sc: dict[str, Any] | None = None, pod_sc: dict[str, Any] | None = None) -> Pod:
    c: dict[str, Any] = {"name": "a", "image": "busybox"}
    if container_sc is not None:
        c["securityContext"] = container_sc
    spec: dict[str, Any] = {"containers": [c]}
    if pod_sc is not None:
        spec["securityContext"] = pod_sc
    return Pod.model_validate({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec})


def kwargs(p: Pod, image_user: str = "") -> dict[str, Any]:
    return security_kwargs(p.spec.containers[0], p, image_user)


def test_user_group_and_fs_group() -> None:
    assert kwargs(pod({"runAsUser": 0}, {"runAsUser": 1000}))["user"] == "0"  # 0 is a setting, not absent
    assert kwargs(pod(None, {"runAsUser": 1000, "runAsGroup": 2000}))["user"] == "1000:2000"
    assert kwargs(pod({"runAsGroup": 5}), image_user="nobody")["user"] == "nobody:5"
    assert kwargs(pod(None, {"fsGroup": 3000}))["group_add"] == ["3000"]
    assert "user" not in kwargs(pod())


def test_seccomp_capabilities_and_privilege_escalation() -> None:
    assert kwargs(pod({"seccompProfile": {"type": "Unconfined"}}))["security_opt"] == ["seccomp=unconfined"]
    assert "security_opt" not in kwargs(pod({"seccompProfile": {"type": "RuntimeDefault"}}))
    caps = {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    unconfined = {"seccompProfile": {"type": "Unconfined"}}
    out = kwargs(pod({"allowPrivilegeEscalation": False, "capabilities": caps}, unconfined))
    assert out["security_opt"] == ["seccomp=unconfined", "no-new-privileges"]
    assert out["cap_drop"] == ["ALL"] and out["cap_add"] == ["NET_BIND_SERVICE"] and out["privileged"] is False


@pytest.mark.parametrize(("container_sc", "pod_sc", "image_user", "why"), [
    ({"runAsNonRoot": True}, None, "", "image will run as root"),
    (None, {"runAsNonRoot": True}, "0:0", "image will run as root"),
    ({"runAsNonRoot": True}, None, "root", "image will run as root"),
    ({"runAsNonRoot": True}, None, "nobody", r"image has non-numeric user \(nobody\)"),
    ({"runAsNonRoot": True, "runAsUser": 0}, None, "1000", "runAsUser breaks non-root policy"),
])
def test_run_as_non_root_is_enforced(container_sc: Any, pod_sc: Any, image_user: str, why: str) -> None:
    p = pod(container_sc, pod_sc)
    assert image_user_needed(p.spec.containers[0], p)
    with pytest.raises(SpecError, match=why):
        kwargs(p, image_user)


def test_run_as_non_root_passes_for_a_non_root_user() -> None:
    assert kwargs(pod({"runAsNonRoot": True}), "1000:1000")["privileged"] is False
    assert kwargs(pod({"runAsNonRoot": True, "runAsUser": 1000}))["user"] == "1000"
    assert not image_user_needed(pod().spec.containers[0], pod())


def test_api_refuses_what_the_kubelet_cannot_do() -> None:
    info = k.lookup("Pod")

    def causes(sc: dict[str, Any]) -> list[tuple[str, str]]:
        return info.validate(Pod.model_validate({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "a", "image": "busybox", "securityContext": sc}]}}))

    assert causes({"seccompProfile": {"type": "Localhost", "localhostProfile": "x.json"}})[0][0] == \
        "spec.containers[0].securityContext.seccompProfile.type"
    assert causes({"privileged": True, "allowPrivilegeEscalation": False})[0][0] == \
        "spec.containers[0].securityContext.allowPrivilegeEscalation"
    assert causes({"runAsUser": -1})[0][0] == "spec.containers[0].securityContext.runAsUser"
    assert causes({"seccompProfile": {"type": "RuntimeDefault"}, "runAsNonRoot": True}) == []
