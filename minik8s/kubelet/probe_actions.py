"""The three probe actions of Kubernetes: ``httpGet``, ``tcpSocket`` and ``exec``, each bounded by a timeout.

httpGet and tcpSocket connect from the calling thread's network namespace (the kubelet runs in the
node's, where pod IPs are reachable); exec runs the command in the container through ``docker exec``.
Each action returns ``(ok, message)`` and never raises for probe-level failures.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
from docker.utils.socket import frames_iter

from minik8s.api.types import Container, Probe

#: Kubernetes sends this User-Agent (with its version) unless the probe sets one.
USER_AGENT = "kube-probe/minik8s"
#: Body bytes read from an HTTP probe response (Kubernetes reads up to 10 KiB).
MAX_BODY_BYTES = 10 * 1024
#: Output bytes of a failed exec probe kept for the event message.
MAX_EXEC_OUTPUT = 1024
#: How often ``docker exec inspect`` is asked whether a finished exec has its exit code yet.
EXEC_INSPECT_POLL_SECONDS = 0.02
HTTP_SUCCESS = range(200, 400)


@dataclass(frozen=True)
class ProbeTarget:
    """Where a probe goes: the pod's IP, the probed container's id and spec."""

    pod_ip: str | None
    container_id: str
    container: Container


def resolve_port(port: int | str, container: Container) -> int:
    """A probe port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    for p in container.ports or []:
        if p.name == port:
            return p.containerPort
    raise ValueError(f"port {port!r} not found in container {container.name}")


def _endpoint(host: str | None, port: int | str, target: ProbeTarget) -> tuple[str, int] | str:
    """The (host, port) a network probe connects to, or why there is none."""
    host = host or target.pod_ip
    if not host:
        return "pod has no IP address"
    try:
        return host, resolve_port(port, target.container)
    except ValueError as exc:
        return str(exc)


def http_get(probe: Probe, target: ProbeTarget, timeout: float) -> tuple[bool, str]:
    action = probe.httpGet
    assert action is not None
    where = _endpoint(action.host, action.port, target)
    if isinstance(where, str):
        return False, where
    host, port = where
    path = action.path or "/"
    if not path.startswith("/"):
        path = "/" + path
    scheme = (action.scheme or "HTTP").lower()
    url = f"{scheme}://{host}:{port}{path}"
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
    for h in action.httpHeaders or []:
        headers[h.name] = h.value
    conn: http.client.HTTPConnection
    if scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # Kubernetes does not verify probe certificates either
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read(MAX_BODY_BYTES)
        code = resp.status
    except (OSError, http.client.HTTPException) as exc:
        return False, f'Get "{url}": {_describe(exc)}'
    finally:
        conn.close()
    if code in HTTP_SUCCESS:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {code}"


def tcp_socket(probe: Probe, target: ProbeTarget, timeout: float) -> tuple[bool, str]:
    action = probe.tcpSocket
    assert action is not None
    where = _endpoint(action.host, action.port, target)
    if isinstance(where, str):
        return False, where
    host, port = where
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return False, f"dial tcp {host}:{port}: {_describe(exc)}"
    return True, ""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "i/o timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connect: connection refused"
    return str(exc) or type(exc).__name__


class DockerExec:
    """Runs exec probes with ``docker exec``; the timeout bounds reading the output, not the command."""

    def __init__(self, docker_client: docker.DockerClient) -> None:
        self.api: Any = docker_client.api

    def __call__(self, probe: Probe, target: ProbeTarget, timeout: float) -> tuple[bool, str]:
        action = probe.exec
        assert action is not None
        cmd = list(action.command or [])
        if not cmd:
            return False, "exec probe has no command"
        deadline = time.monotonic() + timeout
        try:
            exec_id = self.api.exec_create(target.container_id, cmd, stdout=True, stderr=True)["Id"]
            sock = self.api.exec_start(exec_id, socket=True)
        except docker.errors.APIError as exc:
            return False, f"exec failed: {exc}"
        raw = getattr(sock, "_sock", sock)
        try:
            raw.settimeout(max(0.001, deadline - time.monotonic()))
            output = b"".join(data for _, data in frames_iter(sock, tty=False))
        except TimeoutError:
            return False, f"command {cmd!r} timed out after {timeout:g}s"
        except OSError as exc:
            return False, f"exec failed: {exc}"
        finally:
            sock.close()
        code = self._exit_code(exec_id, deadline)
        if code == 0:
            return True, ""
        text = bytes(output)[:MAX_EXEC_OUTPUT].decode(errors="replace").strip()
        if code is None:
            return False, f"command {cmd!r} timed out after {timeout:g}s"
        return False, text or f"command {cmd!r} exited with {code}"

    def _exit_code(self, exec_id: str, deadline: float) -> int | None:
        """The exit code; the output stream may end a moment before dockerd records it."""
        while True:
            try:
                info = self.api.exec_inspect(exec_id)
            except docker.errors.APIError:
                return None
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            if time.monotonic() > deadline:
                return None
            time.sleep(EXEC_INSPECT_POLL_SECONDS)


class ProbeActions:
    """The real :class:`minik8s.kubelet.probes.ProbeRunner`: dispatches on the probe's handler."""

    def __init__(self, docker_client: docker.DockerClient) -> None:
        self.exec = DockerExec(docker_client)

    def run(self, probe: Probe, target: ProbeTarget, timeout: float) -> tuple[bool, str]:
        if probe.exec is not None:
            return self.exec(probe, target, timeout)
        if probe.httpGet is not None:
            return http_get(probe, target, timeout)
        if probe.tcpSocket is not None:
            return tcp_socket(probe, target, timeout)
        return False, "probe has no handler (exec, httpGet or tcpSocket)"
