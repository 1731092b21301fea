"""wait: block until objects meet a condition, are deleted, or a JSONPath has a value (kubectl wait).

Each object is read once, then watched from that resourceVersion until the condition holds
or the timeout passes; a watch the server ends early is resumed from a fresh read.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from cli.common import as_dict, client, namespace_option
from minik8s import Client
from minik8s.api import kinds as k
from minik8s.errors import MiniK8sError, NotFound

DEFAULT_TIMEOUT = "30s"
#: kubectl waits "a week" when --timeout is negative.
FOREVER_S = 7 * 24 * 3600.0
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_JSONPATH = re.compile(r"^\{((?:\.[A-Za-z0-9_-]+|\[\d+\])+)\}$")
_JSONPATH_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")


class WaitTimeout(click.ClickException):
    """kubectl's message and exit code 1."""

    def format_message(self) -> str:
        return self.message

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def parse_duration(text: str) -> float:
    """A Go duration (`30s`, `1m30s`, `500ms`, `0`) in seconds; negative means a week, as in kubectl."""
    raw = text.strip()
    sign = -1.0 if raw.startswith("-") else 1.0
    body = raw.lstrip("+-")
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(body):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if not body or pos != len(body):
        raise click.BadParameter(f'invalid duration "{text}": use a number with a unit, e.g. 30s, 2m, 1h30m',
                                 param_hint="--timeout")
    return FOREVER_S if sign < 0 else total


def jsonpath_get(obj: Any, steps: list[str | int]) -> Any:
    cur = obj
    for step in steps:
        if isinstance(step, int):
            cur = cur[step] if isinstance(cur, list) and step < len(cur) else None
        else:
            cur = cur.get(step) if isinstance(cur, dict) else None
        if cur is None:
            return None
    return cur


def _jsonpath_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class Condition:
    """What --for asks: `delete`, `create`, a condition type (and status), or a JSONPath value."""

    mode: str  # "delete" | "create" | "condition" | "jsonpath"
    name: str = ""  # condition type, or the JSONPath text
    value: str = "True"  # condition status, or the JSONPath value wanted
    steps: tuple[str | int, ...] = ()

    def met(self, obj: dict[str, Any] | None) -> bool:
        if self.mode == "delete":
            return obj is None
        if obj is None:
            return False
        if self.mode == "create":
            return True
        if self.mode == "condition":
            for cond in (obj.get("status") or {}).get("conditions") or []:
                if str(cond.get("type", "")).lower() == self.name.lower():
                    return str(cond.get("status", "")).lower() == self.value.lower()
            return False
        found = jsonpath_get(obj, list(self.steps))
        return found is not None and _jsonpath_text(found) == self.value

    def verb(self) -> str:
        return "deleted" if self.mode == "delete" else "condition met"


def parse_for(text: str) -> Condition:
    """`delete`, `create`, `condition=Ready`, `condition=Ready=false`, `jsonpath={.status.phase}=Running`."""
    if text in ("delete", "create"):
        return Condition(text)
    what, sep, rest = text.partition("=")
    if what == "condition" and sep and rest:
        name, _, value = rest.partition("=")
        if not name:
            raise click.BadParameter(f'"{text}": give a condition type, e.g. condition=Ready', param_hint="--for")
        return Condition("condition", name, value or "True")
    if what == "jsonpath" and sep and rest:
        path, eq, value = rest.replace("'", "").replace('"', "").partition("}=")
        path = path + "}"
        m = _JSONPATH.match(path)
        if not eq or not m:
            raise click.BadParameter(
                f'"{text}": use jsonpath={{.field.path}}=VALUE with dotted fields and [N] indexes, '
                "e.g. jsonpath='{.status.phase}'=Running", param_hint="--for")
        steps = tuple(int(idx) if idx else name for name, idx in _JSONPATH_STEP.findall(m.group(1)))
        return Condition("jsonpath", path, value.strip("'\""), steps)
    raise click.BadParameter(f'"{text}": use delete, create, condition=TYPE[=STATUS] or jsonpath={{...}}=VALUE',
                             param_hint="--for")


def parse_targets(args: tuple[str, ...]) -> tuple[str, list[str]]:
    """`KIND NAME...` or `KIND/NAME...` -> (kind, names); names may be empty (then -l or --all)."""
    if not args:
        raise click.UsageError("give KIND/NAME or KIND NAME, e.g. pod/web")
    if "/" not in args[0]:
        if any("/" in a for a in args[1:]):
            raise click.UsageError("give KIND NAME... or KIND/NAME..., not both")
        return args[0], list(args[1:])
    kinds, names = set(), []
    for ref in args:
        kind, _, name = ref.partition("/")
        if not kind or not name:
            raise click.UsageError(f'arguments in resource/name form must have a single resource and name: "{ref}"')
        kinds.add(k.lookup(kind).kind)
        names.append(name)
    if len(kinds) > 1:
        raise click.UsageError("give objects of one kind per command")
    return args[0].partition("/")[0], names


def _read(c: Client, info: k.KindInfo, name: str, namespace: str | None) -> tuple[dict[str, Any] | None, str]:
    """The object (None when absent) and the list resourceVersion to watch from."""
    result = c.list(info.kind, namespace, field_selector=f"metadata.name={name}")
    items = [as_dict(o) for o in result.items]
    return (items[0] if items else None), result.resource_version


def wait_one(c: Client, info: k.KindInfo, name: str, namespace: str | None, cond: Condition,
             timeout_s: float, clock: Callable[[], float] = time.monotonic) -> bool:
    """True once `cond` holds for the object, False when `timeout_s` passes first."""
    deadline = clock() + timeout_s
    while True:
        obj, rv = _read(c, info, name, namespace)
        if cond.met(obj):
            return True
        remaining = deadline - clock()
        if remaining <= 0:
            return False
        try:
            for ev in c.watch(info.kind, namespace, rv, field_selector=f"metadata.name={name}",
                              timeout_seconds=max(1, math.ceil(remaining))):
                if cond.met(None if ev.type == "DELETED" else as_dict(ev.object)):
                    return True
                if clock() >= deadline:
                    return False
        except MiniK8sError:
            pass  # the watch broke or its version expired: read again and resume
        if clock() >= deadline:
            return False


@click.command()
@click.argument("args", nargs=-1)
@click.option("--for", "for_", required=True, metavar="CONDITION",
              help="delete, create, condition=TYPE[=STATUS] (e.g. condition=Ready, condition=Available=false), "
                   "or jsonpath='{.status.phase}'=Running.")
@click.option("--timeout", default=DEFAULT_TIMEOUT, show_default=True,
              help="How long to wait per object (30s, 2m, 1h; 0 checks once; negative waits a week).")
@click.option("-l", "--selector", default=None, help="Wait for every object matching this label selector.")
@click.option("--all", "all_", is_flag=True, help="Wait for every object of the kind in the namespace.")
@namespace_option
def wait(args: tuple[str, ...], for_: str, timeout: str, selector: str | None, all_: bool,
         namespace: str | None) -> None:
    """Wait until objects of any kind meet a condition, are deleted, or a field has a value.

    Exits 0 when every object met it, 1 with kubectl's "timed out waiting for the condition"
    message otherwise.

    \b
    Examples:
      minik8s wait pod/web --for=condition=Ready --timeout=60s
      minik8s wait deploy web --for=condition=Available
      minik8s wait pod/web --for=jsonpath='{.status.phase}'=Running
      minik8s wait pods -l app=web --for=delete --timeout=2m
    """
    cond = parse_for(for_)
    timeout_s = parse_duration(timeout)
    kind, names = parse_targets(args)
    info = k.lookup(kind)
    ns = (namespace or "default") if info.namespaced else None
    c = client()
    if names and (selector or all_):
        raise click.UsageError("give names, or --all, or -l, not several of them")
    if not names:
        if not (selector or all_):
            raise click.UsageError("give a name, or --all, or -l SELECTOR")
        names = [o.metadata.name for o in c.list(info.kind, ns, selector).items]
        if not names:
            raise NotFound("no matching resources found")
    elif cond.mode not in ("delete", "create"):
        for name in names:  # kubectl reports a missing object at once, not after the timeout
            c.get(info.kind, name, ns)
    for name in names:
        if not wait_one(c, info, name, ns, cond, timeout_s):
            raise WaitTimeout(f"timed out waiting for the condition on {info.plural}/{name}")
        click.echo(f"{info.singular}/{name} {cond.verb()}")


COMMANDS = [wait]
