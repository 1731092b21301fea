"""image build | push | ls: user images in the cluster registry, pulled by every node."""

from __future__ import annotations

from pathlib import Path

import click
import docker

from minik8s.cluster.config import ClusterConfig
from minik8s.images.user import build_image, list_images, push_image


def _builder(cfg: ClusterConfig) -> docker.DockerClient:
    return docker.DockerClient(base_url=f"unix://{cfg.builder_socket}")


@click.group()
def image() -> None:
    """Build, push and list images in the cluster registry."""


@image.command()
@click.option("-t", "--tag", required=True, help="Image name, e.g. myapp:v1.")
@click.argument("context", type=click.Path(exists=True, file_okay=False, path_type=Path))
def build(tag: str, context: Path) -> None:
    """Build CONTEXT/Dockerfile (FROM busybox, python:3.11, nginx, or your images) and push it.

    \b
    Example:
      minik8s image build -t hello:v1 examples/hello-image
    """
    cfg = ClusterConfig()
    builder = _builder(cfg)
    build_image(builder, context, tag, cfg.registry_addr)
    ref = push_image(builder, tag, cfg.registry_addr)
    click.echo(f"built and pushed {tag} ({ref})")


@image.command()
@click.argument("name")
def push(name: str) -> None:
    """Push an image from the image builder into the cluster registry.

    \b
    Example:
      minik8s image push hello:v1
    """
    cfg = ClusterConfig()
    ref = push_image(_builder(cfg), name, cfg.registry_addr)
    click.echo(f"pushed {name} ({ref})")


@image.command(name="ls")
def ls() -> None:
    """List the images in the cluster registry.

    \b
    Example:
      minik8s image ls
    """
    cfg = ClusterConfig()
    rows = [(name, ",".join(sorted(tags))) for name, tags in list_images(cfg.registry_addr)]
    width = max([len("IMAGE"), *(len(r[0]) for r in rows)])
    click.echo(f"{'IMAGE':<{width}}   TAGS")
    for name, tags in rows:
        click.echo(f"{name:<{width}}   {tags}")


COMMANDS = [image]
