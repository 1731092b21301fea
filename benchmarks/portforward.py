"""Port-forward throughput: an echo through `kubectl port-forward` versus a direct TCP connection to the pod IP.

Against a running cluster (`minik8s up`), as root:

    python -m benchmarks.portforward [--mbytes 64] [--rounds 3] [--image python:3.11]
    python -m benchmarks.portforward --smoke          # 2 MB, one round: does it work at all

It starts an echo-server pod, then for each round echoes N MB (256 KiB writes, a reader thread
collecting the echo) over one TCP connection:
- port-forward: to 127.0.0.1:LOCAL of `kubectl port-forward` (kubectl -> SPDY over WebSocket -> API
  server -> streamed HTTP -> kubelet -> pod, and back);
- direct (baseline): from the pod's node network namespace (`ip netns exec mk8s-NODE`) to podIP:PORT.
Reported: the median MB/s of each path (bytes echoed / time until the last byte is back) and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from minik8s import Client

PORT = 9000
IMAGE = "python:3.11"  # has python3 for the echo server
SMOKE_MBYTES = 2
ECHO_SERVER = f"""
import socket, threading
def echo(c):
    while True:
        b = c.recv(1 << 18)
        if not b: break
        c.sendall(b)
    c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", {PORT})); s.listen(8)
while True:
    c, _ = s.accept(); threading.Thread(target=echo, args=(c,), daemon=True).start()
"""
# run by this process (port-forward path) and under `ip netns exec` (direct path): prints MB/s
ECHO_CLIENT = """
import socket, sys, threading, time
host, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
chunk = bytes(range(256)) * 1024
s = socket.create_connection((host, port), timeout=120)
got = 0
def reader():
    global got
    while got < total:
        b = s.recv(1 << 20)
        if not b: break
        got += len(b)
t = threading.Thread(target=reader); start = time.perf_counter(); t.start()
sent = 0
while sent < total:
    n = min(len(chunk), total - sent); s.sendall(chunk[:n]); sent += n
t.join(); elapsed = time.perf_counter() - start
assert got == total, f"echoed {got} of {total} bytes"
print(total / elapsed / 1e6)
"""
READY_TIMEOUT_S = 180.0


def _minik8s(*args: str, stdin: str | None = None) -> str:
    exe = str(Path(sys.executable).parent / "minik8s")
    return subprocess.run([exe, *args], input=stdin, capture_output=True, text=True, check=True).stdout


def _start_pod(client: Client, name: str, image: str) -> tuple[str, str]:
    """(pod IP, node) of a running echo-server pod."""
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "echo", "image": image, "command": ["python3", "-c", ECHO_SERVER]}]}}
    _minik8s("apply", "-f", "-", stdin=json.dumps(manifest))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        pod = client.get("Pod", name)
        if pod.status and pod.status.phase == "Running" and pod.status.podIP:
            return pod.status.podIP, pod.spec.nodeName
        time.sleep(0.5)
    raise SystemExit(f"pod {name} did not start in {READY_TIMEOUT_S}s")


def _echo(prefix: list[str], host: str, port: int, total: int) -> float:
    out = subprocess.run([*prefix, sys.executable, "-c", ECHO_CLIENT, host, str(port), str(total)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"echo client failed: {out.stderr.strip()}")
    return float(out.stdout)


def _port_forward(kubeconfig: Path, pod: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(["kubectl", "--kubeconfig", str(kubeconfig), "port-forward", pod, f":{PORT}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # Forwarding from 127.0.0.1:LOCAL -> 9000
    if not line.startswith("Forwarding from 127.0.0.1:"):
        proc.kill()
        raise SystemExit(f"kubectl port-forward failed: {line}{proc.communicate()[1]}")
    return proc, int(line.split(":")[1].split()[0])


@dataclass
class Throughput:
    """MB/s of each echo round, by path."""

    direct: list[float]
    port_forward: list[float]

    def summary(self) -> dict[str, float]:
        direct, via = statistics.median(self.direct), statistics.median(self.port_forward)
        return {"direct_MBps": round(direct, 1), "port_forward_MBps": round(via, 1), "ratio": round(via / direct, 3)}


def measure(client: Client, kubeconfig: Path, image: str, mbytes: int, rounds: int) -> Throughput:
    """Start an echo-server pod, echo `mbytes` MB per round through `kubectl port-forward` and directly to
    the pod IP from its node's netns, alternating; delete the pod."""
    name = f"pf-bench-{uuid.uuid4().hex[:6]}"
    total = mbytes * 1_000_000
    result = Throughput([], [])
    try:
        ip, node = _start_pod(client, name, image)
        forward, local = _port_forward(kubeconfig, name)
        try:
            for _ in range(rounds):  # alternate, so drift in machine load hits both paths alike
                result.direct.append(_echo(["ip", "netns", "exec", f"mk8s-{node}"], ip, PORT, total))
                result.port_forward.append(_echo([], "127.0.0.1", local, total))
        finally:
            forward.terminate()
            forward.wait(10)
    finally:
        subprocess.run([str(Path(sys.executable).parent / "minik8s"), "delete", "pod", name, "--grace-period", "0"],
                       capture_output=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mbytes", type=int, default=64, help="MB echoed per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image", default=IMAGE, help="an image with python3 for the echo server")
    parser.add_argument("--smoke", action="store_true", help="2 MB, one round")
    args = parser.parse_args()
    if args.smoke:
        args.mbytes, args.rounds = SMOKE_MBYTES, 1
    client = Client.from_config()
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kc"
        kubeconfig.write_text(_minik8s("kubeconfig"))
        result = measure(client, kubeconfig, args.image, args.mbytes, args.rounds)
    client.close()
    print(json.dumps({"mbytes_per_round": args.mbytes, "rounds": args.rounds, **result.summary()}, indent=2))


if __name__ == "__main__":
    main()
