"""Host mode: a "real machine" joins the cluster with `minik8s join --config` (mode: host).

The machine is a network namespace this test makes, wired to the underlay bridge like another
computer on the head's LAN (10.200.0.50 on `ens5`), with a state dir of its own.  `minik8s join`
runs inside it (nsenter), so the host-mode code starts dockerd and a raylet in the namespace it
was run in, making no netns of its own.  Its pod is reached from a pod on node-1 over the overlay;
then the head removes the node and the machine leaves.  Everything is undone even on failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from minik8s import Client
from minik8s.cluster.procs import kill_processes_using, pids_with_arg_containing, unmount_under
from minik8s.errors import NotFound
from tests.e2e.conftest import MINIK8S, REPO, run, unique, wait_for, wait_running

MACHINE = "mk8sh-metal"  # not the cluster's netns prefix (mk8s-): `status`/`down` must not take it for a node
VETH = "mk8shm0"
IFACE = "ens5"  # not eth0: the overlay must ride on the device the config names
IP = "10.200.0.50"
NAME = "metal-1"
STATE = Path("/var/lib/mk8sh")  # short: Ray puts unix sockets under it
JOIN_TIMEOUT_S = 240
HTTPD = f"echo from-{NAME} > /tmp/index.html; httpd -f -p 8080 -h /tmp"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)


def on_machine(*args: str, check: bool = True, timeout: float = JOIN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """`minik8s ARGS…` run on the machine: in its netns, with its own state dir."""
    proc = subprocess.run(["nsenter", f"--net=/run/netns/{MACHINE}", "--", MINIK8S, *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env={**os.environ, "MINIK8S_STATE_DIR": str(STATE)})
    if check and proc.returncode != 0:
        raise AssertionError(f"minik8s {' '.join(args)} on the machine failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def node_names(client: Client) -> list[str]:
    return [n.metadata.name for n in client.list("Node").items]


def machine_netns_inode() -> int:
    return os.stat(f"/run/netns/{MACHINE}").st_ino


def _teardown(client: Client) -> None:
    if NAME in node_names(client):
        run("node", "remove", NAME, check=False, timeout=180)
    if Path(f"/run/netns/{MACHINE}").exists() and (STATE / "nodes" / NAME).exists():
        on_machine("leave", NAME, check=False)
    kill_processes_using(STATE, 15.0)  # whatever a failed leave left running
    unmount_under(STATE)
    shutil.rmtree(STATE, ignore_errors=True)
    sh("ip", "link", "del", VETH, check=False)
    sh("ip", "netns", "del", MACHINE, check=False)


@pytest.fixture
def machine(client: Client) -> Iterator[None]:
    _teardown(client)  # left by an interrupted run
    sh("ip", "netns", "add", MACHINE)
    try:
        sh("ip", "link", "add", VETH, "type", "veth", "peer", "name", IFACE, "netns", MACHINE)
        sh("ip", "link", "set", VETH, "master", "mk8s0", "up")
        for cmd in (["link", "set", "lo", "up"], ["addr", "add", f"{IP}/24", "dev", IFACE],
                    ["link", "set", IFACE, "up"], ["route", "add", "default", "via", "10.200.0.1"]):
            sh("ip", "-n", MACHINE, *cmd)
        yield
    finally:
        _teardown(client)


def join_file(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "host-node.yaml"
    path.write_text(textwrap.dedent(f"""\
        apiVersion: minik8s.io/v1
        kind: NodeJoinConfig
        mode: host
        name: {NAME}
        server: https://10.200.0.1:6443
        token: "{token}"
        interface: {IFACE}
        labels: {{pool: metal}}
        taints: [{{key: dedicated, value: metal, effect: NoSchedule}}]  # other tests' pods stay off it
        resources: {{cpu: "1", pods: 20}}
        """))
    return path


def test_a_machine_joins_in_host_mode_runs_pods_and_leaves(client: Client, machine: None, tmp_path: Path) -> None:
    token = run("token").stdout.strip()

    wrong = on_machine("join", "--config", str(join_file(tmp_path, token[:-4] + "XXXX")), check=False)
    assert wrong.returncode == 1 and "invalid join token" in wrong.stderr
    assert NAME not in node_names(client) and not (STATE / "run").exists()  # nothing started

    plan = on_machine("join", "--config", str(join_file(tmp_path, token)), "--dry-run").stdout
    assert f"host mode, {IP}/24 on {IFACE}" in plan and f"--node-ip-address={IP}" in plan

    out = on_machine("join", "--config", str(join_file(tmp_path, token))).stdout
    assert f"node {NAME} joined" in out
    assert NAME not in sh("ip", "netns", "list").stdout  # host mode makes no netns (others' tests may)
    node = wait_for(f"{NAME} Ready", lambda: next(
        (n for n in client.list("Node").items if n.metadata.name == NAME
         and any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])), None), timeout=90)
    assert node.metadata.labels["pool"] == "metal" and str(node.status.allocatable["pods"]) == "20"
    pod_cidr = node.spec.podCIDR
    assert pod_cidr and pod_cidr not in {f"10.244.{i}.0/24" for i in (1, 2, 3)}
    assert IP in [a.address for a in node.status.addresses or []]
    # its dockerd and raylet run in the machine's own namespace
    for daemon in ("dockerd", "raylet"):
        pid = int((STATE / "run" / f"{NAME}_{daemon}.pid").read_text())
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == machine_netns_inode(), daemon
    vxlan = wait_for("the overlay device on the machine", lambda: sh(
        "ip", "-n", MACHINE, "-d", "link", "show", "mk8s.vx", check=False).stdout, timeout=60)
    assert f"dev {IFACE}" in vxlan  # the overlay rides on the configured interface

    server, probe = unique("metal-web"), unique("probe")
    run("apply", "-f", "-", input=textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {server}}}
        spec:
          nodeSelector: {{pool: metal}}
          tolerations: [{{key: dedicated, operator: Equal, value: metal, effect: NoSchedule}}]
          terminationGracePeriodSeconds: 0
          containers:
          - {{name: web, image: busybox, command: [sh, -c, '{HTTPD}']}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: {probe}}}
        spec:
          nodeSelector: {{kubernetes.io/hostname: node-1}}
          terminationGracePeriodSeconds: 0
          containers:
          - {{name: main, image: busybox, command: [sleep, "3600"]}}
        """))
    pod = wait_running(client, server, timeout=120)
    assert pod.spec.nodeName == NAME and pod.status.podIP.startswith(pod_cidr.rsplit(".", 2)[0] + ".")
    wait_running(client, probe)

    def fetch() -> str | None:
        # busybox-static wget segfaults with -T: bound it with timeout instead
        proc = run("exec", probe, "--", "timeout", "5", "wget", "-qO-", f"http://{pod.status.podIP}:8080/", check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    assert wait_for("node-1 pod -> host-mode pod over the overlay", fetch, timeout=60) == f"from-{NAME}"
    run("delete", "pod", probe, "--grace-period", "0")

    removed = run("node", "remove", NAME, timeout=180).stdout
    assert f"node/{NAME} removed" in removed and "run `minik8s leave` there" in removed
    assert NAME not in node_names(client)
    with pytest.raises(NotFound):
        client.get("Pod", server)

    left = on_machine("leave").stdout
    assert f"node/{NAME} left" in left
    assert not pids_with_arg_containing(str(STATE) + "/")
    assert not list((STATE / "run").glob(f"{NAME}_*.pid"))
    links = sh("ip", "-n", MACHINE, "link").stdout
    assert "mk8s.vx" not in links and "docker0" not in links
    assert "minik8s" not in sh("ip", "netns", "exec", MACHINE, "nft", "list", "tables").stdout
    assert not (STATE / "nodes" / NAME / "host-node.json").exists()
