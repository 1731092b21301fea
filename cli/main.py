"""`minik8s`: the entry point. Errors become one line on stderr and exit code 1.

Verb modules load lazily: `minik8s get pods` imports only `cli.resources` and what it needs,
never Ray, Docker or pyroute2 (those belong to `up`, `join`, `status`, `down`, `image`).
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

import click

from minik8s.errors import MiniK8sError
from minik8s.images import ImageError

#: The modules whose `COMMANDS` make the verbs; a module added here works at once.
COMMAND_MODULES = ("cli.resources", "cli.pods", "cli.cluster", "cli.images", "cli.workloads", "cli.autoscaling",
                   "cli.metadata", "cli.wait", "cli.copy", "cli.portforward", "cli.audit",
                   "cli.auth")
#: Which module holds a verb, so that running one imports only its module. A verb missing here
#: is still found (by loading every module), only more slowly.
VERB_MODULES = {
    "apply": "cli.resources", "get": "cli.resources", "describe": "cli.resources", "delete": "cli.resources",
    "logs": "cli.pods", "exec": "cli.pods", "attach": "cli.pods", "cp": "cli.copy", "port-forward": "cli.portforward",
    "up": "cli.cluster", "down": "cli.cluster", "status": "cli.cluster", "kubeconfig": "cli.cluster",
    "token": "cli.cluster", "join": "cli.cluster", "leave": "cli.cluster", "node": "cli.cluster",
    "image": "cli.images", "scale": "cli.workloads", "rollout": "cli.workloads", "top": "cli.autoscaling",
    "label": "cli.metadata", "annotate": "cli.metadata", "wait": "cli.wait", "audit": "cli.audit", "auth": "cli.auth",
}


def _module_commands(module: str) -> dict[str, click.Command]:
    commands: list[click.Command] = importlib.import_module(module).COMMANDS
    return {c.name: c for c in commands if c.name}


class Minik8sGroup(click.Group):
    """A group that imports a verb's module only when that verb runs (or when help lists them all)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        for module in COMMAND_MODULES:
            names.update(_module_commands(module))
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        module = VERB_MODULES.get(cmd_name)
        if module is not None and cmd_name in (found := _module_commands(module)):
            return found[cmd_name]
        for module in COMMAND_MODULES:
            found = _module_commands(module)
            if cmd_name in found:
                return found[cmd_name]
        return None

    def invoke(self, ctx: click.Context) -> Any:
        # cli.manifests is imported here, not at the top, because it pulls the kinds table
        from cli.manifests import ManifestError

        try:
            return super().invoke(ctx)
        except (MiniK8sError, ManifestError, ImageError) as exc:
            message = exc.message if isinstance(exc, MiniK8sError) else str(exc)
            click.echo(f"error: {message}", err=True)
            ctx.exit(1)


@click.group(cls=Minik8sGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log what the command does.")
def cli(verbose: bool) -> None:
    """minik8s: a small, real container orchestrator.

    \b
    Example:
      minik8s up && minik8s apply -f examples/two-containers.yaml && minik8s get pods
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


def main() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cli(prog_name="minik8s")


if __name__ == "__main__":
    main()
