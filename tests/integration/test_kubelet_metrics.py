"""The kubelet's cgroup v1 sampler against a real dockerd: a busy loop reads ≈1 core, a held buffer ≈ its size.

Root only (reuses the dockerd fixture of test_kubelet_runtime).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from minik8s.kubelet import labels as L
from minik8s.kubelet.metrics import MetricsSampler
from tests.integration.test_kubelet_runtime import IMAGE, pytestmark  # noqa: F401 - skip unless root
from tests.integration.test_kubelet_runtime import dockerd as dockerd  # noqa: F401 - the fixture

NODE = "node-m"
SAMPLE_S = 3.0
MB = 1024 * 1024


def proc_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def run(client: Any, name: str, cmd: str, **kw: Any) -> Any:
    labels = {L.MANAGED: "true", L.NODE: NODE, L.POD_NAMESPACE: "default", L.POD_NAME: name,
              L.CONTAINER_NAME: "main", L.CONTAINER_TYPE: L.TYPE_CONTAINER}
    return client.containers.run(IMAGE, ["sh", "-c", cmd], detach=True, labels=labels, name=f"metrics-{name}", **kw)


def test_sampler_reads_real_cpu_and_memory(dockerd: Any) -> None:  # noqa: F811 - the imported fixture
    burn = run(dockerd, "burn", "while :; do :; done")
    # 50 MB written to a tmpfs: shmem pages are charged to the container's memory cgroup (and not inactive_file)
    hold = run(dockerd, "hold", "dd if=/dev/zero of=/data/f bs=1048576 count=50; sleep 3600",
               tmpfs={"/data": "size=100m"})
    try:
        sampler = MetricsSampler(dockerd, NODE)
        burn.reload()
        pid = int(burn.attrs["State"]["Pid"])
        sampler.sample()  # primes the rates
        t0, ticks0 = time.monotonic(), proc_ticks(pid)
        time.sleep(SAMPLE_S)
        window = sampler.sample()
        truth = (proc_ticks(pid) - ticks0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0)
        by_pod = {c.pod: c for c in window.containers}
        cores = by_pod["burn"].cpu_cores
        # the busy loop is the shell itself: its own CPU time is the ground truth on a shared machine
        assert abs(cores - truth) <= 0.25 * truth, (cores, truth)
        if truth >= 0.9:  # noqa: PLR2004 - the machine gave it a whole core: the sampler must say ≈1000m
            assert 750 <= cores * 1000 <= 1250, by_pod["burn"]
        assert 40 * MB <= by_pod["hold"].memory_working_set <= 120 * MB, by_pod["hold"]
        assert window.node_cpu_cores is not None and window.node_cpu_cores >= 0.7
        body = sampler.report_body(window)
        burn_pm = next(p for p in body["pods"] if p["metadata"]["name"] == "burn")
        assert burn_pm["containers"][0]["usage"]["cpu"].endswith("n")
        assert burn_pm["containers"][0]["usage"]["memory"].endswith("Ki")
    finally:
        for c in (burn, hold):
            c.remove(force=True)


def test_sampler_ignores_other_nodes(dockerd: Any) -> None:  # noqa: F811 - the imported fixture
    assert MetricsSampler(dockerd, "elsewhere").sample().containers == []
