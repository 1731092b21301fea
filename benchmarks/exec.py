"""Interactive streams: `kubectl exec POD -- true` versus `docker exec` of the same container, and the
round-trip throughput of `kubectl port-forward` versus a direct TCP connection to the pod.

Run on a cluster made by `minik8s up` (as root), from the repository root:

    .venv/bin/python benchmarks/exec.py [--runs 20] [--mbytes 64 --rounds 3] [--smoke]

exec: one busybox pod pinned to node-1. Each sample is one whole CLI run, start to exit: kubectl (its
pod GET, the WebSocket upgrade through the API server, the relay to the kubelet, Docker's exec,
the exit status) against the docker CLI on node-1's own dockerd socket exec'ing the same
container, interleaved in the same run. Prints p50/p90 of both and the p50 ratio (target <= 2x).

port-forward: an echo-server pod; each round echoes N MB over one TCP connection through `kubectl
port-forward` and, alternating, directly to the pod IP from its node's netns (the measurement of
benchmarks/portforward.py, imported). Prints the median MB/s of both and the ratio (target >= 0.5x).

`--smoke` runs 2 exec samples of each and one 2 MB echo round of each, to check the script end to end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import portforward as pf  # noqa: E402
from minik8s import Client  # noqa: E402
from minik8s.cluster.config import ClusterConfig  # noqa: E402
from minik8s.kubelet import labels  # noqa: E402
from tests.e2e.conftest import MINIK8S, pod_on  # noqa: E402

NODE = "node-1"
POD_TIMEOUT_S = 120.0
POLL_S = 0.2
CMD_TIMEOUT_S = 60.0


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=CMD_TIMEOUT_S)
    return time.perf_counter() - start


def wait_running(client: Client, name: str) -> None:
    deadline = time.monotonic() + POD_TIMEOUT_S
    while time.monotonic() < deadline:
        pod = client.get("Pod", name)
        if pod.status and pod.status.phase == "Running":
            return
        time.sleep(POLL_S)
    raise SystemExit(f"pod {name} did not start in {POD_TIMEOUT_S:.0f}s")


def container_id(socket_url: str, name: str) -> str:
    out = subprocess.run(["docker", "-H", socket_url, "ps", "-q", "--filter", f"label={labels.POD_NAME}={name}",
                          "--filter", f"label={labels.CONTAINER_NAME}=main"],
                         check=True, capture_output=True, text=True).stdout.split()
    if len(out) != 1:
        raise SystemExit(f"expected one container of pod {name} on {NODE}, found {out}")
    return out[0]


def report(label: str, ours: list[float], base: list[float], target: float) -> None:
    o50, b50 = percentile(ours, 50), percentile(base, 50)
    print(f"{label}: minik8s p50 {o50 * 1000:.0f} ms p90 {percentile(ours, 90) * 1000:.0f} ms | "
          f"direct p50 {b50 * 1000:.0f} ms p90 {percentile(base, 90) * 1000:.0f} ms | "
          f"ratio p50 {o50 / b50:.2f} (target <= {target:g})")


def exec_latency(kubeconfig: Path, pod: str, socket_url: str, args: argparse.Namespace) -> None:
    runs = args.runs
    cid = container_id(socket_url, pod)
    kubectl = ["kubectl", "--kubeconfig", str(kubeconfig), "exec", pod, "--", "true"]
    docker_exec = ["docker", "-H", socket_url, "exec", cid, "true"]
    timed(kubectl), timed(docker_exec)  # warm both paths (kubectl's discovery cache, page cache)
    ours, base = [], []
    for _ in range(runs):  # interleaved, so load changes hit both alike
        ours.append(timed(kubectl))
        base.append(timed(docker_exec))
    report(f"exec `true`, {runs} runs", ours, base, 2.0)


def port_forward(kubeconfig: Path, pod: str, socket_url: str, args: argparse.Namespace) -> None:
    """Echo throughput through `kubectl port-forward` against a direct connection to the pod, alternating
    rounds in this run (an echo-server pod of its own: `pod` runs busybox, without python3)."""
    client = Client.from_config()
    try:
        result = pf.measure(client, kubeconfig, args.pf_image, args.mbytes, args.rounds)
    finally:
        client.close()
    s = result.summary()
    print(f"port-forward echo, {args.mbytes} MB x {args.rounds}: minik8s {s['port_forward_MBps']:.1f} MB/s | "
          f"direct {s['direct_MBps']:.1f} MB/s | ratio {s['ratio']:.2f} (target >= 0.5)")


MEASUREMENTS: list[Callable[[Path, str, str, argparse.Namespace], None]] = [exec_latency, port_forward]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--mbytes", type=int, default=64, help="port-forward: MB echoed per round")
    parser.add_argument("--rounds", type=int, default=3, help="port-forward: echo rounds of each path")
    parser.add_argument("--pf-image", default=pf.IMAGE, help="port-forward: an image with python3 for the echo server")
    parser.add_argument("--smoke", action="store_true", help="2 exec runs and one 2 MB echo round of each")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.mbytes, args.rounds = 2, pf.SMOKE_MBYTES, 1
    client = Client.from_config()
    socket_url = ClusterConfig().node(1).docker_url
    name = f"bench-exec-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kc"
        kubeconfig.write_text(subprocess.run([MINIK8S, "kubeconfig"], check=True, capture_output=True,
                                             text=True).stdout)
        subprocess.run([MINIK8S, "apply", "-f", "-"], input=pod_on(name, NODE, "busybox", ["sleep", "3600"]),
                       check=True, capture_output=True, text=True)
        try:
            wait_running(client, name)
            for measure in MEASUREMENTS:
                measure(kubeconfig, name, socket_url, args)
        finally:
            subprocess.run([MINIK8S, "delete", "pod", name, "--grace-period", "0"], capture_output=True)
    client.close()


if __name__ == "__main__":
    main()
