"""label and annotate: change an object's labels or annotations, as kubectl does.

Both write a JSON merge patch that carries the resourceVersion they read, so a concurrent
writer makes the patch fail with Conflict instead of being silently undone; on Conflict the
object is read again and the change recomputed (a few times).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import click

from cli.common import as_dict, client, namespace_option
from minik8s import Client
from minik8s.api import kinds as k
from minik8s.api.validation import Causes, check_labels
from minik8s.errors import BadRequest, Conflict

CONFLICT_RETRIES = 5
#: kubectl lets this annotation be overwritten without --overwrite (rollout history records it).
CHANGE_CAUSE = "kubernetes.io/change-cause"


@dataclass
class MetadataChanges:
    """`k=v` pairs to set and `k-` keys to remove, in the order given."""

    set: dict[str, str] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)


@dataclass
class Targets:
    """What the positional arguments name: one kind and zero or more names."""

    kind: str
    names: list[str]


def split_args(args: tuple[str, ...], verb: str) -> tuple[Targets, MetadataChanges]:
    """`KIND NAME... k=v k2-` or `KIND/NAME... k=v`: the objects, then the changes (kubectl's order)."""
    resources: list[str] = []
    changes = MetadataChanges()
    for arg in args:
        if "=" in arg:
            key, _, value = arg.partition("=")
            if not key:
                raise click.UsageError(f'invalid {verb} "{arg}": the key is empty')
            changes.set[key] = value
        elif arg.endswith("-") and len(arg) > 1:
            changes.remove.append(arg[:-1])
        elif changes.set or changes.remove:
            raise click.UsageError(f"all resources must be specified before {verb} changes: {arg}")
        else:
            resources.append(arg)
    if not changes.set and not changes.remove:
        raise click.UsageError(f"at least one {verb} update is required")
    both = set(changes.set) & set(changes.remove)
    if both:
        raise click.UsageError(f"can not both modify and remove the following {verb}(s) in the same command: "
                               f"{', '.join(sorted(both))}")
    return _targets(resources), changes


def _targets(resources: list[str]) -> Targets:
    if not resources:
        raise click.UsageError("you must specify the type of resource, e.g. pod, and a name or --all or -l")
    if "/" not in resources[0]:
        if any("/" in r for r in resources[1:]):
            raise click.UsageError("there is no need to specify a resource type as a separate argument when "
                                   "passing arguments in resource/name form")
        return Targets(resources[0], resources[1:])
    kinds = set()
    names = []
    for ref in resources:
        kind, _, name = ref.partition("/")
        if not kind or not name or "/" in name:
            raise click.UsageError(f'arguments in resource/name form must have a single resource and name: "{ref}"')
        kinds.add(k.lookup(kind).kind)
        names.append(name)
    if len(kinds) > 1:
        raise click.UsageError("give objects of one kind per command")
    return Targets(resources[0].partition("/")[0], names)


def validate_labels(changes: MetadataChanges) -> None:
    causes: Causes = []
    check_labels(changes.set, "metadata.labels", causes)
    for key in changes.remove:
        check_labels({key: ""}, "metadata.labels", causes)
    if causes:
        raise BadRequest(f"invalid label: {causes[0][1]}")


def compute_patch(current: dict[str, str] | None, changes: MetadataChanges, overwrite: bool,
                  verb: str) -> tuple[dict[str, str | None], list[str]]:
    """The `metadata.<field>` part of the merge patch, and the keys asked to be removed that are absent.

    Refuses a key that already has another value unless `overwrite` (kubectl's wording)."""
    current = current or {}
    if not overwrite:
        clashes = [(key, current[key]) for key, value in changes.set.items()
                   if key in current and current[key] != value and not (verb == "annotation" and key == CHANGE_CAUSE)]
        if clashes:
            if verb == "annotation":
                raise BadRequest("; ".join(f"--overwrite is false but found the following declared annotation(s): "
                                           f"'{key}' already has a value ({old})" for key, old in clashes))
            raise BadRequest("; ".join(f"'{key}' already has a value ({old}), and --overwrite is false"
                                       for key, old in clashes))
    patch: dict[str, str | None] = {key: value for key, value in changes.set.items() if current.get(key) != value}
    missing = [key for key in changes.remove if key not in current]
    patch.update({key: None for key in changes.remove if key in current})
    return patch, missing


def outcome(patch: dict[str, str | None], verb: str) -> str:
    """kubectl's word for what changed: labeled / unlabeled / not labeled, annotated."""
    if verb == "annotation":
        return "annotated"
    if not patch:
        return "not labeled"
    return "unlabeled" if all(v is None for v in patch.values()) else "labeled"


@dataclass
class MetadataEdit:
    """One `label`/`annotate` run: which metadata field, what to change, and where to say so."""

    field: str  # "labels" or "annotations"
    verb: str  # "label" or "annotation" (for messages)
    changes: MetadataChanges
    overwrite: bool
    echo: Callable[..., None] = click.echo

    def apply(self, c: Client, info: k.KindInfo, name: str, namespace: str | None,
              resource_version: str | None = None) -> None:
        """Patch one object; `resource_version` pins the version (a conflict then fails, not retries)."""
        for attempt in range(CONFLICT_RETRIES):
            obj = as_dict(c.get(info.kind, name, namespace))
            meta = obj["metadata"]
            patch, missing = compute_patch(meta.get(self.field), self.changes, self.overwrite, self.verb)
            if attempt == 0:
                for key in missing:
                    self.echo(f'{self.verb} "{key}" not found.', err=True)
            if patch:
                body = {"metadata": {self.field: patch, "resourceVersion": resource_version or meta["resourceVersion"]}}
                try:
                    c.patch(info.kind, name, body, namespace)
                except Conflict:
                    if resource_version or attempt == CONFLICT_RETRIES - 1:
                        raise
                    continue
            self.echo(f"{info.singular}/{name} {outcome(patch, self.verb)}")
            return


def _names(c: Client, info: k.KindInfo, targets: Targets, namespace: str | None, all_: bool,
           selector: str | None) -> list[str]:
    if targets.names and (all_ or selector):
        raise click.UsageError("give names, or --all, or -l, not several of them")
    if targets.names:
        return targets.names
    if not (all_ or selector):
        raise click.UsageError("give a name, or --all, or -l SELECTOR")
    return [o.metadata.name for o in c.list(info.kind, namespace, selector).items]


def run_edit(args: tuple[str, ...], field_name: str, verb: str, overwrite: bool, namespace: str | None,
             all_: bool, selector: str | None, resource_version: str | None) -> None:
    targets, changes = split_args(args, verb)
    if verb == "label":
        validate_labels(changes)
    info = k.lookup(targets.kind)
    ns = (namespace or "default") if info.namespaced else None
    c = client()
    names = _names(c, info, targets, ns, all_, selector)
    if resource_version and len(names) != 1:
        raise click.UsageError("--resource-version may only be used with a single resource")
    edit = MetadataEdit(field_name, verb, changes, overwrite)
    for name in names:
        edit.apply(c, info, name, ns, resource_version)


def _edit_options(func: Callable[..., None]) -> Callable[..., None]:
    for option in reversed([
        click.argument("args", nargs=-1, required=True),
        click.option("--overwrite", is_flag=True, help="Replace keys that already have a value."),
        click.option("--all", "all_", is_flag=True, help="Every object of the kind in the namespace."),
        click.option("-l", "--selector", default=None, help="Objects matching this label selector."),
        click.option("--resource-version", default=None,
                     help="Change only if the object is still at this resourceVersion."),
        namespace_option,
    ]):
        func = option(func)
    return func


@click.command()
@_edit_options
def label(args: tuple[str, ...], overwrite: bool, all_: bool, selector: str | None, resource_version: str | None,
          namespace: str | None) -> None:
    """Add, change (--overwrite) or remove (KEY-) labels of objects of any kind.

    \b
    Examples:
      minik8s label pods web tier=frontend
      minik8s label pod/web tier=backend --overwrite
      minik8s label nodes node-1 disk=ssd
      minik8s label pods --all -n prod tier-
    """
    run_edit(args, "labels", "label", overwrite, namespace, all_, selector, resource_version)


@click.command()
@_edit_options
def annotate(args: tuple[str, ...], overwrite: bool, all_: bool, selector: str | None,
             resource_version: str | None, namespace: str | None) -> None:
    """Add, change (--overwrite) or remove (KEY-) annotations of objects of any kind.

    \b
    Examples:
      minik8s annotate pods web description='my frontend'
      minik8s annotate deploy/web owner=team-a --overwrite
      minik8s annotate pods -l app=web description-
    """
    run_edit(args, "annotations", "annotation", overwrite, namespace, all_, selector, resource_version)


COMMANDS = [label, annotate]
