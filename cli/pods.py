"""logs, exec and attach."""

from __future__ import annotations

import sys

import click

from cli import terminal
from cli.common import client, namespace_option
from minik8s.api import kinds
from minik8s.api.apps import selector_string
from minik8s.client import Client
from minik8s.client.streams import open_pod_stream
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
@click.option("-i", "--stdin", "stdin", is_flag=True, help="Pass this terminal's (or pipe's) input to the command.")
@click.option("-t", "--tty", "tty", is_flag=True, help="Give the command a terminal (with -i: an interactive shell).")
@namespace_option
def exec_(pod: str, command: tuple[str, ...], container: str | None, stdin: bool, tty: bool,
          namespace: str | None) -> None:
    """Run a command in a container; exits with the command's exit code.

    \b
    Examples:
      minik8s exec web -c client -- wget -qO- http://localhost:8080/
      minik8s exec -it web -- sh
      tar cf - dir | minik8s exec -i web -- tar xf - -C /tmp
    """
    if not (stdin or tty):  # one request, stdout and stderr merged (what scripts and older tests read)
        code, output = client().pod_exec(pod, list(command), namespace or "default", container)
        sys.stdout.buffer.write(output)
        sys.stdout.flush()
        sys.exit(code)
    sys.exit(_stream(pod, namespace or "default", "exec", list(command), container, stdin, tty))


@click.command()
@click.argument("pod")
@click.option("-c", "--container", default=None, help="Container name (default: the pod's only container).")
@click.option("-i", "--stdin", "stdin", is_flag=True, help="Pass input to the container (its spec needs stdin: true).")
@click.option("-t", "--tty", "tty", is_flag=True, help="This terminal in raw mode (its spec needs tty: true).")
@namespace_option
def attach(pod: str, container: str | None, stdin: bool, tty: bool, namespace: str | None) -> None:
    """Attach to the main process of a running container.

    \b
    Example:
      minik8s attach -it shell-pod
    """
    sys.exit(_stream(pod, namespace or "default", "attach", [], container, stdin, tty))


def _stream(pod: str, namespace: str, subresource: str, command: list[str], container: str | None,
            stdin: bool, tty: bool) -> int:
    if tty and not (stdin and terminal.is_terminal()):
        click.echo("Unable to use a TTY - input is not a terminal or the right kind of file", err=True)
        tty = False
    session = open_pod_stream(client(), pod, namespace, subresource, command, container, stdin, tty)
    try:
        # the unbuffered file: a daemon thread blocked in BufferedReader.read aborts the interpreter at exit
        local_in = getattr(sys.stdin.buffer, "raw", sys.stdin.buffer) if stdin else None
        if not tty:
            return session.run(local_in, sys.stdout.buffer, sys.stderr.buffer)
        with terminal.raw_terminal(session.resize):
            return session.run(local_in, sys.stdout.buffer, sys.stderr.buffer)
    finally:
        session.close()


COMMANDS = [logs, exec_, attach]
