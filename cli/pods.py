"""logs and exec."""

from __future__ import annotations

import sys

import click

from cli.common import client, namespace_option


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
    """
    out = sys.stdout.buffer
    for chunk in client().pod_logs(pod, namespace or "default", container, follow, tail, previous):
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
