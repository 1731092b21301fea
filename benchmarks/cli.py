"""CLI latency: `minik8s` verbs against kubectl doing the same thing, in the same run, on the running cluster.

Each verb runs `--runs` times as a fresh process (as a user types it), kubectl the same
number of times with a kubeconfig from `minik8s kubeconfig`; the table prints the median
wall time of each and the ratio minik8s/kubectl (aim: ≤ 3×). The verbs: get pods, describe pod,
apply (an unchanged Namespace manifest), delete (of a pod applied just before, not timed), logs.
`--smoke` runs each once to prove the harness works.

Usage: python -m benchmarks.cli [--runs 10] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

MINIK8S = [sys.executable, "-m", "cli.main"]
KUBECTL = "kubectl"
POD = "bench-cli"
READY_TIMEOUT_S = 120
POD_YAML = textwrap.dedent(f"""\
    apiVersion: v1
    kind: Pod
    metadata: {{name: {POD}, labels: {{app: bench-cli}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{{name: main, image: busybox, command: [sh, -c, "echo hello; sleep 3600"]}}]
    """)


NAMESPACE_YAML = "apiVersion: v1\nkind: Namespace\nmetadata: {name: bench-cli, labels: {app: bench-cli}}\n"


def _run(argv: list[str], stdin: str | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, text=True, capture_output=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed


def _victim(i: int) -> str:
    return POD_YAML.replace(f"name: {POD},", f"name: {POD}-del-{i},")


def _timed(runs: int, prepare: Callable[[int], None] | None, command: Callable[[int], list[str]],
           stdin: str | None = None) -> float:
    times = []
    for i in range(runs):
        if prepare:
            prepare(i)
        times.append(_run(command(i), stdin))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="One run of each, to check the harness.")
    args = parser.parse_args()
    runs = 1 if args.smoke else args.runs
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        kubeconfig.write_text(subprocess.run([*MINIK8S, "kubeconfig"], check=True, capture_output=True,
                                             text=True).stdout)
        kubectl = [KUBECTL, "--kubeconfig", str(kubeconfig)]
        for manifest in (POD_YAML, NAMESPACE_YAML):
            subprocess.run([*MINIK8S, "apply", "-f", "-"], input=manifest, text=True, check=True, capture_output=True)
        subprocess.run([*MINIK8S, "wait", f"pod/{POD}", "--for=condition=Ready", f"--timeout={READY_TIMEOUT_S}s"],
                       check=True, capture_output=True)
        cases: list[tuple[str, list[str], str | None]] = [
            ("get pods", ["get", "pods"], None),
            ("describe pod", ["describe", "pod", POD], None),
            ("apply (unchanged)", ["apply", "-f", "-"], NAMESPACE_YAML),
            ("logs", ["logs", POD], None),
        ]
        print(f"{'verb':<20}{'minik8s s':>11}{'kubectl s':>11}{'ratio':>8}")
        try:
            for label, verb, stdin in cases:
                mine = _timed(runs, None, lambda _i, v=verb: [*MINIK8S, *v], stdin)
                theirs = _timed(runs, None, lambda _i, v=verb: [*kubectl, *v], stdin)
                print(f"{label:<20}{mine:>11.3f}{theirs:>11.3f}{mine / theirs:>7.1f}x")

            def apply_victim(i: int) -> None:
                subprocess.run([*MINIK8S, "apply", "-f", "-"], input=_victim(i), text=True, check=True,
                               capture_output=True)

            mine = _timed(runs, apply_victim, lambda i: [*MINIK8S, "delete", "pod", f"{POD}-del-{i}", "--no-wait"])
            theirs = _timed(runs, lambda i: apply_victim(runs + i),
                            lambda i: [*kubectl, "delete", "pod", f"{POD}-del-{runs + i}", "--wait=false"])
            print(f"{'delete (no wait)':<20}{mine:>11.3f}{theirs:>11.3f}{mine / theirs:>7.1f}x")
        finally:
            subprocess.run([*MINIK8S, "delete", "pod", POD, "--grace-period", "0", "--no-wait"], capture_output=True)
            subprocess.run([*MINIK8S, "delete", "namespace", "bench-cli", "--no-wait"], capture_output=True)
            for i in range(2 * runs):
                subprocess.run([*MINIK8S, "delete", "pod", f"{POD}-del-{i}", "--ignore-not-found", "--no-wait"],
                               capture_output=True)


if __name__ == "__main__":
    main()
