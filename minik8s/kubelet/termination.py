"""Termination messages: what a container leaves at ``terminationMessagePath`` when it ends.

Each container instance gets its own empty host file (``<pods_dir>/<uid>/containers/<name>/<restart>``),
bind-mounted at its ``terminationMessagePath``; the file's host path and the policy ride on the container's
labels, so the message is read from the Docker container alone. With ``FallbackToLogsOnError`` an empty file
after a failed run gives way to the tail of the container's log, as in Kubernetes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from minik8s.api.types import Container

log = logging.getLogger(__name__)

DEFAULT_PATH = "/dev/termination-log"
POLICY_FILE = "File"
POLICY_FALLBACK_TO_LOGS = "FallbackToLogsOnError"
#: Host file of one container instance's termination message.
FILE_LABEL = "io.minik8s.container.terminationMessageFile"
POLICY_LABEL = "io.kubernetes.container.terminationMessagePolicy"
POD_DIR_CONTAINERS = "containers"
#: Kubernetes' MaxContainerTerminationMessageLength: the file's last 4 KiB are the message.
MAX_MESSAGE_BYTES = 4096
#: Kubernetes' MaxContainerTerminationMessageLogLines / ...LogLength for the logs fallback.
MAX_LOG_LINES = 80
MAX_LOG_BYTES = 2048
#: Instances whose files are kept per container: the current one and the previous (lastState).
KEEP_FILES = 2
#: The file is written by whatever user the container runs as.
FILE_MODE = 0o666
#: Messages of exited containers remembered (they never change), so status does not re-read logs each sync.
CACHE_SIZE = 4096


def prepare(pods_dir: Path, uid: str, spec: Container, restart_count: int) -> tuple[str, dict[str, str]]:
    """Create the instance's empty message file; returns its Docker bind and the labels that find it again.

    Files of instances older than the previous one are removed (their containers are pruned too).
    """
    directory = pods_dir / uid / POD_DIR_CONTAINERS / spec.name
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        if old.name.isdigit() and int(old.name) <= restart_count - KEEP_FILES:
            old.unlink(missing_ok=True)
    host = directory / str(restart_count)
    host.write_bytes(b"")
    os.chmod(host, FILE_MODE)
    labels = {FILE_LABEL: str(host), POLICY_LABEL: spec.terminationMessagePolicy or POLICY_FILE}
    return f"{host}:{spec.terminationMessagePath or DEFAULT_PATH}:rw", labels


def read_tail(path: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """The last ``limit`` bytes of the file ("" when it is gone), as text."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - limit))
            return f.read(limit).decode(errors="replace")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"Error on reading termination log {path}: {exc}"


def log_tail(raw: bytes) -> str:
    """The logs fallback from the log's last ``MAX_LOG_LINES`` lines: their first ``MAX_LOG_BYTES`` bytes
    (Kubernetes reads the tail with a byte limit, which keeps the start of that tail)."""
    lines = raw.splitlines(keepends=True)[-MAX_LOG_LINES:]
    return b"".join(lines)[:MAX_LOG_BYTES].decode(errors="replace")


def message(labels: dict[str, str], exit_code: int, read_logs: Callable[[], bytes]) -> str:
    """The termination message of an exited container, per its file and policy."""
    path = labels.get(FILE_LABEL)
    text = read_tail(path) if path else ""
    if text or labels.get(POLICY_LABEL) != POLICY_FALLBACK_TO_LOGS or exit_code == 0:
        return text
    return log_tail(read_logs())


class MessageCache:
    """Termination messages by container id, bounded (the oldest go first); safe across threads."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._messages: dict[str, str] = {}

    def get(self, container_id: str, compute: Callable[[], str]) -> str:
        with self._lock:
            found = self._messages.get(container_id)
        if found is not None:
            return found
        text = compute()
        with self._lock:
            if len(self._messages) >= self.size:
                del self._messages[next(iter(self._messages))]
            self._messages[container_id] = text
        return text


_cache = MessageCache()


def exited_message(container_id: str, labels: dict[str, str], exit_code: int,
                   read_logs: Callable[[], bytes]) -> str:
    """``message`` for an exited container, read once per container (an exited container never changes)."""
    if FILE_LABEL not in labels:
        return ""  # created before termination messages were kept: nothing to read
    return _cache.get(container_id, lambda: message(labels, exit_code, read_logs))
