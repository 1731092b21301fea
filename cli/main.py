"""`minik8s`: the entry point. Errors become one line on stderr and exit code 1."""

from __future__ import annotations

import logging
import os
from typing import Any

import click

from cli.manifests import ManifestError
from minik8s.errors import MiniK8sError
from minik8s.images import ImageError


class Minik8sGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
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


def _register() -> None:
    from cli import autoscaling, cluster, images, pods, portforward, resources, workloads

    for module in (resources, pods, cluster, images, workloads, autoscaling, portforward):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cli(prog_name="minik8s")


if __name__ == "__main__":
    main()
