"""Nothing internal is reachable from pods (issue 12, item 1), on the real 3-node cluster.

The ports tried are not a list written here: they are whatever listens on this machine right now
(``ss -ltnH`` in the root namespace and in every node's), so a listener added later is swept too.
Wildcard listeners of the root namespace are also tried on an address this test adds to the machine
(a dummy link), standing for "any other address of the machine", where they answer just as well.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from minik8s import Client
from minik8s.cluster import lockdown
from minik8s.cluster.config import ClusterConfig
from tests.e2e.conftest import UP_ARGS, UP_TIMEOUT_S, leave_ray, run, sleeper_pod

NODES = ("node-1", "node-2", "node-3")
#: An address of the machine outside everything minik8s made (TEST-NET-3), on a link this test makes.
OTHER_LINK, OTHER_ADDR = "mk8slockt0", "203.0.113.77"
#: What a pod may reach on the control plane: the API, DNS, and the gateway's config endpoint (its
#: pods' sidecars long-poll it).
GATEWAY_CONFIG_PORT = 10280
SWEEP_TIMEOUT_S = 3.0
EXEC_TIMEOUT_S = 600

#: Runs inside a pod: tries each (host, port), then the API without a token, then cluster DNS.
SWEEP = textwrap.dedent("""\
    import json, socket, ssl, sys, urllib.request, urllib.error
    targets, timeout, api = json.loads(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    out = {}
    for host, port in targets + [[f"{ll}%eth0", port] for ll, port in json.loads(sys.argv[4])]:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            out[f"{host}:{port}"] = "open"
        except OSError as e:
            out[f"{host}:{port}"] = type(e).__name__
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        urllib.request.urlopen(api + "/api", context=ctx, timeout=10)
        out["api"] = 200
    except urllib.error.HTTPError as e:
        out["api"] = e.code
    out["dns"] = socket.gethostbyname("kube-dns.kube-system.svc.cluster.local")
    print(json.dumps(out))
    """)


def _listeners(netns: str | None) -> set[tuple[str, int]]:
    """(address, port) of every TCP listener in the namespace, loopback ones left out (no pod reaches
    them); ``*`` stands for a wildcard address."""
    argv = ["ss", "-ltnH"] if netns is None else ["ip", "netns", "exec", netns, "ss", "-ltnH"]
    out: set[tuple[str, int]] = set()
    for line in subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout.splitlines():
        addr, _, port = line.split()[3].rpartition(":")
        addr = addr.strip("[]").removeprefix("::ffff:")
        if addr.startswith("127.") or addr == "::1" or "%lo" in addr:
            continue
        out.add(("*" if addr in ("*", "0.0.0.0", "::") else addr, int(port)))
    return out


def _link_local_targets(cfg: ClusterConfig, node_name: str) -> list[tuple[str, int]]:
    """The node's wildcard listeners at its pod bridge's IPv6 link-local address: what a pod's own
    link-local address (Docker 20.10 gives it one) could reach around the IPv4 rules."""
    node = cfg.node(int(node_name.split("-")[1]))
    assert node.netns is not None
    out = subprocess.run(["ip", "netns", "exec", node.netns, "ip", "-6", "-o", "addr", "show", "dev",
                          lockdown.POD_BRIDGE, "scope", "link"], capture_output=True, text=True, check=True).stdout
    words = out.split()
    if "inet6" not in words:
        return []
    ll = words[words.index("inet6") + 1].split("/")[0]
    return sorted((ll, port) for addr, port in _listeners(node.netns) if addr == "*")


def _targets(cfg: ClusterConfig) -> set[tuple[str, int]]:
    """Every (address, port) a pod could try to reach a listener of the control plane or a node at."""
    targets: set[tuple[str, int]] = set()
    for addr, port in _listeners(None):
        if addr == "*":
            targets |= {(cfg.head_ip, port), (OTHER_ADDR, port)}
        elif ":" not in addr:  # IPv4; the pod network has no IPv6
            targets.add((addr, port))
    for name in NODES:
        node = cfg.node(int(name.split("-")[1]))
        assert node.netns is not None
        for addr, port in _listeners(node.netns):
            if addr == "*":
                targets |= {(node.ip, port), (node.pod_gateway, port)}
            elif ":" not in addr:
                targets.add((addr, port))
    return targets


@pytest.fixture(scope="module")
def other_address(cluster: None) -> Iterator[str]:
    # A bridge with no ports (this kernel has no dummy links): an address of the machine, nothing more.
    subprocess.run(["ip", "link", "add", OTHER_LINK, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{OTHER_ADDR}/32", "dev", OTHER_LINK], check=True)
        subprocess.run(["ip", "link", "set", OTHER_LINK, "up"], check=True)
        yield OTHER_ADDR
    finally:
        subprocess.run(["ip", "link", "del", OTHER_LINK], check=False)


def test_a_pod_on_every_node_reaches_nothing_but_the_api_and_dns(client: Client, other_address: str, ns: str) -> None:
    cfg = ClusterConfig()
    targets = _targets(cfg)
    ports = {port for _, port in targets}
    # The sweep must cover what issue 12 found open (etcd is on loopback now: no target), or it proves nothing.
    assert {cfg.registry_port, cfg.ray_port, cfg.ray_client_server_port, 10250, cfg.api_port} <= ports, ports
    allowed = {(cfg.head_ip, cfg.api_port), (cfg.head_ip, 53), (cfg.head_ip, GATEWAY_CONFIG_PORT)}
    assert allowed <= targets, "the API, DNS or gateway config endpoint is not listening on the head address"
    api = f"https://{cfg.head_ip}:{cfg.api_port}"
    for node in NODES:
        with sleeper_pod(client, "sweep", image="python:3", node=node, namespace=ns) as pod:
            link_local = _link_local_targets(cfg, node)
            out = run("exec", "-n", ns, pod, "--", "python3", "-c", SWEEP, json.dumps(sorted(targets)),
                      str(SWEEP_TIMEOUT_S), api, json.dumps(link_local), timeout=EXEC_TIMEOUT_S).stdout
            result = json.loads(out.strip().splitlines()[-1])
        reached6 = [t for t in link_local if result[f"{t[0]}%eth0:{t[1]}"] == "open"]
        assert not reached6, f"from a pod on {node}, over IPv6 link-local: {reached6}"
        opened = {t for t in targets if result[f"{t[0]}:{t[1]}"] == "open"}
        assert opened == allowed, f"from a pod on {node}: open {sorted(opened - allowed)}, " \
                                  f"closed {sorted(allowed - opened)}"
        # IPv4 is refused at once (a reset), never left to time out: a sweep is fast and says what happened.
        v4 = {f"{h}:{p}" for h, p in targets}
        assert {v for k, v in result.items() if k in v4} <= {"open", "ConnectionRefusedError"}, result
        assert result["api"] == 401, f"the API without a token answered {result['api']} on {node}"
        assert result["dns"] == cfg.dns_ip


def test_etcd_listens_on_loopback_only(cluster: None) -> None:
    lines = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines()
    etcd = [line.split()[3] for line in lines if '"etcd"' in line]
    assert etcd, "no etcd listener found"
    assert all(a.startswith("127.0.0.1:") for a in etcd), etcd


def _pid(cfg: ClusterConfig, pidfile: str) -> int:
    return int((cfg.run_dir / pidfile).read_text())


def test_every_ray_process_runs_with_token_auth_from_the_state_dir(cluster: None) -> None:
    cfg = ClusterConfig()
    token = cfg.ray_token_path
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text().strip()) >= 32
    for pidfile in ("ray-head.pid", *(f"{n}_raylet.pid" for n in NODES)):
        environ = Path(f"/proc/{_pid(cfg, pidfile)}/environ").read_bytes().split(b"\0")
        assert b"RAY_AUTH_MODE=token" in environ, pidfile
        assert f"RAY_AUTH_TOKEN_PATH={token}".encode() in environ, pidfile
    # the token lives in the state dir only: never copied to Ray's default place (~/.ray/auth_token), which
    # anything else on the machine may own
    default = Path.home() / ".ray" / "auth_token"
    assert not default.exists() or default.read_text().strip() != token.read_text().strip()


GCS_PROBE = textwrap.dedent("""\
    import sys
    import ray._raylet
    if sys.argv[2] == "token":
        from pathlib import Path
        from minik8s.cluster import raytoken
        raytoken.use(Path(sys.argv[3]))
    nodes = ray._raylet.GcsClient(address=sys.argv[1]).get_all_node_info(timeout=10)
    print("nodes", len(nodes))
    """)


def _gcs(cfg: ClusterConfig, home: Path, mode: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    return subprocess.run([sys.executable, "-c", GCS_PROBE, cfg.ray_address, mode, str(cfg.ray_token_path)],
                          capture_output=True, text=True, timeout=120,
                          env={**clean, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", **env})


def test_a_ray_client_without_the_token_is_refused(cluster: None, tmp_path: Path) -> None:
    cfg = ClusterConfig()
    ok = _gcs(cfg, tmp_path, "token", {})
    assert ok.returncode == 0 and "nodes" in ok.stdout, ok.stderr[-2000:]
    for env in ({}, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"}):
        refused = _gcs(cfg, tmp_path, "none", env)
        assert refused.returncode != 0 and "nodes" not in refused.stdout
        assert "Authentication token is missing or incorrect" in refused.stderr, refused.stderr[-2000:]
    assert not (tmp_path / ".ray").exists()


def test_down_removes_the_lockdown_tables_and_up_restores_them(cluster: None) -> None:
    cfg = ClusterConfig()
    table = lockdown.control_plane_table(cfg)
    assert lockdown.present(table)
    for name in NODES:
        assert lockdown.present(cfg.lockdown_table, f"{cfg.netns_prefix}{name}")
    leave_ray()
    run("down", timeout=UP_TIMEOUT_S)
    try:
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
        assert "minik8s-lockdown" not in tables, tables
        assert not any(Path("/var/run/netns", f"{cfg.netns_prefix}{n}").exists() for n in NODES)
    finally:
        run(*UP_ARGS, timeout=UP_TIMEOUT_S)  # the session's other modules expect the cluster
    assert lockdown.present(table)
