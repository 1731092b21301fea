"""The control-plane chaos scenario, over and over: how many app containers or sandboxes were replaced.

Each round: a 3-replica web Deployment behind a NodePort Service (tests/e2e/chaos's `served_app`),
traffic on its ClusterIP and every NodePort, the whole control plane SIGKILLed (every process of the
Ray head's and etcd's sessions), down for `--outage` seconds, then `minik8s up`. A round is clean when
the pods come back with the very same containers (pause and app: same IDs, same restart counts) and
no ClusterIP/NodePort request failed. Reported: clean rounds out of `--rounds`, containers replaced,
data-plane requests failed, and the `up` -> Service-answering-by-name time per round (median, worst).
Baseline, same run: one `minik8s up` on the healthy cluster (it adopts everything), as a ratio.

This is the 20-round check of issue 19 item 9, a benchmark-style loop and not a CI test. Run on a
cluster made by `make up` (as root), from the repository root:

    .venv/bin/python benchmarks/chaos_loop.py [--rounds 20] [--outage 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import smoke  # noqa: E402
from benchmarks.recovery import timed_up  # noqa: E402
from minik8s import Client  # noqa: E402
from minik8s.cluster.config import ClusterConfig  # noqa: E402
from tests.e2e.chaos.common import (  # noqa: E402
    BY_NAME,
    Traffic,
    app_containers,
    kill_control_plane,
    served_app,
)
from tests.e2e.conftest import UP_ARGS, UP_TIMEOUT_S, run, wait_for  # noqa: E402

RECOVERY_TIMEOUT_S = 180.0


def one_round(cfg: ClusterConfig, client: Client, index: int, outage: float) -> tuple[int, int, float]:
    """(containers replaced, data-plane requests failed, seconds from `up` to the Service answering by name)."""
    with served_app(client, f"loop{index}") as app:
        before = app_containers(cfg, app.name)
        traffic = Traffic(app, cfg).start()
        time.sleep(1)
        kill_control_plane(cfg)
        time.sleep(outage)
        up_at = time.monotonic()
        run(*UP_ARGS, timeout=UP_TIMEOUT_S)
        wait_for("the Service's DNS name to answer again", lambda: all(traffic.once(t) for t in BY_NAME),
                 timeout=RECOVERY_TIMEOUT_S)
        answering = time.monotonic() - up_at
        traffic.stop()
        after = app_containers(cfg, app.name)
        replaced = len(set(before.items()) - set(after.items()))
        failed = len(traffic.failures(list(app.urls)))
    return replaced, failed, answering


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20, help="kill/up rounds")
    ap.add_argument("--outage", type=float, default=5.0, help="seconds the control plane stays down each round")
    args = smoke.parse(ap, rounds=1, outage=1.0)
    cfg, client = ClusterConfig(), Client.from_config()
    baseline = timed_up()
    print(f"baseline: `minik8s up` on a healthy cluster {baseline:.1f}s")
    clean, replaced_total, failed_total, times = 0, 0, 0, []
    for i in range(args.rounds):
        replaced, failed, answering = one_round(cfg, client, i, args.outage)
        client = Client.from_config()  # a fresh connection to the new API server
        clean += replaced == 0 and failed == 0
        replaced_total += replaced
        failed_total += failed
        times.append(answering)
        print(f"round {i + 1}: {replaced} containers replaced, {failed} data-plane requests failed, "
              f"up -> answering by name {answering:.1f}s", flush=True)
    print(f"clean rounds: {clean}/{args.rounds}; containers replaced: {replaced_total}; "
          f"data-plane requests failed: {failed_total}")
    print(f"up -> answering by name: median {statistics.median(times):.1f}s, worst {max(times):.1f}s; "
          f"ratio to the healthy `up`: {statistics.median(times) / baseline:.2f}x")


if __name__ == "__main__":
    main()
