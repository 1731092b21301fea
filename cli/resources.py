"""apply, get, describe, delete."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import click

from cli import manifests
from cli.common import as_dict, client, dump, namespace_option
from cli.describe import describe_object
from minik8s.api import kinds as k
from minik8s.api import printers
from minik8s.errors import MiniK8sError, NotFound

OUTPUTS = ["wide", "yaml", "json", "name"]
DELETE_POLL_S = 0.2
DELETE_EXTRA_WAIT_S = 15.0


@click.command()
@click.option("-f", "--filename", "files", multiple=True, required=True,
              help="File, directory or - (stdin); several YAML documents per file.")
@namespace_option
def apply(files: tuple[str, ...], namespace: str | None) -> None:
    """Create or update objects from manifests. Nothing is written unless every document is valid.

    \b
    Example:
      minik8s apply -f examples/two-containers.yaml
      cat pod.yaml | minik8s apply -f -
    """
    docs = manifests.load(files)
    c = client()
    for doc in docs:  # server-side dry run of everything first: all or nothing
        try:
            c.apply_outcome(doc.body, namespace, dry_run=True)
        except MiniK8sError as exc:
            raise manifests.ManifestError(f"{doc.where}: {exc.message}") from None
    for doc in docs:
        try:
            obj, outcome = c.apply_outcome(doc.body, namespace)
        except MiniK8sError as exc:
            raise manifests.ManifestError(f"{doc.where}: {exc.message}") from None
        click.echo(f"{doc.info.singular}/{as_dict(obj)['metadata']['name']} {outcome}")


def _resolve_namespace(info: k.KindInfo, namespace: str | None, all_namespaces: bool) -> str | None:
    if not info.namespaced or all_namespaces:
        return None
    return namespace or "default"


@dataclass
class LabelColumns:
    """`--show-labels` (one LABELS column) and `-L k1,k2` (one column per key), as kubectl adds them."""

    keys: list[str] = field(default_factory=list)
    show_all: bool = False

    def headers(self) -> list[str]:
        # kubectl heads a -L column with the key's last path segment, upper-cased
        return [key.rsplit("/", 1)[-1].upper() for key in self.keys] + (["LABELS"] if self.show_all else [])

    def cells(self, obj: dict[str, Any]) -> list[str]:
        labels = obj["metadata"].get("labels") or {}
        cells = [labels.get(key, "") for key in self.keys]
        if self.show_all:
            cells.append(",".join(f"{key}={value}" for key, value in sorted(labels.items())) or "<none>")
        return cells


def label_columns(keys: tuple[str, ...], show_labels: bool) -> LabelColumns:
    return LabelColumns([key.strip() for arg in keys for key in arg.split(",") if key.strip()], show_labels)


def _print_table(info: k.KindInfo, items: list[dict[str, Any]], wide: bool, with_ns: bool,
                 headers_shown: bool = True, labels: LabelColumns | None = None) -> None:
    headers, rows = printers.table_rows(info.columns, items, wide)
    if with_ns:
        headers = ["NAMESPACE", *headers]
        rows = [[o["metadata"].get("namespace", ""), *r] for o, r in zip(items, rows, strict=True)]
    if labels is not None:
        headers = [*headers, *labels.headers()]
        rows = [[*r, *labels.cells(o)] for o, r in zip(items, rows, strict=True)]
    text = printers.format_table(headers, rows)
    click.echo(text if headers_shown else "\n".join(text.splitlines()[1:]))


@click.command()
@click.argument("kind")
@click.argument("names", nargs=-1)
@click.option("-o", "--output", type=click.Choice(OUTPUTS), default=None, help="Output format.")
@click.option("-w", "--watch", is_flag=True, help="After listing, watch for changes.")
@click.option("-l", "--selector", default=None, help="Label selector, e.g. app=web,tier!=db.")
@click.option("--field-selector", default=None, help="Field selector, e.g. spec.nodeName=node-1.")
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("--show-labels", is_flag=True, help="Add a LABELS column with every label.")
@click.option("-L", "--label-columns", "label_keys", multiple=True, metavar="KEY1,KEY2",
              help="Add one column per label key (repeat or comma-separate).")
@namespace_option
def get(kind: str, names: tuple[str, ...], output: str | None, watch: bool, selector: str | None,
        field_selector: str | None, all_namespaces: bool, show_labels: bool, label_keys: tuple[str, ...],
        namespace: str | None) -> None:
    """Show objects as a table (like kubectl), or as yaml/json/name.

    \b
    Example:
      minik8s get pods -o wide
      minik8s get po web -o yaml
      minik8s get nodes --show-labels
      minik8s get pods -L app,tier
    """
    labels = label_columns(label_keys, show_labels)
    if "," in kind:
        if names or watch or output in ("yaml", "json"):
            raise click.UsageError("several kinds at once list tables or names only: get KIND1,KIND2 [-o wide|name]")
        for i, one in enumerate(part for part in kind.split(",") if part):
            if i:
                click.echo()
            _get_many(one, output, selector, field_selector, all_namespaces, namespace, labels)
        return
    info = k.lookup(kind)
    c = client()
    ns = _resolve_namespace(info, namespace, all_namespaces)
    if names:
        items = [as_dict(c.get(info.kind, n, ns)) for n in names]
        rv = None
    else:
        result = c.list(info.kind, ns, selector, field_selector)
        items, rv = [as_dict(o) for o in result.items], result.resource_version
    if output in ("yaml", "json"):
        click.echo(dump(items[0] if len(names) == 1 else items, output))
    elif output == "name":
        for o in items:
            click.echo(f"{info.singular}/{o['metadata']['name']}")
    elif not items and not watch:
        where = f" in {ns} namespace" if ns else ""
        click.echo(f"No resources found{where}.", err=True)
    else:
        _print_table(info, items, output == "wide", all_namespaces and info.namespaced, labels=labels)
    if watch:
        selector_names = set(names)
        shown = bool(items)
        for ev in c.watch(info.kind, ns, rv, selector, field_selector):
            obj = as_dict(ev.object)
            if selector_names and obj["metadata"]["name"] not in selector_names:
                continue
            _print_table(info, [obj], output == "wide", all_namespaces and info.namespaced, headers_shown=not shown,
                         labels=labels)
            shown = True


def _get_many(kind: str, output: str | None, selector: str | None, field_selector: str | None,
              all_namespaces: bool, namespace: str | None, labels: LabelColumns) -> None:
    """One kind's table within `get KIND1,KIND2`: names carry their kind, as kubectl prints them."""
    info = k.lookup(kind)
    result = client().list(info.kind, _resolve_namespace(info, namespace, all_namespaces), selector, field_selector)
    items = [as_dict(o) for o in result.items]
    for o in items:
        o["metadata"]["name"] = f"{info.singular}/{o['metadata']['name']}"
    if output == "name":
        for o in items:
            click.echo(o["metadata"]["name"])
    elif items:
        _print_table(info, items, output == "wide", all_namespaces and info.namespaced, labels=labels)


@click.command()
@click.argument("kind")
@click.argument("name")
@namespace_option
def describe(kind: str, name: str, namespace: str | None) -> None:
    """Show an object in detail, with its recent Events.

    \b
    Example:
      minik8s describe pod web
    """
    info = k.lookup(kind)
    c = client()
    obj = as_dict(c.get(info.kind, name, _resolve_namespace(info, namespace, False)))
    click.echo(describe_object(c, info, obj))


def _wait_gone(kind: str, name: str, namespace: str | None, timeout: float) -> None:
    c = client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c.get(kind, name, namespace)
        except NotFound:
            return
        time.sleep(DELETE_POLL_S)


@click.command()
@click.argument("kind", required=False)
@click.argument("names", nargs=-1)
@click.option("-f", "--filename", "files", multiple=True, help="Delete the objects these manifests name.")
@click.option("--grace-period", type=int, default=None, help="Seconds a pod gets to stop (0: at once).")
@click.option("--wait/--no-wait", default=True, help="Wait until the objects are gone.")
@click.option("--ignore-not-found", is_flag=True, help="Treat a missing object as deleted.")
@click.option("--cascade", type=click.Choice(["background", "foreground", "orphan"]), default="background",
              help="What happens to dependents (a Deployment's ReplicaSets, their pods): deleted in the background, "
                   "before the owner (foreground), or kept without their ownerReference (orphan).")
@namespace_option
def delete(kind: str | None, names: tuple[str, ...], files: tuple[str, ...], grace_period: int | None, wait: bool,
           ignore_not_found: bool, cascade: str, namespace: str | None) -> None:
    """Delete objects by kind and name, or those a manifest names.

    \b
    Example:
      minik8s delete pod web
      minik8s delete -f examples/two-containers.yaml
      minik8s delete deploy web --cascade=orphan
    """
    targets: list[tuple[k.KindInfo, str, str | None]] = []
    if files:
        for doc in manifests.load(files):
            meta = doc.body.get("metadata") or {}
            ns = (namespace or meta.get("namespace") or "default") if doc.info.namespaced else None
            targets.append((doc.info, meta["name"], ns))
    elif kind and names:
        info = k.lookup(kind)
        targets = [(info, n, _resolve_namespace(info, namespace, False)) for n in names]
    else:
        raise click.UsageError("give KIND NAME... or -f FILE")
    c = client()
    for info, name, ns in targets:
        try:
            obj = c.get(info.kind, name, ns)
            c.delete(info.kind, name, ns, grace_period, propagation_policy=cascade.capitalize())
        except NotFound:
            if ignore_not_found:
                continue
            raise
        click.echo(f'{info.singular} "{name}" deleted')
        if wait:
            grace = grace_period if grace_period is not None else (
                as_dict(obj).get("spec", {}).get("terminationGracePeriodSeconds") or 0)
            _wait_gone(info.kind, name, ns, float(grace) + DELETE_EXTRA_WAIT_S)


COMMANDS = [apply, get, describe, delete]
