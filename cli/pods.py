"""logs and exec."""

from __future__ import annotations

import sys

import click

from cli.common import client, namespace_option
from minik8s.api import kinds
from minik8s.api.apps import selector_string
from minik8s.client import Client
from minik8s.errors import NotFound

# kubectl's ByLogging order, simplified: a running pod's output first, then a finished one's, older first
_LOG_PHASE_RANK = {"Running": 0, "Succeeded": 1, "Failed": 1, "Unknown": 2, "Pending": 3}


def _pod_of(c: Client, ref: str, namespace: str) -> str:
    """`NAME`, `pod/NAME`, or `KIND/NAME` of a workload (job/NAME): the first of its pods, as kubectl picks."""
    kind, _, name = ref.rpartition("/")
    if not kind:
        return ref
    info = kinds.lookup(kind)
    if info.kind == "Pod":
        return name
    owner = c.get(info.kind, name, namespace)
    selector = selector_string(owner.spec.selector.to_dict() if getattr(owner.spec, "selector", None) else None)
    if selector == "<none>":
        raise NotFound(f"{info.singular}/{name} has no pod selector")
    pods = c.list("Pod", namespace, selector).items
    if not pods:
        raise NotFound(f"no pods found for {info.singular}/{name}")
    pods.sort(key=lambda p: (_LOG_PHASE_RANK.get(p.status.phase if p.status else "Pending", 3),
                             p.metadata.creationTimestamp or ""))
    return str(pods[0].metadata.name)


@click.command()
@click.argument("pod")
@click.option("-c", "--container", default=None, help="Container name (needed when the pod has several).")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new output.")
@click.option("--tail", type=int, default=None, help="Only the last N lines.")
@click.option("-p", "--previous", is_flag=True, help="The previous (crashed) instance's output.")
@namespace_option
def logs(pod: str, container: str | None, follow: bool, tail: int | None, previous: bool,
         namespace: str | None) -> None:
    """Print a container's output.

    \b
    Example:
      minik8s logs web -c server -f
      minik8s logs job/pi
    """
    out = sys.stdout.buffer
    c = client()
    pod = _pod_of(c, pod, namespace or "default")
    for chunk in c.pod_logs(pod, namespace or "default", container, follow, tail, previous):
        out.write(chunk)
        out.flush()


@click.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("pod")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-c", "--container", default=None, help="Container name (default: the pod's only container).")
@namespace_option
def exec_(pod: str, command: tuple[str, ...], container: str | None, namespace: str | None) -> None:
    """Run a command in a container and print its output; exits with the command's exit code.

    \b
    Example:
      minik8s exec web -c client -- wget -qO- http://localhost:8080/
    """
    code, output = client().pod_exec(pod, list(command), namespace or "default", container)
    sys.stdout.buffer.write(output)
    sys.stdout.flush()
    if code:
        sys.exit(code)


COMMANDS = [logs, exec_]
