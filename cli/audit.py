"""audit: read the API server's audit log (every mutating request: who, what, the answer's code).

The log is a file on the control-plane machine (`<state dir>/audit/audit.log`, JSON lines of
audit.k8s.io/v1 Events, rotated), so `audit tail` runs where `minik8s up` ran, as kube-apiserver's
audit files are read on its host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from minik8s.errors import BadRequest

COLUMNS = (("TIME", 27), ("USER", 22), ("VERB", 17), ("RESOURCE", 22), ("NAMESPACE", 16), ("NAME", 28),
           ("CODE", 5))
FOLLOW_POLL_S = 0.2


def _default_path() -> Path:
    from minik8s.apiserver.audit import log_path
    from minik8s.cluster.config import default_state_dir

    return log_path(default_state_dir())


def _resource(ref: dict[str, Any]) -> str:
    res = str(ref.get("resource", ""))
    if ref.get("subresource"):
        res += f"/{ref['subresource']}"
    return f"{res}.{ref['apiGroup']}" if ref.get("apiGroup") else res


def _row(line: str) -> str:
    try:
        ev = json.loads(line)
    except json.JSONDecodeError:
        return f"(unreadable line) {line[:80]}"
    ref = ev.get("objectRef") or {}
    cells = [ev.get("requestReceivedTimestamp", ""), (ev.get("user") or {}).get("username", ""), ev.get("verb", ""),
             _resource(ref) or ev.get("requestURI", ""), ref.get("namespace", ""), ref.get("name", ""),
             str((ev.get("responseStatus") or {}).get("code", ""))]
    return _format(cells)


def _format(cells: list[str]) -> str:
    out = [str(c).ljust(width) for c, (_, width) in zip(cells[:-1], COLUMNS, strict=False)]
    return " ".join([*out, str(cells[-1])]).rstrip()


@click.group()
def audit() -> None:
    """The API server's audit log: every create, update, patch and delete, with its user and code."""


@audit.command("tail")
@click.option("-n", "--lines", "count", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many of the latest events to print.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing events as they are written (Ctrl-C stops).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table: one line per event; json: the audit.k8s.io/v1 Event lines as written.")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The audit log (default: <state dir>/audit/audit.log; the state dir is $MINIK8S_STATE_DIR "
                   "or /var/lib/minik8s).")
def tail(count: int, follow: bool, output: str, path: Path | None) -> None:
    """Print the latest audit events.

    \b
    Example:
      minik8s audit tail -n 20
      minik8s audit tail -f -o json
    """
    from minik8s.apiserver.audit import follow as follow_lines
    from minik8s.apiserver.audit import read_lines

    log = path or _default_path()
    if not log.exists():
        raise BadRequest(f"no audit log at {log}: is this the control-plane machine of a cluster started with "
                         "`minik8s up`?")
    show = (lambda line: line) if output == "json" else _row
    if output == "table":
        click.echo(_format([name for name, _ in COLUMNS]))
    for line in read_lines(log, count):
        click.echo(show(line))
    if follow:
        try:
            for line in follow_lines(log, FOLLOW_POLL_S, lambda: False):
                click.echo(show(line))
        except KeyboardInterrupt:
            pass


COMMANDS = [audit]
