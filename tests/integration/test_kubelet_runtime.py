"""DockerRuntime against a real dockerd (its own netns, data root and socket) and a busybox image.

Root, dockerd and busybox-static (`make install`): without them the tests fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from minik8s.api.types import ContainerStatus, Pod, PodStatus
from minik8s.kubelet.runtime import DockerRuntime
from tests.conftest import requires

NETNS = f"kltest{os.getpid()}"  # per process: several test runs share this machine
BRIDGE_IP = "10.246.2.1/24"
POD_NET_PREFIX = "10.246.2."
IMAGE = "busybox:latest"
PAUSE_COMMAND = ["sh", "-c", 'trap "exit 0" TERM; while :; do sleep 1; done']
DOCKERD_START_SECONDS = 30.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 2.0

pytestmark = requires("dockerd", "nsenter", "busybox")


def _busybox() -> Path | None:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(candidate).exists():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def dockerd() -> Iterator[Any]:
    busybox = _busybox()
    assert busybox is not None, "busybox-static is not installed: run `make install`"
    root = Path(tempfile.mkdtemp(prefix="kltest-"))
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    proc: subprocess.Popen[bytes] | None = None
    client: Any = None
    try:
        subprocess.run(["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"], check=True)
        sock = root / "docker.sock"
        log = (root / "dockerd.log").open("wb")
        proc = subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{NETNS}", "dockerd", "--data-root", str(root / "data"),
             "--exec-root", str(root / "exec"), "-H", f"unix://{sock}", "--pidfile", str(root / "docker.pid"),
             "--bip", BRIDGE_IP, "--iptables=false", "--ip-masq=false"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + DOCKERD_START_SECONDS
        while True:
            try:
                client = docker.DockerClient(base_url=f"unix://{sock}")
                client.ping()
                break
            except docker.errors.DockerException:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("test dockerd did not start: " + (root / "dockerd.log").read_text()[-2000:])
                time.sleep(0.2)
        ctx = root / "ctx"
        ctx.mkdir()
        shutil.copy(busybox, ctx / "busybox")
        (ctx / "Dockerfile").write_text(
            'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            "ENV PATH=/bin\nCMD [\"sh\"]\n"
        )
        client.images.build(path=str(ctx), tag=IMAGE, rm=True)
        client.root = root  # where tests put pods dirs
        yield client
    finally:
        if client is not None:
            for c in client.containers.list(all=True):
                c.remove(force=True)
            client.close()
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(DOCKERD_START_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["ip", "netns", "delete", NETNS], check=False)
        shutil.rmtree(root, ignore_errors=True)


def make_runtime(client: Any, **kwargs: Any) -> DockerRuntime:
    kwargs.setdefault("backoff_base", BACKOFF_BASE)
    kwargs.setdefault("backoff_cap", BACKOFF_CAP)
    return DockerRuntime(client, "node-t", client.root / "pods", IMAGE, pause_command=PAUSE_COMMAND,
                         host_ip="10.246.0.9", **kwargs)


def make_pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> Pod:
    return Pod.model_validate({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
        "spec": {"nodeName": "node-t", "containers": containers, **spec},
    })


def cstatus(status: PodStatus, name: str) -> ContainerStatus:
    return next(s for s in status.containerStatuses or [] if s.name == name)


def wait_for(rt: DockerRuntime, pod: Pod, predicate: Any, timeout: float, sync: bool = True) -> PodStatus:
    """Drive sync_pod as the kubelet would (honouring requeue hints) until predicate(status)."""
    deadline = time.monotonic() + timeout
    status = rt.pod_status(pod)
    while time.monotonic() < deadline:
        if sync:
            rt.sync_pod(pod)
        status = rt.pod_status(pod)
        if predicate(status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"condition not reached; last status: {status.to_dict()}")


def cleanup(rt: DockerRuntime, pod: Pod) -> None:
    rt.kill_pod(pod.metadata.uid or "", 0)
    rt.remove_pod(pod.metadata.uid or "")


def test_two_containers_share_localhost_and_empty_dir(dockerd: Any) -> None:
    rt = make_runtime(dockerd)
    pod = make_pod("web", [
        {"name": "srv", "image": "busybox",
         "command": ["sh", "-c", "echo hello-from-srv > /www/index.html; exec httpd -f -p 8080 -h /www"],
         "volumeMounts": [{"name": "shared", "mountPath": "/www"}],
         "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}},
        {"name": "cli", "image": "busybox",
         "command": ["sh", "-c", "while :; do sleep 1; done"],
         "volumeMounts": [{"name": "shared", "mountPath": "/data", "readOnly": True}]},
    ], volumes=[{"name": "shared", "emptyDir": {}}])
    try:
        assert rt.sync_pod(pod) is None
        status = rt.pod_status(pod)
        assert status.phase == "Running", status.to_dict()
        assert status.podIP and status.podIP.startswith(POD_NET_PREFIX)
        assert status.hostIP == "10.246.0.9"
        assert {c.type: c.status for c in status.conditions or []}["Ready"] == "True"
        assert status.qosClass == "Burstable"
        srv = cstatus(status, "srv")
        assert srv.ready and srv.containerID and srv.containerID.startswith("docker://")
        code, out = b"", b""
        for _ in range(30):  # httpd may need a moment to bind
            code, out = rt.exec("default", "web", "cli", ["wget", "-qO-", "http://localhost:8080/index.html"])
            if code == 0:
                break
            time.sleep(0.1)
        assert (code, out) == (0, b"hello-from-srv\n")
        assert rt.exec("default", "web", "cli", ["cat", "/data/index.html"]) == (0, b"hello-from-srv\n")
        code, _ = rt.exec("default", "web", "cli", ["sh", "-c", "echo x > /data/new"])
        assert code != 0  # readOnly mount honoured
        info = dockerd.containers.get(srv.containerID.removeprefix("docker://")).attrs["HostConfig"]
        assert info["Memory"] == 64 * 1024 * 1024 and info["NanoCpus"] == 500_000_000
        assert info["Privileged"] is False
        assert (dockerd.root / "pods" / pod.metadata.uid / "volumes" / "shared" / "index.html").exists()

        # adoption: a fresh runtime over the same dockerd changes nothing
        before = {c.id for c in dockerd.containers.list(all=True)}
        rt2 = make_runtime(dockerd)
        assert pod.metadata.uid in rt2.list_pod_uids()
        assert rt2.sync_pod(pod) is None
        assert {c.id for c in dockerd.containers.list(all=True)} == before
        assert rt2.pod_status(pod).phase == "Running"
    finally:
        cleanup(rt, pod)
    assert pod.metadata.uid not in rt.list_pod_uids()
    assert not (dockerd.root / "pods" / (pod.metadata.uid or "")).exists()


def test_crashing_container_restarts_with_backoff(dockerd: Any) -> None:
    rt = make_runtime(dockerd)
    pod = make_pod("crash", [{"name": "c", "image": "busybox", "command": ["sh", "-c", "echo boom; exit 3"]}])
    seen_backoff = False
    try:
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline:
            rt.sync_pod(pod)
            st = cstatus(rt.pod_status(pod), "c")
            if st.state and st.state.waiting and st.state.waiting.reason == "CrashLoopBackOff":
                seen_backoff = True
                assert st.lastState and st.lastState.terminated and st.lastState.terminated.exitCode == 3
            time.sleep(0.1)
        status = rt.pod_status(pod)
        st = cstatus(status, "c")
        # immediate, then 0.5, 1, 2, 2 s: about 5 restarts in 6 s, far fewer than without back-off
        assert 2 <= st.restartCount <= 6, st.restartCount
        assert seen_backoff
        assert status.phase == "Running"  # restartPolicy Always
        logs = b"".join(rt.logs("default", "crash", "c", previous=True))
        assert logs == b"boom\n"
    finally:
        cleanup(rt, pod)


def test_on_failure_succeeds_and_never_fails(dockerd: Any) -> None:
    rt = make_runtime(dockerd)
    ok = make_pod("ok", [{"name": "c", "image": "busybox", "command": ["true"]}], restartPolicy="OnFailure")
    bad = make_pod("bad", [{"name": "c", "image": "busybox", "command": ["sh", "-c", "exit 7"]}],
                   restartPolicy="Never")
    try:
        status = wait_for(rt, ok, lambda s: s.phase == "Succeeded", 10)
        assert cstatus(status, "c").state.terminated.reason == "Completed"  # type: ignore[union-attr]
        status = wait_for(rt, bad, lambda s: s.phase == "Failed", 10)
        term = cstatus(status, "c").state.terminated  # type: ignore[union-attr]
        assert term is not None and term.exitCode == 7 and term.reason == "Error"
        assert cstatus(status, "c").restartCount == 0
        rt.sync_pod(bad)  # finished pods release their sandbox and are not restarted
        assert cstatus(rt.pod_status(bad), "c").restartCount == 0
        sandbox = dockerd.containers.list(all=True, filters={"label": [
            f"io.kubernetes.pod.uid={bad.metadata.uid}", "io.minik8s.container.type=sandbox"]})
        assert sandbox and sandbox[0].status == "exited"
    finally:
        cleanup(rt, ok)
        cleanup(rt, bad)


def test_memory_limit_exceeded_is_oomkilled(dockerd: Any) -> None:
    rt = make_runtime(dockerd)
    pod = make_pod("oom", [{"name": "hog", "image": "busybox",
                            "command": ["sh", "-c", 'x=$(head -c 100m /dev/zero | tr "\\0" a); echo survived'],
                            "resources": {"limits": {"memory": "20Mi"}}}], restartPolicy="Never")
    try:
        status = wait_for(rt, pod, lambda s: s.phase == "Failed", 20)
        term = cstatus(status, "hog").state.terminated  # type: ignore[union-attr]
        assert term is not None and term.reason == "OOMKilled" and term.exitCode == 137
    finally:
        cleanup(rt, pod)


def test_missing_image_does_not_block_other_pods(dockerd: Any) -> None:
    rt = make_runtime(dockerd)
    missing = "127.0.0.1:1/nosuch/app:1"  # a registry port nothing listens on: fails fast, stays local
    bad = make_pod("noimg", [{"name": "app", "image": missing}])
    good = make_pod("fine", [{"name": "app", "image": "busybox", "command": ["sleep", "30"]}])
    try:
        rt.sync_pod(bad)
        first = cstatus(rt.pod_status(bad), "app")
        assert first.state and first.state.waiting and first.state.waiting.reason == "ContainerCreating"
        rt.sync_pod(good)
        assert rt.pod_status(good).phase == "Running"  # not stalled behind the pull
        status = wait_for(rt, bad, lambda s: cstatus(s, "app").state.waiting.reason == "ErrImagePull", 20)  # type: ignore[union-attr]
        message = cstatus(status, "app").state.waiting.message or ""  # type: ignore[union-attr]
        assert missing in message and "minik8s image build" in message and "minik8s image push" in message
        assert status.phase == "Pending"
        rt.sync_pod(bad)
        again = cstatus(rt.pod_status(bad), "app").state.waiting  # type: ignore[union-attr]
        assert again is not None and again.reason == "ImagePullBackOff" and missing in (again.message or "")
    finally:
        cleanup(rt, bad)
        cleanup(rt, good)


def test_graceful_kill_and_sigkill_after_grace(dockerd: Any) -> None:
    rt = make_runtime(dockerd)
    polite = make_pod("polite", [{"name": "c", "image": "busybox", "command": [
        "sh", "-c", 'trap "echo bye > /out/bye; exit 0" TERM; while :; do sleep 0.1; done'],
        "volumeMounts": [{"name": "out", "mountPath": "/out"}]}], volumes=[{"name": "out", "emptyDir": {}}])
    stubborn = make_pod("stubborn", [{"name": "c", "image": "busybox", "command": [
        "sh", "-c", 'trap "" TERM; while :; do sleep 0.1; done']}])
    try:
        for pod in (polite, stubborn):
            wait_for(rt, pod, lambda s: s.phase == "Running", 10)
        started = time.monotonic()
        rt.kill_pod(polite.metadata.uid or "", 10)
        assert time.monotonic() - started < 5  # exited on SIGTERM, well before the grace period
        term = cstatus(rt.pod_status(polite), "c").state.terminated  # type: ignore[union-attr]
        assert term is not None and term.exitCode == 0
        assert (dockerd.root / "pods" / (polite.metadata.uid or "") / "volumes" / "out" / "bye").read_text() == "bye\n"
        started = time.monotonic()
        rt.kill_pod(stubborn.metadata.uid or "", 1)
        took = time.monotonic() - started
        assert 1 <= took < 5
        term = cstatus(rt.pod_status(stubborn), "c").state.terminated  # type: ignore[union-attr]
        assert term is not None and term.exitCode == 137
    finally:
        cleanup(rt, polite)
        cleanup(rt, stubborn)


def test_security_context_is_applied_by_docker(dockerd: Any) -> None:
    rt = make_runtime(dockerd)
    pod = make_pod("hardened", [
        {"name": "c", "image": "busybox", "command": ["sh", "-c", "while :; do sleep 1; done"],
         "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
         "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}},
    ], volumes=[{"name": "scratch", "emptyDir": {}}],
        securityContext={"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 3000,
                         "seccompProfile": {"type": "RuntimeDefault"}})
    try:
        status = wait_for(rt, pod, lambda s: s.phase == "Running", 20)
        code, out = rt.exec("default", "hardened", "c", ["sh", "-c", "id -u; id -G; cat /proc/self/status; "
                                                         "touch /scratch/f && stat -c %g /scratch/f"])
        assert code == 0, out
        lines = out.decode().splitlines()
        fields = dict(line.split(":", 1) for line in lines if ":" in line)
        assert lines[0] == "1000" and "3000" in lines[1].split()  # runAsUser; fsGroup as a supplementary group
        assert fields["CapEff"].strip() == "0000000000000000" and fields["NoNewPrivs"].strip() == "1"
        assert fields["Seccomp"].strip() == "2"
        assert lines[-1] == "3000"  # files in the emptyDir belong to the fsGroup
        assert cstatus(status, "c").ready
    finally:
        cleanup(rt, pod)


def test_run_as_non_root_and_symlinked_subpath_are_refused(dockerd: Any) -> None:
    rt = make_runtime(dockerd)
    # a container of the pod plants `evil -> /` in the shared emptyDir (replacing the directory a first start
    # may have made); the other one mounts subPath `evil` and exits, so its restart resolves the symlink
    plant = "while :; do [ -L /d/evil ] || { rm -rf /d/evil; ln -s / /d/evil; }; sleep 0.2; done"
    pod = make_pod("refusals", [
        {"name": "rootimage", "image": "busybox", "command": ["sleep", "60"],
         "securityContext": {"runAsNonRoot": True}},
        {"name": "plant", "image": "busybox", "command": ["sh", "-c", plant],
         "volumeMounts": [{"name": "data", "mountPath": "/d"}]},
        {"name": "escape", "image": "busybox", "command": ["sh", "-c", "sleep 1; exit 1"],
         "volumeMounts": [{"name": "data", "mountPath": "/host", "subPath": "evil"}]},
    ], volumes=[{"name": "data", "emptyDir": {}}])

    def settled(s: PodStatus) -> bool:
        states = {c.name: c.state for c in s.containerStatuses or []}
        escape, root = states.get("escape"), states.get("rootimage")
        return bool(escape and escape.waiting and "subPath" in (escape.waiting.message or "")
                    and root and root.waiting)

    try:
        status = wait_for(rt, pod, settled, 40)
        escape = cstatus(status, "escape").state.waiting  # type: ignore[union-attr]
        assert escape is not None and escape.reason == "CreateContainerError"
        assert 'subPath "evil": escapes its volume through symlink "evil" -> "/"' in (escape.message or "")
        root = cstatus(status, "rootimage").state.waiting  # type: ignore[union-attr]
        assert root is not None and "runAsNonRoot and image will run as root" in (root.message or "")
    finally:
        cleanup(rt, pod)


class Recorder:
    """An EventSink that keeps (reason, message, container) of each event, for tests to read."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []

    def event(self, pod: Pod, event_type: str, reason: str, message: str, container: str | None = None) -> None:
        self.seen.append((reason, message, container))

    @property
    def reasons(self) -> list[str]:
        return [reason for reason, _, _ in self.seen]


def test_sandbox_that_died_under_a_sync_is_recreated_without_back_off(dockerd: Any) -> None:
    """The listing a sync works from says the sandbox runs, but it died since: docker refuses to start a
    container into it ("cannot join network of a non running container"). That is SandboxChanged, not the
    container's failure: no CrashLoopBackOff, a quick resync, and the next sync gives the pod a new sandbox."""
    events = Recorder()
    rt = make_runtime(dockerd, events=events)
    pod = make_pod("sbx", [{"name": "c", "image": "busybox", "command": ["sleep", "300"]}])
    uid = pod.metadata.uid or ""
    try:
        wait_for(rt, pod, lambda s: s.phase == "Running", 20)
        app = dockerd.containers.list(filters={"label": [
            f"io.kubernetes.pod.uid={uid}", "io.minik8s.container.type=container"]})[0]
        app.kill()
        app.wait()
        stale = rt._containers(uid=uid)  # app exited, sandbox still running
        sandbox = next(c for c in stale if c.labels.get("io.minik8s.container.type") == "sandbox")
        dockerd.api.kill(sandbox.id)
        dockerd.api.wait(sandbox.id)
        real = rt._containers
        rt._containers = lambda sparse=False, **selector: stale if selector.get("uid") == uid else real(  # type: ignore[method-assign]
            sparse=sparse, **selector)
        delay = rt.sync_pod(pod)
        rt._containers = real  # type: ignore[method-assign]
        assert delay == pytest.approx(0.1)
        assert "SandboxChanged" in events.reasons
        waiting = cstatus(rt.pod_status(pod), "c").state.waiting  # type: ignore[union-attr]
        assert waiting is None or waiting.reason != "RunContainerError"
        status = wait_for(rt, pod, lambda s: s.phase == "Running" and cstatus(s, "c").ready is not False
                          and cstatus(s, "c").state.running is not None, 20)  # type: ignore[union-attr]
        assert "Failed" not in events.reasons
        sandboxes = dockerd.containers.list(filters={"label": [
            f"io.kubernetes.pod.uid={uid}", "io.minik8s.container.type=sandbox"]})
        assert len(sandboxes) == 1 and sandboxes[0].id != sandbox.id
        assert cstatus(status, "c").restartCount >= 1
    finally:
        cleanup(rt, pod)


def test_kubelet_written_etc_files_and_downward_api(dockerd: Any) -> None:
    """hostname/subdomain, hostAliases and dnsConfig reach /etc/hosts and /etc/resolv.conf (the kubelet's files
    override Docker's), the downward API reaches env and a volume, and a label change reaches the volume."""
    rt = make_runtime(dockerd, cluster_dns=["10.96.0.10"], allocatable={"cpu": "2", "memory": "1Gi"})
    pod = make_pod("dd", [
        {"name": "c", "image": "busybox", "command": ["sh", "-c", "while :; do sleep 1; done"],
         "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}},
         "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                 {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                 {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                 {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                 {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}],
         "volumeMounts": [{"name": "info", "mountPath": "/etc/info"}]},
    ], hostname="db-0", subdomain="db", hostAliases=[{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}],
        dnsConfig={"searches": ["extra.example"], "options": [{"name": "ndots", "value": "3"}, {"name": "rotate"}]},
        volumes=[{"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}])
    pod.metadata.labels = {"app": "db"}
    try:
        status = wait_for(rt, pod, lambda s: s.phase == "Running", 30)
        ip = status.podIP
        code, hosts = rt.exec("default", "dd", "c", ["cat", "/etc/hosts"])
        assert code == 0 and f"{ip}\tdb-0.db.default.svc.cluster.local\tdb-0\n".encode() in hosts, hosts
        assert hosts.endswith(b"\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n"), hosts
        assert rt.exec("default", "dd", "c", ["hostname"]) == (0, b"db-0\n")
        code, resolv = rt.exec("default", "dd", "c", ["cat", "/etc/resolv.conf"])
        assert resolv == (b"search default.svc.cluster.local svc.cluster.local cluster.local extra.example\n"
                          b"nameserver 10.96.0.10\noptions ndots:3 rotate\n"), resolv
        code, env = rt.exec("default", "dd", "c", ["env"])
        lines = set(env.decode().splitlines())
        assert {"POD_NAME=dd", f"POD_IP={ip}", "MEM=64", "CPU=250", "CPU_LIMIT=2"} <= lines, lines
        assert rt.exec("default", "dd", "c", ["cat", "/etc/info/labels"]) == (0, b'app="db"')
        relabelled = pod.model_copy(deep=True)
        relabelled.metadata.labels = {"app": "db", "tier": "x"}
        rt.sync_pod(relabelled)  # the kubelet syncs a pod on every update event
        assert rt.exec("default", "dd", "c", ["cat", "/etc/info/labels"]) == (0, b'app="db"\ntier="x"')
    finally:
        cleanup(rt, pod)


def test_memory_empty_dir_is_a_tmpfs_in_the_container_and_unmounted_on_removal(dockerd: Any) -> None:
    rt = make_runtime(dockerd)
    pod = make_pod("shm", [
        {"name": "main", "image": "busybox", "command": ["sh", "-c", "while :; do sleep 1; done"],
         "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]},
    ], volumes=[{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}}])
    host_dir = dockerd.root / "pods" / (pod.metadata.uid or "") / "volumes" / "cache"
    try:
        wait_for(rt, pod, lambda s: s.phase == "Running", 30)
        code, out = rt.exec("default", "shm", "main", ["cat", "/proc/mounts"])
        line = next((m for m in out.decode().splitlines() if m.split()[1:2] == ["/cache"]), "")
        assert code == 0 and line.startswith("tmpfs ") and "size=8192k" in line, out
        assert os.path.ismount(host_dir)
    finally:
        cleanup(rt, pod)
    assert not os.path.ismount(host_dir) and not host_dir.exists()
