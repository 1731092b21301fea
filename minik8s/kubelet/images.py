"""Image pulls on a small thread pool, so one slow or failing pull never stalls other pods.

``ImagePuller.check(image)`` never blocks on a pull: it answers "present", starts a pull
in the background and answers "pulling", or reports the last failure while the retry is
backed off. When a pull finishes, ``on_done(image)`` lets the kubelet requeue its pods.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum

import docker
import docker.errors

from minik8s.images import ImageError
from minik8s.kubelet.backoff import Backoff

log = logging.getLogger(__name__)

DEFAULT_PULL_WORKERS = 2
HOW_TO_PROVIDE = (
    "build it with `minik8s image build -t {image} DIR` or push it with `minik8s image push {image}`"
)

PullFn = Callable[[str], None]


class PullState(Enum):
    PRESENT = "present"
    PULLING = "pulling"
    FAILED = "failed"  # the last pull failed and the retry is backed off
    NEVER = "never"  # imagePullPolicy Never and not present


@dataclass
class PullResult:
    state: PullState
    message: str = ""
    #: seconds until the next pull attempt may start (FAILED only)
    retry_in: float = 0.0
    #: when the reported failure happened (FAILED only), to tell ErrImagePull from ImagePullBackOff
    failed_at: float = 0.0


def missing_image_message(image: str, node: str, detail: str) -> str:
    return f'image "{image}" is not available on node {node} ({detail}); ' + HOW_TO_PROVIDE.format(
        image=image
    )


class ImagePuller:
    def __init__(
        self,
        docker_client: docker.DockerClient,
        node_name: str,
        backoff: Backoff,
        pull_fn: PullFn | None = None,
        workers: int = DEFAULT_PULL_WORKERS,
        on_done: Callable[[str], None] | None = None,
    ) -> None:
        self._docker = docker_client
        self._node = node_name
        self._backoff = backoff
        self._pull_fn: PullFn = pull_fn or self._docker_pull
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image-pull")
        self._lock = threading.Lock()
        self._inflight: set[str] = set()
        self._failures: dict[str, tuple[float, str]] = {}  # image -> (failed at, message)
        self.on_done = on_done

    def _docker_pull(self, image: str) -> None:
        self._docker.images.pull(image)

    def present(self, image: str) -> bool:
        try:
            self._docker.images.get(image)
            return True
        except docker.errors.ImageNotFound:
            return False

    def check(self, image: str, policy: str | None = None) -> PullResult:
        """Non-blocking: is ``image`` ready to run? Starts a background pull when needed.

        ``Always`` is treated like ``IfNotPresent``: images reach nodes through the cluster
        registry, and re-pulling on every container start would only add latency here.
        """
        if self.present(image):
            return PullResult(PullState.PRESENT)
        if policy == "Never":
            return PullResult(
                PullState.NEVER,
                missing_image_message(image, self._node, "imagePullPolicy is Never and it is not present"),
            )
        with self._lock:
            if image in self._inflight:
                return PullResult(PullState.PULLING)
            failure = self._failures.get(image)
            if failure is not None:
                retry_in = self._backoff.remaining(image, failure[0], 0.0)
                if retry_in > 0:
                    return PullResult(PullState.FAILED, failure[1], retry_in, failure[0])
            self._inflight.add(image)
        self._pool.submit(self._pull, image)
        return PullResult(PullState.PULLING)

    def last_failure(self, image: str) -> str | None:
        with self._lock:
            failure = self._failures.get(image)
        return failure[1] if failure else None

    def _pull(self, image: str) -> None:
        log.info("pulling image", extra={"image": image, "node": self._node})
        try:
            self._pull_fn(image)
        except Exception as exc:  # any pull failure is reported on the pod, then retried with back-off
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if isinstance(exc, ImageError):  # the images package already wrote the user-facing message
                message = detail
            else:
                message = missing_image_message(image, self._node, f"pull failed: {detail}")
            log.warning("image pull failed", extra={"image": image, "error": detail})
            with self._lock:
                self._failures[image] = (self._backoff.clock.now(), message)
                self._inflight.discard(image)
            self._backoff.restarted(image)
        else:
            log.info("pulled image", extra={"image": image})
            with self._lock:
                self._failures.pop(image, None)
                self._inflight.discard(image)
            self._backoff.reset(image)
        if self.on_done is not None:
            try:
                self.on_done(image)
            except Exception:
                log.exception("image pull callback failed", extra={"image": image})

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
