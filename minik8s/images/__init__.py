"""Container images for minik8s: base images, the cluster registry, user images.

This package owns:

- ``base``: building the base images users write by plain name (``busybox``,
  ``python:3.11`` / ``python:3`` / ``python``, ``nginx``) and the pod sandbox image
  (``PAUSE_IMAGE``) with no network beyond the Debian mirror, and pushing them into the
  cluster registry as ``REGISTRY/library/NAME:TAG`` (``ensure_base_images``, idempotent).
- ``registry``: the registry's HTTP API (catalog, tags, manifest exists), image
  reference parsing, and how a node gets an image (``resolve_image``, ``pull_image``,
  ``ensure_image``).
- ``user``: ``minik8s image build|push|ls`` (``build_image``, ``push_image``,
  ``list_images``).
- ``daemons``: argv and config files for the registry and the builder ``dockerd``,
  which the cluster code runs as managed processes.

Every failure a user can cause (missing base image, bad Dockerfile, unreachable
registry, missing image on pull) is raised as ``ImageError`` with a one-line message.
"""

from __future__ import annotations


class ImageError(Exception):
    """An image could not be built, pushed, listed or pulled; the message is one line for users."""


__all__ = ["ImageError"]
