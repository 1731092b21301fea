"""Start, stop and inspect a local cluster: the control plane in the root netns, nodes in netns.

Control plane (root netns): etcd (unless external endpoints are given), the image registry,
the builder ``dockerd`` and the Ray head.  Node ``i``: netns + veth (see :mod:`.netns`), a
``dockerd`` and a Ray worker started inside that netns, and a supervisor that restarts the
dockerd when it exits (see :mod:`.supervise`).  Every ``start_*`` adopts what already
runs and waits until each component answers; every ``stop_*`` / :func:`down` removes exactly
what ``start_*`` made (processes, mounts, links, netns), so the machine is left as found.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

from minik8s.cluster import etcd_choice, host, lockdown, raytoken
from minik8s.cluster import netns as nets
from minik8s.cluster.config import ClusterConfig, NodeConfig
from minik8s.cluster.procs import (
    ManagedProcess,
    ProcessError,
    clear_stale_pidfile,
    kill_orphan_containers,
    kill_processes_using,
    process_trees,
    pss_bytes,
    unmount_under,
)
from minik8s.cluster.rayproc import HEAD_DAEMONS, NODE_DAEMONS, RayProcess
from minik8s.network.vxlan import ensure_host_routes, remove_host_routes
from minik8s.store.failover import EtcdTLS

log = logging.getLogger(__name__)

#: Timeout of one readiness probe (HTTP, docker ping, TCP connect, GCS query).
PROBE_TIMEOUT_S = 2.0
#: Timeout of Docker API calls while emptying a node.
DOCKER_API_TIMEOUT_S = 60
#: How long an already running raylet gets to show up in the head's GCS before it is replaced.
RAYLET_REJOIN_GRACE_S = 3.0
POLL_S = 0.2
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}
#: Where a dockerd keeps the pid of the containerd it runs, under its ``--exec-root``.
CONTAINERD_PIDFILE = Path("containerd") / "containerd.pid"
#: Probes never go through a proxy: every address we probe is ours.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_NODE_DIR_RE = re.compile(r"^node-(\d+)$")


class ComponentStatus(NamedTuple):
    """One row of :func:`status`."""

    component: str
    healthy: bool
    detail: str


# ---- process definitions ------------------------------------------------------------------------


def _etcd(cfg: ClusterConfig) -> ManagedProcess:
    urls = ",".join(cfg.etcd_endpoints)
    peer = cfg.etcd_peer_url
    argv = [
        "etcd", "--name", "minik8s", "--data-dir", str(cfg.etcd_dir),
        "--listen-client-urls", urls, "--advertise-client-urls", urls,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"minik8s={peer}",
    ]
    return ManagedProcess("etcd", argv, cfg.state_dir)


def _write_registry_config_fallback(path: Path, storage_dir: Path, addr: str) -> None:
    """Minimal registry config, used only while ``minik8s.images.daemons`` does not exist."""
    path.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage_dir}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {addr}\n"
    )


def _registry(cfg: ClusterConfig, write_config: bool = False) -> ManagedProcess:
    """The registry process; ``write_config`` (re)writes its config file first (on start only)."""
    config = cfg.registry_dir / "config.yml"
    storage = cfg.registry_dir / "storage"
    try:
        from minik8s.images import daemons  # written beside this package; may not exist yet
    except ImportError:
        if write_config:
            _write_registry_config_fallback(config, storage, cfg.registry_addr)
        argv = ["docker-registry", "serve", str(config)]
    else:
        if write_config:
            daemons.write_registry_config(config, storage, cfg.registry_addr)
        argv = [str(a) for a in daemons.registry_argv(config)]
    return ManagedProcess("registry", argv, cfg.state_dir)


def _docker_socket_of(argv: list[str], default: Path) -> Path:
    """The unix socket a dockerd argv listens on (``-H``/``--host``)."""
    for i, a in enumerate(argv):
        value = None
        if a in ("-H", "--host") and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith("--host="):
            value = a.split("=", 1)[1]
        if value and value.startswith("unix://"):
            return Path(value.removeprefix("unix://"))
    return default


def _builder(cfg: ClusterConfig) -> tuple[ManagedProcess, Path]:
    d = cfg.builder_dir
    try:
        from minik8s.images import daemons

        argv = [str(a) for a in daemons.builder_dockerd_argv(d, cfg.registry_addr)]
    except ImportError:
        # No bridge: two root-netns dockerds would fight over docker0; builds need no network.
        argv = [
            "dockerd", "--data-root", str(d / "docker"), "--exec-root", str(d / "exec"),
            "-H", f"unix://{cfg.builder_socket}", "--pidfile", str(d / "docker.pid"),
            "--bridge=none", "--iptables=false", "--ip-masq=false",
            "--insecure-registry", cfg.registry_addr,
        ]
    return ManagedProcess("builder-dockerd", argv, cfg.state_dir), _docker_socket_of(argv, cfg.builder_socket)


def _docker_data_root_of(argv: list[str], default: Path) -> Path:
    return Path(argv[argv.index("--data-root") + 1]) if "--data-root" in argv else default


def clear_dockerd_pidfiles(argv: list[str]) -> None:
    """Remove the pidfiles a dead dockerd left: its own, and its containerd's.  The containerd of a
    killed dockerd stays a zombie for a moment; a new dockerd that finds its pid waits for it to answer,
    then gives up ("timeout waiting for containerd to start")."""
    if "--pidfile" in argv:
        clear_stale_pidfile(Path(argv[argv.index("--pidfile") + 1]))
    if "--exec-root" in argv:
        clear_stale_pidfile(Path(argv[argv.index("--exec-root") + 1]) / CONTAINERD_PIDFILE)


def _ray_bin() -> str:
    """The ``ray`` CLI of the interpreter running us (a venv's bin is often not on PATH)."""
    sibling = Path(sys.executable).parent / "ray"
    return str(sibling) if sibling.exists() else shutil.which("ray") or "ray"


def _ray_common(cfg: ClusterConfig, resource: str, cpus: int) -> list[str]:
    return [
        "--disable-usage-stats", f"--include-log-monitor={str(cfg.ray_log_monitor).lower()}",
        f"--num-cpus={cpus}", f"--object-store-memory={cfg.ray_object_store_bytes}",
        "--resources=" + json.dumps({resource: cfg.ray_resource_amount}, separators=(",", ":")),
    ]


def _ray_env(cfg: ClusterConfig) -> dict[str, str]:
    return {**RAY_ENV, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": str(cfg.ray_sigterm_drain_s),
            **raytoken.env(cfg.ray_token_path)}


def _ray_head(cfg: ClusterConfig) -> RayProcess:
    autoscaling = [f"--autoscaling-config={cfg.ray_autoscaling_config}"] if cfg.ray_autoscaling_config else []
    argv = [
        _ray_bin(), "start", "--head", f"--node-ip-address={cfg.control_plane_ip}", f"--port={cfg.ray_port}",
        "--include-dashboard=false", f"--ray-client-server-port={cfg.ray_client_server_port}",
        f"--dashboard-agent-listen-port={cfg.ray_dashboard_agent_port}",
        f"--dashboard-port={cfg.ray_dashboard_port}",
        f"--temp-dir={cfg.ray_dir}", *autoscaling,
        *_ray_common(cfg, cfg.ray_control_plane_resource, cfg.ray_head_cpus),
    ]
    return RayProcess("ray-head", argv, cfg.state_dir, env=_ray_env(cfg), daemons=HEAD_DAEMONS)


def _node_dockerd(cfg: ClusterConfig, node: NodeConfig) -> ManagedProcess:
    argv = [
        "dockerd", "--data-root", str(node.docker_data_root), "--exec-root", str(node.docker_exec_root),
        "-H", node.docker_url, "--pidfile", str(node.docker_pidfile),
        f"--bip={node.pod_gateway}/{node.pod_cidr.split('/')[1]}",
        "--iptables=false", "--ip-masq=false", f"--mtu={cfg.pod_mtu}",
        "--registry-mirror", cfg.registry_url, "--insecure-registry", cfg.registry_addr,
        # Containers keep running while dockerd is down, and a restarted dockerd adopts them.
        "--live-restore",
    ]
    return ManagedProcess(f"{node.name}/dockerd", argv, cfg.state_dir, netns=node.netns)


def _node_supervisor(cfg: ClusterConfig, node: NodeConfig) -> ManagedProcess:
    """Restarts the node's dockerd whenever it exits (see :mod:`minik8s.cluster.supervise`)."""
    dockerd = _node_dockerd(cfg, node)
    argv = [sys.executable, "-m", "minik8s.cluster.supervise", "--name", dockerd.name,
            "--state-dir", str(cfg.state_dir), "--socket", str(node.docker_socket),
            "--ready-timeout", str(cfg.ready_timeout_s), *(["--netns", node.netns] if node.netns else []),
            "--", *dockerd.argv]
    return ManagedProcess(f"{node.name}/supervisor", argv, cfg.state_dir, program="minik8s.cluster.supervise")


def _node_raylet(cfg: ClusterConfig, node: NodeConfig) -> RayProcess:
    argv = [
        _ray_bin(), "start", f"--address={cfg.ray_address}", f"--node-ip-address={node.ip}",
        f"--temp-dir={node.ray_temp_dir}",
        *_ray_common(cfg, node.ray_resource, cfg.ray_node_cpus),
    ]
    return RayProcess(f"{node.name}/raylet", argv, cfg.state_dir, netns=node.netns, env=_ray_env(cfg),
                      daemons=NODE_DAEMONS)


# ---- probes -------------------------------------------------------------------------------------------


def _http_get(url: str) -> tuple[int, bytes]:
    with _HTTP.open(url, timeout=PROBE_TIMEOUT_S) as resp:
        return int(resp.status), resp.read()


def etcd_healthy(endpoint: str) -> bool:
    code, body = _http_get(endpoint.rstrip("/") + "/health")
    return code == 200 and json.loads(body).get("health") == "true"


def head_ip_is_local(cfg: ClusterConfig) -> bool:
    """Is the control plane's address on one of this machine's interfaces?  Probing it when it is not
    would send packets off the machine (via the default route) instead of failing."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((cfg.control_plane_ip, 0))
        return True
    except OSError:
        return False


def registry_healthy(cfg: ClusterConfig) -> bool:
    if not head_ip_is_local(cfg):
        return False
    return _http_get(cfg.registry_url + "/v2/")[0] == 200


def docker_healthy(sock: Path) -> bool:
    import docker

    client = docker.DockerClient(base_url=f"unix://{sock}", timeout=int(PROBE_TIMEOUT_S))
    try:
        return bool(client.ping())
    finally:
        client.close()


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def ray_alive_nodes(cfg: ClusterConfig, remote: bool = False) -> dict[str, dict[str, float]]:
    """Alive Ray nodes as {node IP: total resources}, read from the GCS (no driver is started).
    ``remote``: the head is another machine's (a host-mode node asks), so it is probed there."""
    if not (remote or head_ip_is_local(cfg)) or not tcp_open(cfg.control_plane_ip, cfg.ray_port):
        return {}
    import ray._raylet

    raytoken.use(cfg.ray_token_path)
    client = ray._raylet.GcsClient(address=cfg.ray_address)  # type: ignore[attr-defined]
    out: dict[str, dict[str, float]] = {}
    for info in client.get_all_node_info(timeout=PROBE_TIMEOUT_S).values():
        if info.state == 0:  # GcsNodeInfo.ALIVE
            out[info.node_manager_address] = dict(info.resources_total)
    return out


# ---- control plane ------------------------------------------------------------------------------------


def _ensure_dirs(cfg: ClusterConfig) -> None:
    dirs = (cfg.log_dir, cfg.run_dir, cfg.etcd_dir, cfg.registry_dir / "storage", cfg.builder_dir)
    for d in (*dirs, cfg.ray_dir):
        d.mkdir(parents=True, exist_ok=True)
    # etcd refuses a data dir readable by others.
    os.chmod(cfg.etcd_dir, 0o700)


def etcd_endpoints(cfg: ClusterConfig) -> list[str]:
    """The etcd endpoints the cluster uses: the external ones recorded by :func:`start_control_plane`,
    else the managed ones (see :mod:`.etcd_choice`)."""
    return etcd_choice.endpoints(cfg)


def start_control_plane(cfg: ClusterConfig, etcd_endpoints: list[str] | None = None,
                        etcd_tls: EtcdTLS | None = None) -> list[str]:
    """Start (or adopt) the underlay, etcd, registry, builder dockerd and Ray head; wait until all answer.

    ``etcd_endpoints`` names an existing etcd cluster (then none is started); without it the one
    recorded at the first start is used (:mod:`.etcd_choice`).  An external etcd must answer before
    anything starts.  Returns the etcd endpoints in use.
    """
    t0 = time.monotonic()
    external = etcd_choice.choose(cfg, etcd_endpoints)
    tls = etcd_choice.choose_tls(cfg, external, etcd_tls)
    if external:
        etcd_choice.check_reachable(external, tls)
    _ensure_dirs(cfg)
    nets.ensure_underlay(cfg)
    lockdown.ensure(lockdown.control_plane_spec(cfg))
    raytoken.ensure(cfg.ray_token_path)
    etcd_choice.record(cfg, external, tls)
    endpoints = external or cfg.etcd_endpoints

    waits: list[tuple[ManagedProcess, Any, str]] = []
    if not external:
        etcd = _etcd(cfg)
        etcd.start()
        waits.append((etcd, lambda: etcd_healthy(endpoints[0]), "healthy"))
    registry = _registry(cfg, write_config=True)
    registry.start()
    waits.append((registry, lambda: registry_healthy(cfg), "serving /v2/"))
    builder, builder_sock = _builder(cfg)
    if not builder.running():
        clear_dockerd_pidfiles(builder.argv)
    builder.start()
    waits.append((builder, lambda: docker_healthy(builder_sock), "answering ping"))
    head = _ray_head(cfg)
    orphaned: list[RayProcess] = []
    if not head.running():
        # Raylets that outlived a dead head would make `ray start --head` believe a cluster still runs
        # here; they cannot rejoin a new head anyway. Stop them: their containers live on in dockerd.
        for node in known_nodes(cfg):
            raylet = _node_raylet(cfg, node)
            if raylet.running():
                log.warning("stopping %s's raylet: its Ray head is gone", node.name)
                raylet.stop(cfg.stop_timeout_s)
                orphaned.append(raylet)
    head.start()
    waits.append((head, lambda: cfg.control_plane_ip in ray_alive_nodes(cfg), "registered in the GCS"))
    # All four start in parallel; wait for each in turn.
    for proc, check, what in waits:
        proc.wait_ready(check, cfg.ready_timeout_s, what)
    # Their nodes' kubelets died with them: start them all again now, together, so every node's actors
    # can come back right after the control plane's, well inside the node lifecycle controller's grace
    # period (one node after another, the last could be declared lost and its pods evicted).
    # start_node adopts them.
    for raylet in orphaned:
        try:
            raylet.start()
        except ProcessError as exc:  # its netns is gone: start_node rebuilds the node
            log.warning("cannot restart %s: %s", raylet.name, exc)
    log.info("control plane ready in %.1fs", time.monotonic() - t0, extra={"seconds": time.monotonic() - t0})
    return endpoints


def _stop_all_containers(sock: Path, what: str) -> None:
    """Force-remove every container of the dockerd at ``sock`` (running ones are killed)."""
    import docker
    from docker.errors import APIError, NotFound

    client = docker.DockerClient(base_url=f"unix://{sock}", timeout=DOCKER_API_TIMEOUT_S)
    try:
        for c in client.containers.list(all=True):
            try:
                c.remove(force=True, v=True)
                log.info("%s: removed container %s", what, c.name, extra={"container": c.id})
            except NotFound:
                pass
            except APIError as e:
                log.warning("%s: cannot remove container %s: %s", what, c.name, e)
    finally:
        client.close()


def stop_control_plane(cfg: ClusterConfig) -> None:
    """Stop the Ray head, the builder dockerd (and its containers), the registry and managed etcd.

    The underlay bridge stays (nodes may still use it); :func:`down` removes it.
    """
    t = cfg.stop_timeout_s
    _ray_head(cfg).stop(t)
    builder, builder_sock = _builder(cfg)
    if builder.running() and _probe(lambda: docker_healthy(builder_sock)):
        _stop_all_containers(builder_sock, "builder")
    builder.stop(t)
    kill_processes_using(cfg.builder_dir, t)
    kill_orphan_containers(_docker_data_root_of(builder.argv, cfg.builder_dir / "docker"))
    unmount_under(cfg.builder_dir)
    _registry(cfg).stop(t)
    _etcd(cfg).stop(t)  # by its pidfile: an external etcd is never ours to stop
    lockdown.remove(lockdown.control_plane_table(cfg))


def _probe(check: Any) -> bool:
    try:
        return bool(check())
    except Exception as e:  # noqa: BLE001 - a failing probe is an unhealthy component, not an error
        log.debug("probe failed: %s", e)
        return False


# ---- nodes --------------------------------------------------------------------------------------------


def start_node(cfg: ClusterConfig, node: NodeConfig) -> None:
    """Create (or adopt) the node's netns, dockerd and raylet; wait until dockerd answers and the
    raylet is alive in the GCS.  The control plane must be running.  A host-mode node has no netns
    to make: its dockerd and raylet start in the caller's own network namespace."""
    t0 = time.monotonic()
    remote = node.host_mode
    if not (remote or head_ip_is_local(cfg)) or not tcp_open(cfg.control_plane_ip, cfg.ray_port):
        raise ProcessError(f"the Ray head is not reachable at {cfg.ray_address}: start the control plane first")
    node.dir.mkdir(parents=True, exist_ok=True)
    if remote:
        host.check_pod_bridge(node)
    else:
        nets.ensure_node_netns(cfg, node)
        ensure_host_routes([node])  # the user's shell reaches this node's pods through its underlay IP
    lockdown.ensure(lockdown.node_spec(cfg, node), node.netns)  # before dockerd: no pod runs unguarded
    dockerd = _node_dockerd(cfg, node)
    raylet = _node_raylet(cfg, node)
    dockerd.start(prepare=lambda: clear_dockerd_pidfiles(dockerd.argv))
    if raylet.running() and not _registered_soon(cfg, node):
        # A raylet that outlived its head (the control plane was killed and restarted) is not part of
        # the new Ray cluster: replace it. Its containers live on in dockerd, untouched.
        log.warning("%s's raylet is not registered with the Ray head: restarting it", node.name)
        raylet.stop(cfg.stop_timeout_s)
    raylet.start()
    dockerd.wait_ready(lambda: docker_healthy(node.docker_socket), cfg.ready_timeout_s, "answering ping")
    raylet.wait_ready(lambda: node.ip in ray_alive_nodes(cfg, remote), cfg.ready_timeout_s, "registered in the GCS")
    supervisor = _node_supervisor(cfg, node)
    if supervisor.running() and not supervisor.matches_config():
        supervisor.stop(cfg.stop_timeout_s)  # it would restart dockerd with the old arguments
    supervisor.start()
    dt = time.monotonic() - t0
    log.info("%s ready in %.1fs", node.name, dt, extra={"node": node.name, "seconds": dt})


def _registered_soon(cfg: ClusterConfig, node: NodeConfig) -> bool:
    """Is the node's raylet alive in the head's GCS, allowing a moment for a reconnect?"""
    deadline = time.monotonic() + RAYLET_REJOIN_GRACE_S
    while True:
        if _probe(lambda: node.ip in ray_alive_nodes(cfg, node.host_mode)):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)


def stop_node(cfg: ClusterConfig, node: NodeConfig) -> None:
    """Remove the node's containers, stop its raylet and dockerd, unmount its dirs, delete its netns
    (host mode: remove what its agents and dockerd made in this namespace)."""
    t = cfg.stop_timeout_s
    _node_supervisor(cfg, node).stop(t)  # first, or it would restart the dockerd we stop
    dockerd = _node_dockerd(cfg, node)
    if dockerd.running() and _probe(lambda: docker_healthy(node.docker_socket)):
        _stop_all_containers(node.docker_socket, node.name)
    _node_raylet(cfg, node).stop(t)
    dockerd.stop(t)
    kill_processes_using(node.dir, t)
    kill_orphan_containers(node.docker_data_root)
    unmount_under(node.dir)
    if node.host_mode:
        host.teardown_network(node)
        lockdown.remove(cfg.lockdown_table)
        return
    remove_host_routes([node])
    nets.remove_node_netns(cfg, node)


def known_nodes(cfg: ClusterConfig) -> list[NodeConfig]:
    """Configured nodes (``1..cfg.nodes``) plus any other node that is up on this machine (a netns
    or a pidfile left by :func:`start_node`), so ``status``/``down`` see a cluster started bigger."""
    indices: set[int] = set(range(1, cfg.nodes + 1))
    for name in nets.node_netns_names(cfg):
        m = _NODE_DIR_RE.match(name.removeprefix(cfg.netns_prefix))
        if m:
            indices.add(int(m.group(1)))
    if cfg.run_dir.is_dir():
        for pidfile in cfg.run_dir.glob("node-*_*.pid"):
            m = _NODE_DIR_RE.match(pidfile.name.split("_", 1)[0])
            if m:
                indices.add(int(m.group(1)))
    return [cfg.node(i) for i in sorted(indices)]


# ---- whole cluster ----------------------------------------------------------------------------------


def external_etcd_rows(cfg: ClusterConfig) -> list[ComponentStatus]:
    """One row per recorded external member, probed with the recorded TLS files: a lost member shows even
    while the others keep serving."""
    tls = etcd_choice.recorded_tls(cfg)
    members = (etcd_choice.member_health(e, tls) for e in etcd_choice.recorded(cfg) or [])
    return [ComponentStatus(f"etcd-{i}", m.healthy, f"external {m.detail}") for i, m in enumerate(members)]


def status(cfg: ClusterConfig) -> list[ComponentStatus]:
    """Health of every component: underlay, etcd, registry, builder, Ray head, and each known node."""
    rows: list[ComponentStatus] = []
    ok, detail = nets.underlay_ok(cfg)
    rows.append(ComponentStatus("underlay", ok, detail))

    if etcd_choice.is_external(cfg):
        rows += external_etcd_rows(cfg)
    else:
        loopback = cfg.etcd_endpoints[0]  # the underlay one may not be local while the bridge is gone
        rows.append(_proc_row("etcd", _etcd(cfg), _probe(lambda: etcd_healthy(loopback)), loopback))
    registry_ok = _probe(lambda: registry_healthy(cfg))
    rows.append(_proc_row("registry", _registry(cfg), registry_ok, cfg.registry_url))
    builder, builder_sock = _builder(cfg)
    builder_ok = _probe(lambda: docker_healthy(builder_sock))
    rows.append(_proc_row("builder", builder, builder_ok, f"unix://{builder_sock}"))

    alive: dict[str, dict[str, float]] = {}
    try:
        alive = ray_alive_nodes(cfg)
    except Exception as e:  # noqa: BLE001 - GCS unreachable means an unhealthy head
        log.debug("GCS query failed: %s", e)
    head_detail = f"{cfg.ray_address}, {len(alive)} nodes alive"
    rows.append(_proc_row("ray-head", _ray_head(cfg), cfg.control_plane_ip in alive, head_detail))

    for node in known_nodes(cfg):
        ok, detail = nets.node_netns_ok(cfg, node)
        rows.append(ComponentStatus(f"{node.name}/netns", ok, detail))
        docker_ok = _probe(lambda n=node: docker_healthy(n.docker_socket))
        rows.append(_proc_row(f"{node.name}/docker", _node_dockerd(cfg, node), docker_ok, node.docker_url))
        supervisor = _node_supervisor(cfg, node)
        rows.append(_proc_row(f"{node.name}/supervisor", supervisor, supervisor.running(), "restarts dockerd"))
        rows.append(_proc_row(f"{node.name}/raylet", _node_raylet(cfg, node), node.ip in alive, node.ip))
    return rows


class Footprint(NamedTuple):
    """One row of :func:`footprint`: a process `up` started, with every process under it."""

    name: str
    pids: list[int]
    pss_bytes: int


def footprint(cfg: ClusterConfig) -> list[Footprint]:
    """Memory (PSS) of everything `up` runs on this machine, by the process that started it: etcd, the
    registry, the image builder, the Ray head (GCS, its raylet, and the control-plane actors' workers),
    and per node its dockerd (with containerd and shims; containers are not counted), its dockerd
    supervisor and its raylet (with the node's actors).  A Ray node is every Ray process of its session
    (no resident parent holds them together: see :mod:`.rayproc`), with whatever they started."""
    procs: dict[str, ManagedProcess] = {"etcd": _etcd(cfg), "registry": _registry(cfg), "builder": _builder(cfg)[0],
                                        "ray-head": _ray_head(cfg)}
    for node in known_nodes(cfg):
        procs[f"{node.name}/docker"] = _node_dockerd(cfg, node)
        procs[f"{node.name}/supervisor"] = _node_supervisor(cfg, node)
        procs[f"{node.name}/raylet"] = _node_raylet(cfg, node)
    roots: dict[str, list[int]] = {}
    for name, proc in procs.items():
        pid = proc.pid()
        if pid is not None:
            roots[name] = proc.members() if isinstance(proc, RayProcess) else [pid]
    trees = process_trees(roots)
    return [Footprint(name, sorted(pids), sum(pss_bytes(p) for p in pids)) for name, pids in trees.items()]


def _proc_row(component: str, proc: ManagedProcess, answering: bool, where: str) -> ComponentStatus:
    pid = proc.pid()
    if pid is None:
        return ComponentStatus(component, False, f"not running (log {proc.logfile})")
    if not answering:
        return ComponentStatus(component, False, f"pid {pid} not answering at {where} (log {proc.logfile})")
    return ComponentStatus(component, True, f"pid {pid}, {where}")


def down(cfg: ClusterConfig, purge: bool = False) -> None:
    """Stop every node and the control plane and remove the underlay.  ``purge`` also deletes the
    state dir; without it etcd data, images and logs stay for the next ``up``."""
    for node in known_nodes(cfg):
        stop_node(cfg, node)
    stop_control_plane(cfg)
    nets.remove_underlay(cfg)
    if purge and cfg.state_dir.exists():
        unmount_under(cfg.state_dir)
        log.info("purging %s", cfg.state_dir, extra={"path": str(cfg.state_dir)})
        shutil.rmtree(cfg.state_dir)
