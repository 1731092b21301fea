"""Port-forward throughput without a cluster: kubectl and the Python client against a real API server.

    python -m benchmarks.portforward_local [--mbytes 64] [--rounds 3] [--compare TREE]... [--profile DIR]

It starts etcd, an echo server and, each in a process of its own as in a cluster, an API server (TLS,
as kubectl needs for a token) and a kubelet serving only port-forward (its sandbox lookup answers its
own pid, so it dials 127.0.0.1 in this network namespace). ``--compare TREE`` starts one more API
server and kubelet from another source tree (e.g. ``git archive HEAD~1 | tar -x -C /tmp/old``), so
before and after are measured in the same run. Then, per round, it echoes N MB (256 KiB writes, a
reader thread collecting the echo) over one TCP connection, alternating the paths:
- direct (baseline): straight to the echo server;
- kubectl[TREE]: through ``kubectl port-forward`` (kubectl -> API server -> kubelet -> echo server);
  with KUBECTL_PORT_FORWARD_WEBSOCKETS=false set, kubectl's older SPDY upgrade instead of SPDY over
  WebSocket;
- python[TREE]: through the official ``kubernetes`` client's ``portforward()`` (v4 channel WebSocket).
Reported: median MB/s per path, each path's ratio to direct, and the CPU seconds each process spent
per round (on a small shared machine the processes compete for cores, so CPU per byte is the steadier
measure of the relay's cost). ``--profile DIR`` runs the servers under cProfile. No root, no Docker:
usable on a shared machine without the e2e lock.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file by --serve children: PYTHONPATH first
from benchmarks import smoke  # noqa: E402
from benchmarks.portforward import ECHO_CLIENT, ECHO_SERVER  # noqa: E402

TOKEN = "bench-token-0123456789"
START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {START_TIMEOUT_S}s")


class _Ourselves:
    def sandbox_pid(self, namespace: str, pod: str) -> int:
        return os.getpid()


def _serve(role: str, port: int, etcd: str, pki: str, profile: str) -> None:
    """Child process: run the API server or the kubelet until SIGTERM (profiled when asked)."""
    import cProfile

    from fastapi import FastAPI

    if role == "apiserver":
        from minik8s.apiserver.app import ApiServer, ApiServerConfig
        from minik8s.apiserver.server import ServerThread, bind_sockets

        api = ApiServer(ApiServerConfig(etcd_endpoints=[etcd], token=TOKEN, port=port, pod_cidr="10.0.0.0/8"))
        server = ServerThread(api.app, ["127.0.0.1"], port, name="bench-apiserver",
                              tls_cert=f"{pki}/apiserver.crt", tls_key=f"{pki}/apiserver.key").server
        sockets = bind_sockets(["127.0.0.1"], port)
    else:
        from minik8s.kubelet import portforward
        from minik8s.kubelet.server import KubeletServer

        app = FastAPI()
        portforward.register(app, _Ourselves(), lambda _scope: None)  # plain HTTP: no client certificate to check
        server = KubeletServer(app, "127.0.0.1", port)._server
        sockets = None
    # uvicorn in the main thread (it stops on SIGTERM), so cProfile sees the event loop's work
    profiler = cProfile.Profile() if profile else None
    if profiler:
        # uvicorn re-raises the SIGTERM it caught once it has stopped: let that return, to write the stats
        signal.signal(signal.SIGTERM, lambda *_: None)
        profiler.enable()
    server.run(sockets=sockets)
    if profiler:
        profiler.disable()
        profiler.dump_stats(f"{profile}/{role}.prof")


def _echo(host: str, port: int, total: int) -> float:
    out = subprocess.run([sys.executable, "-c", ECHO_CLIENT, host, str(port), str(total)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"echo client failed: {out.stderr.strip()}")
    return float(out.stdout)


def _kubectl_forward(kubeconfig: Path, pod: str, port: int) -> tuple[subprocess.Popen[str], int]:
    # KUBECTL_PORT_FORWARD_WEBSOCKETS=false in the environment measures the older SPDY upgrade instead
    proc = subprocess.Popen(["kubectl", "--kubeconfig", str(kubeconfig), "port-forward", pod, f":{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("Forwarding from 127.0.0.1:"):
        proc.kill()
        raise SystemExit(f"kubectl port-forward failed: {line}{proc.communicate()[1]}")
    return proc, int(line.split(":")[1].split()[0])


PYTHON_FORWARD = """
import socket, sys, threading
from kubernetes import client
from kubernetes.stream import portforward
server, ca, token, pod, port = sys.argv[1:6]
cfg = client.Configuration(); cfg.host = server; cfg.ssl_ca_cert = ca
cfg.api_key = {"authorization": "Bearer " + token}
api = client.CoreV1Api(client.ApiClient(cfg))
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(1)
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
pf = portforward(api.connect_get_namespaced_pod_portforward, pod, "default", ports=port)
remote = pf.socket(int(port))
remote.setblocking(True)
def pump(src, dst):
    while True:
        b = src.recv(1 << 18)
        if not b: break
        dst.sendall(b)
    try: dst.shutdown(socket.SHUT_WR)
    except OSError: pass
t = threading.Thread(target=pump, args=(remote, conn), daemon=True); t.start()
pump(conn, remote); t.join()
"""


def _python_forward(server: str, ca: Path, pod: str, port: int) -> tuple[subprocess.Popen[str], int]:
    """A local listener whose one connection is relayed through the Python client's portforward()."""
    proc = subprocess.Popen([sys.executable, "-c", PYTHON_FORWARD, server, str(ca), TOKEN, pod, str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        raise SystemExit(f"python portforward failed: {line}{proc.communicate()[1]}")
    return proc, int(line)


def _setup_objects(server: str, ca: Path, kubelet_port: int, tag: str) -> str:
    from minik8s import Client

    client = Client(server, TOKEN, ca=ca.read_text())
    node, pod = f"bench-node-{tag}", f"bench-pod-{tag}"
    client.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    client.patch("Node", node, {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                                           "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}}}},
                 namespace=None, subresource="status")
    client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
                   "spec": {"nodeName": node, "containers": [{"name": "echo", "image": "busybox"}]}}, "default")
    client.patch("Pod", pod, {"status": {"phase": "Running"}}, subresource="status")
    client.close()
    return pod


@dataclass
class Stack:
    """An API server and a kubelet run from one source tree, and the paths through them."""

    tag: str
    server: str
    kubeconfig: Path
    pod: str
    kubectl_port: int = 0
    pids: dict[str, int] = field(default_factory=dict)


def _cpu_seconds(pid: int) -> float:
    fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")


def _start_stack(tag: str, tree: Path, etcd: str, pki: Path, tmp: Path, profile: str,
                 procs: list[subprocess.Popen[Any]]) -> Stack:
    ports = {"apiserver": _free_port(), "kubelet": _free_port()}
    env = {**os.environ, "PYTHONPATH": str(tree)}
    pids = {}
    for role in ("apiserver", "kubelet"):
        procs.append(subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", role,
                                       "--port", str(ports[role]), "--etcd", etcd, "--pki", str(pki),
                                       "--profile", f"{profile}/{tag}" if profile else ""], env=env, cwd=tree))
        _wait_port(ports[role], procs[-1])
        pids[role] = procs[-1].pid
    server = f"https://127.0.0.1:{ports['apiserver']}"
    pod = _setup_objects(server, pki / "ca.crt", ports["kubelet"], tag)
    kubeconfig = tmp / f"kc-{tag}"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "b",
        "clusters": [{"name": "b", "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": "b", "user": {"token": TOKEN}}],
        "contexts": [{"name": "b", "context": {"cluster": "b", "user": "b", "namespace": "default"}}]}))
    return Stack(tag, server, kubeconfig, pod, pids=pids)


def _measure(args: argparse.Namespace, tmp: Path, procs: list[subprocess.Popen[Any]]) -> dict[str, Any]:
    from minik8s.pki import ensure_pki

    pki = ensure_pki(tmp / "pki", ["127.0.0.1"], ["localhost"]).dir
    etcd_port = _free_port()
    etcd = f"http://127.0.0.1:{etcd_port}"
    procs.append(subprocess.Popen(
        ["etcd", "--data-dir", str(tmp / "etcd"), "--listen-client-urls", etcd, "--advertise-client-urls", etcd,
         "--listen-peer-urls", f"http://127.0.0.1:{_free_port()}"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL))
    _wait_port(etcd_port, procs[-1])
    echo_port = _free_port()
    procs.append(subprocess.Popen([sys.executable, "-c", ECHO_SERVER.replace("9000", str(echo_port))]))
    _wait_port(echo_port, procs[-1])
    trees = {"this": Path(__file__).resolve().parents[1], **{Path(t).name: Path(t).resolve() for t in args.compare}}
    if args.profile:
        for tag in trees:
            Path(args.profile, tag).mkdir(parents=True, exist_ok=True)
    stacks = [_start_stack(tag, tree, etcd, pki, tmp, args.profile, procs) for tag, tree in trees.items()]
    for stack in stacks:
        kubectl, stack.kubectl_port = _kubectl_forward(stack.kubeconfig, stack.pod, echo_port)
        procs.append(kubectl)
        stack.pids["kubectl"] = kubectl.pid
    total = args.mbytes * 1_000_000
    results: dict[str, list[float]] = {"direct": []}
    cpu: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):  # alternate, so drift in machine load hits every path alike
        results["direct"].append(_echo("127.0.0.1", echo_port, total))
        for stack in stacks:
            before = {name: _cpu_seconds(pid) for name, pid in stack.pids.items()}
            results.setdefault(f"kubectl[{stack.tag}]", []).append(_echo("127.0.0.1", stack.kubectl_port, total))
            spent = cpu.setdefault(f"kubectl[{stack.tag}]", {})
            for name, pid in stack.pids.items():
                spent[name] = spent.get(name, 0.0) + _cpu_seconds(pid) - before[name]
            if not args.no_python:
                py, py_port = _python_forward(stack.server, pki / "ca.crt", stack.pod, echo_port)
                pids = {**stack.pids, "kubectl": py.pid}
                before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
                results.setdefault(f"python[{stack.tag}]", []).append(_echo("127.0.0.1", py_port, total))
                spent = cpu.setdefault(f"python[{stack.tag}]", {})
                for name, pid in pids.items():
                    label = "python client" if name == "kubectl" else name
                    spent[label] = spent.get(label, 0.0) + _cpu_seconds(pid) - before[name]
                py.wait(30)
    report: dict[str, Any] = {"mbytes_per_round": args.mbytes, "rounds": args.rounds,
                              "MBps": {path: round(statistics.median(v), 1) for path, v in results.items()}}
    direct = report["MBps"]["direct"]
    report["ratio_to_direct"] = {path: round(v / direct, 3) for path, v in report["MBps"].items() if path != "direct"}
    # CPU seconds each process spent per round of each path: where the time goes
    report["cpu_s_per_round"] = {path: {k: round(v / args.rounds, 2) for k, v in spent.items()}
                                         for path, spent in cpu.items()}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mbytes", type=int, default=64, help="MB echoed per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", default="", help="write cProfile stats of the API server and kubelet here")
    parser.add_argument("--no-python", action="store_true", help="skip the Python client's path")
    parser.add_argument("--compare", action="append", default=[], metavar="TREE",
                        help="also measure an API server and kubelet run from this source tree (e.g. a "
                             "`git worktree` of the previous commit), alternating with this one")
    parser.add_argument("--serve", choices=["apiserver", "kubelet"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--etcd", help=argparse.SUPPRESS)
    parser.add_argument("--pki", help=argparse.SUPPRESS)
    args = smoke.parse(parser, mbytes=2, rounds=1)
    if args.serve:
        _serve(args.serve, args.port, args.etcd, args.pki, args.profile)
        return
    if not shutil.which("kubectl") or not shutil.which("etcd"):
        raise SystemExit("kubectl and etcd are needed")
    procs: list[subprocess.Popen[Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="pf-bench-"))
    try:
        print(json.dumps(_measure(args, tmp, procs), indent=2))
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
