"""Metrics pipeline and autoscaling measurements.

Default: sampler overhead on a real dockerd. A private dockerd is started in its own netns (root;
the same set-up as tests/integration/test_kubelet_runtime.py), N busybox containers run `sleep`, and
the kubelet's `MetricsSampler.sample()` is timed with time.process_time (CPU seconds of this process)
and wall time, reported per 100 containers. Baseline in the same run: `docker inspect` of the same
N containers (what a naive sampler that asks dockerd every round would pay at least), printed as a ratio.

`--cluster`: on a live cluster (`minik8s up`), applies examples/hpa/hpa.yaml, waits for metrics, starts
the load generator, and reports the seconds from load start to the first scale-out (replicas > 1).

    sudo .venv/bin/python benchmarks/hpa.py --containers 30 --rounds 20
    .venv/bin/python benchmarks/hpa.py --cluster
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import smoke
from minik8s.kubelet import labels as L  # noqa: E402
from minik8s.kubelet.metrics import MetricsSampler  # noqa: E402

NETNS = "mk8sbenchhpa"
IMAGE = "busybox:bench"
NODE = "bench-node"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hpa"


def start_dockerd(root: Path) -> tuple[subprocess.Popen[bytes], docker.DockerClient]:
    busybox = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if Path(p).exists()), None)
    if busybox is None:
        raise SystemExit("busybox-static is not installed")
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    subprocess.run(["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"], check=True)
    sock = root / "docker.sock"
    proc = subprocess.Popen(
        ["nsenter", f"--net=/var/run/netns/{NETNS}", "dockerd", "--data-root", str(root / "data"),
         "--exec-root", str(root / "exec"), "-H", f"unix://{sock}", "--pidfile", str(root / "docker.pid"),
         "--bridge=none", "--iptables=false", "--ip-masq=false"],
        stdout=(root / "dockerd.log").open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            client = docker.DockerClient(base_url=f"unix://{sock}")
            client.ping()
            break
        except docker.errors.DockerException:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("dockerd did not start: " + (root / "dockerd.log").read_text()[-2000:]) from None
            time.sleep(0.2)
    ctx = root / "ctx"
    ctx.mkdir()
    shutil.copy(busybox, ctx / "busybox")
    (ctx / "Dockerfile").write_text('FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", '
                                    '"-s", "/bin"]\nENV PATH=/bin\n')
    client.images.build(path=str(ctx), tag=IMAGE, rm=True)
    return proc, client


def sampler_overhead(n: int, rounds: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-hpa-"))
    proc: subprocess.Popen[bytes] | None = None
    client: Any = None
    try:
        proc, client = start_dockerd(root)
        for i in range(n):
            labels = {L.MANAGED: "true", L.NODE: NODE, L.POD_NAMESPACE: "default", L.POD_NAME: f"p{i}",
                      L.CONTAINER_NAME: "main", L.CONTAINER_TYPE: L.TYPE_CONTAINER}
            client.containers.run(IMAGE, ["sleep", "3600"], detach=True, labels=labels, network_mode="none")
        sampler = MetricsSampler(client, NODE)
        sampler.sample()  # first round: inspects every container once (cgroup paths), primes rates
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            w = sampler.sample()
            sampler.report_body(w)
        cpu = (time.process_time() - cpu0) / rounds
        wall = (time.perf_counter() - wall0) / rounds
        assert len(w.containers) == n, f"sampled {len(w.containers)} of {n}"
        ids = [c.id for c in client.containers.list()]
        bcpu0, bwall0 = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            for cid in ids:
                client.api.inspect_container(cid)
        bcpu = (time.process_time() - bcpu0) / rounds
        bwall = (time.perf_counter() - bwall0) / rounds
        scale = 100 / n
        print(f"containers={n} rounds={rounds}")
        print(f"sampler (steady round)   cpu {cpu * scale * 1000:7.2f} ms / 100 containers   "
              f"wall {wall * scale * 1000:7.2f} ms / 100 containers")
        print(f"baseline docker inspect  cpu {bcpu * scale * 1000:7.2f} ms / 100 containers   "
              f"wall {bwall * scale * 1000:7.2f} ms / 100 containers")
        print(f"ratio sampler/baseline   cpu {cpu / bcpu:.2f}x   wall {wall / bwall:.2f}x")
        print(f"at the default 15 s interval: {cpu * scale / 15 * 100:.3f}% of one core per 100 containers")
    finally:
        if client is not None:
            for c in client.containers.list(all=True):
                c.remove(force=True)
            client.close()
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        subprocess.run(["ip", "netns", "delete", NETNS], check=False)
        shutil.rmtree(root, ignore_errors=True)


def cluster_scale_out(timeout_s: float) -> None:
    from minik8s import Client

    c = Client.from_config()
    subprocess.run([sys.executable, "-m", "cli.main", "apply", "-f", str(EXAMPLE / "hpa.yaml")], check=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # wait until the HPA has a reading: the pipeline is live
        status = c.get("HorizontalPodAutoscaler", "burner").to_dict().get("status") or {}
        if status.get("currentMetrics"):
            break
        time.sleep(1)
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "cli.main", "apply", "-f", str(EXAMPLE / "load.yaml")], check=True)
    while time.monotonic() < deadline:
        if int(c.get("Deployment", "burner").spec.replicas) > 1:
            print(f"load start -> first scale-out: {time.monotonic() - start:.1f} s "
                  "(metrics interval 15 s + HPA period 15 s bound it at ~30 s + pod start)")
            return
        time.sleep(0.5)
    print("no scale-out within the timeout")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--containers", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--cluster", action="store_true", help="time load start → first scale-out on a live cluster")
    ap.add_argument("--timeout", type=float, default=300.0)
    args = smoke.parse(ap, containers=3, rounds=2)
    if args.cluster:
        cluster_scale_out(args.timeout)
    else:
        sampler_overhead(args.containers, args.rounds)


if __name__ == "__main__":
    main()
