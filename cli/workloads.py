"""scale and rollout (status, undo, restart, history) for Deployments, ReplicaSets, ReplicationControllers and
DaemonSets (rollout status and restart)."""

from __future__ import annotations

import time
from typing import Any

import click

from cli.common import client, namespace_option
from minik8s import Client
from minik8s.api import kinds as k
from minik8s.api import printers
from minik8s.controllers.workloads import HASH_LABEL, RESTARTED_AT_ANNOTATION, REVISION_ANNOTATION, iso, now
from minik8s.errors import Conflict, NotFound

ROLLOUT_POLL_S = 0.5
DEFAULT_ROLLOUT_TIMEOUT_S = 600.0
CHANGE_CAUSE = "kubernetes.io/change-cause"
CONFLICT_RETRIES = 5
ROLLOUT_STATUS_KINDS = ("Deployment", "DaemonSet")


def _target(kind_or_ref: str, name: str | None, allowed: tuple[str, ...]) -> tuple[str, str]:
    """`deploy/web` or `deploy web` -> ("Deployment", "web")."""
    if "/" in kind_or_ref:
        if name:
            raise click.UsageError("give TYPE/NAME or TYPE NAME, not both")
        kind_or_ref, name = kind_or_ref.split("/", 1)
    if not name:
        raise click.UsageError("give TYPE/NAME or TYPE NAME, e.g. deploy/web")
    info = k.lookup(kind_or_ref)
    if info.kind not in allowed:
        raise click.UsageError(f"{info.plural} are not supported here: use {' or '.join(allowed)}")
    return info.kind, name


@click.command()
@click.argument("kind_or_ref")
@click.argument("name", required=False)
@click.option("--replicas", type=int, required=True, help="The new number of replicas.")
@namespace_option
def scale(kind_or_ref: str, name: str | None, replicas: int, namespace: str | None) -> None:
    """Set the number of replicas of a Deployment, ReplicaSet or ReplicationController (its scale subresource).

    \b
    Example:
      minik8s scale deploy web --replicas 5
      minik8s scale rs/web-6d4cf56db6 --replicas 0
      minik8s scale rc web --replicas 3
    """
    kind, obj_name = _target(kind_or_ref, name, ("Deployment", "ReplicaSet", "ReplicationController"))
    client().patch(kind, obj_name, {"spec": {"replicas": replicas}}, namespace or "default", subresource="scale")
    click.echo(f"{_qualified(kind)}/{obj_name} scaled")


def _qualified(kind: str) -> str:
    """`deployment.apps`, `replicationcontroller`: how kubectl names a kind in its messages."""
    info = k.lookup(kind)
    return f"{info.singular}.{info.group}" if info.group else info.singular


@click.group()
def rollout() -> None:
    """Manage the rollout of a Deployment: status, undo, restart, history.

    \b
    Example:
      minik8s rollout status deploy/web
    """


def owned_sets(c: Client, name: str, namespace: str) -> list[Any]:
    d = c.get("Deployment", name, namespace)
    sets = [rs for rs in c.list("ReplicaSet", namespace).items
            if any(r.uid == d.metadata.uid and r.controller for r in rs.metadata.ownerReferences or [])]
    return sorted(sets, key=_revision)


def _revision(rs: Any) -> int:
    try:
        return int((rs.metadata.annotations or {}).get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


def undo_deployment(c: Client, name: str, namespace: str, to_revision: int | None) -> int:
    """Put the template of `to_revision` (default: the previous one) back into the Deployment; the revision."""
    for _ in range(CONFLICT_RETRIES):
        sets = owned_sets(c, name, namespace)
        if to_revision:
            source = next((rs for rs in sets if _revision(rs) == to_revision), None)
            if source is None:
                raise NotFound(f"unable to find specified revision {to_revision} in history")
        else:
            if len(sets) < 2:  # noqa: PLR2004 - the current one and a previous one
                raise NotFound(f'no rollout history found for deployment "{name}"')
            source = sets[-2]
        d = c.get("Deployment", name, namespace).to_dict()
        template = source.spec.template.to_dict()
        labels = (template.get("metadata") or {}).get("labels") or {}
        labels.pop(HASH_LABEL, None)
        d["spec"]["template"] = template
        try:
            c.update(d)
        except Conflict:
            continue
        return _revision(source)
    raise Conflict(f'deployment "{name}" keeps changing; try again')


def _kind_name(ref: str, name: str | None) -> str:
    return _target(ref, name, ("Deployment",))[1]


@rollout.command()
@click.argument("kind_or_ref")
@click.argument("name", required=False)
@click.option("--to-revision", type=int, default=None, help="The revision to go back to (default: the previous).")
@namespace_option
def undo(kind_or_ref: str, name: str | None, to_revision: int | None, namespace: str | None) -> None:
    """Roll a Deployment back to its previous revision (or --to-revision).

    \b
    Example:
      minik8s rollout undo deploy/web
      minik8s rollout undo deploy web --to-revision 2
    """
    obj_name = _kind_name(kind_or_ref, name)
    undo_deployment(client(), obj_name, namespace or "default", to_revision)
    click.echo(f"deployment.apps/{obj_name} rolled back")


@rollout.command()
@click.argument("kind_or_ref")
@click.argument("name", required=False)
@namespace_option
def restart(kind_or_ref: str, name: str | None, namespace: str | None) -> None:
    """Replace every pod of a Deployment or DaemonSet by a rolling update (annotates the pod template).

    \b
    Example:
      minik8s rollout restart deploy/web
      minik8s rollout restart ds/agent
    """
    kind, obj_name = _target(kind_or_ref, name, ROLLOUT_STATUS_KINDS)
    patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: iso(now())}}}}}
    client().patch(kind, obj_name, patch, namespace or "default")
    click.echo(f"{_qualified(kind)}/{obj_name} restarted")


@rollout.command()
@click.argument("kind_or_ref")
@click.argument("name", required=False)
@namespace_option
def history(kind_or_ref: str, name: str | None, namespace: str | None) -> None:
    """List a Deployment's revisions.

    \b
    Example:
      minik8s rollout history deploy/web
    """
    obj_name = _kind_name(kind_or_ref, name)
    sets = owned_sets(client(), obj_name, namespace or "default")
    click.echo(f"deployment.apps/{obj_name}")
    rows = [[str(_revision(rs)), (rs.metadata.annotations or {}).get(CHANGE_CAUSE, "<none>")] for rs in sets]
    click.echo(printers.format_table(["REVISION", "CHANGE-CAUSE"], rows))


def daemonset_rollout_message(ds: Any) -> tuple[bool, str]:
    """(done, what kubectl would print) for one look at a DaemonSet."""
    name, s = ds.metadata.name, ds.status
    if ds.spec.updateStrategy.type != "RollingUpdate":
        raise click.ClickException("rollout status is only available for RollingUpdate strategy type")
    if s is None or (s.observedGeneration or 0) < (ds.metadata.generation or 0):
        return False, "Waiting for daemon set spec update to be observed..."
    updated, desired, available = s.updatedNumberScheduled or 0, s.desiredNumberScheduled, s.numberAvailable or 0
    if updated < desired:
        return False, (f'Waiting for daemon set "{name}" rollout to finish: {updated} out of {desired} new pods have '
                       "been updated...")
    if available < desired:
        return False, (f'Waiting for daemon set "{name}" rollout to finish: {available} of {desired} updated pods '
                       "are available...")
    return True, f'daemon set "{name}" successfully rolled out'


def exceeded_progress_deadline(obj: Any) -> bool:
    """The deployment controller gave up on this rollout (Progressing False, ProgressDeadlineExceeded)."""
    conds = (obj.status.conditions if getattr(obj, "status", None) else None) or []
    return any(c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded" for c in conds)


def rollout_message(d: Any) -> tuple[bool, str]:
    """(done, what kubectl would print) for one look at a Deployment."""
    name, spec, s = d.metadata.name, d.spec, d.status
    if s is None or (s.observedGeneration or 0) < (d.metadata.generation or 0):
        return False, "Waiting for deployment spec update to be observed..."
    updated, replicas = s.updatedReplicas or 0, s.replicas or 0
    available = s.availableReplicas or 0
    if updated < spec.replicas:
        return False, (f'Waiting for deployment "{name}" rollout to finish: {updated} out of {spec.replicas} new '
                       "replicas have been updated...")
    if replicas > updated:
        return False, (f'Waiting for deployment "{name}" rollout to finish: {replicas - updated} old replicas are '
                       "pending termination...")
    if available < updated:
        return False, (f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} updated '
                       "replicas are available...")
    return True, f'deployment "{name}" successfully rolled out'


@rollout.command()
@click.argument("kind_or_ref")
@click.argument("name", required=False)
@click.option("--timeout", type=float, default=DEFAULT_ROLLOUT_TIMEOUT_S, show_default=True,
              help="Seconds to wait before giving up (exit code 1).")
@click.option("-w", "--watch/--no-watch", default=True, help="Wait for the rollout to finish.")
@namespace_option
def status(kind_or_ref: str, name: str | None, timeout: float, watch: bool, namespace: str | None) -> None:
    """Wait until a Deployment's or DaemonSet's rollout is complete: all pods updated and available.

    \b
    Example:
      minik8s rollout status deploy/web --timeout 120
      minik8s rollout status ds/agent
    """
    kind, obj_name = _target(kind_or_ref, name, ROLLOUT_STATUS_KINDS)
    look = daemonset_rollout_message if kind == "DaemonSet" else rollout_message
    c = client()
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        obj = c.get(kind, obj_name, namespace or "default")
        done, message = look(obj)
        if message != last:
            click.echo(message)
            last = message
        if done:
            return
        if kind == "Deployment" and exceeded_progress_deadline(obj):  # as kubectl: a failed rollout, not a wait
            click.echo(f'error: deployment "{obj_name}" exceeded its progress deadline', err=True)
            raise SystemExit(1)
        if not watch:
            raise SystemExit(1)
        if time.monotonic() > deadline:
            click.echo(f'error: timed out waiting for the condition: {kind.lower()} "{obj_name}" rollout did not '
                       f"finish in {timeout:g}s", err=True)
            raise SystemExit(1)
        time.sleep(ROLLOUT_POLL_S)


COMMANDS = [scale, rollout]
