"""The kubelet's HTTPS server (Kubernetes' port 10250 shape): container logs, exec, attach, port-forward.

The API server proxies ``pods/{name}/log``, ``exec``, ``attach`` and ``portforward`` here. The server
presents a serving certificate from the cluster CA (its names: the node's IP and name) and asks each
client for a certificate from the same CA; every route but ``/healthz`` answers only the API server's
client identity (``system:apiserver-kubelet-client``): no certificate is 401, another one (a node, an
admin, a pod with a ServiceAccount) is 403. Bearer tokens are not accepted at all. Handlers are plain
``def`` (Starlette runs them, and the streamed log iterator, in its thread pool), so Docker's blocking
calls never run on the event loop thread.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any, Protocol

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from minik8s.auth import x509
from minik8s.auth.user import APISERVER_KUBELET_CLIENT
from minik8s.errors import Forbidden, MiniK8sError, Unauthorized
from minik8s.kubelet import portforward, streams

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_SECONDS = 10.0
STARTUP_POLL_SECONDS = 0.05
SHUTDOWN_TIMEOUT_SECONDS = 5.0


class PodIO(streams.Containers, Protocol):
    def logs(
        self,
        namespace: str,
        pod: str,
        container: str,
        follow: bool = False,
        tail_lines: int | None = None,
        previous: bool = False,
    ) -> Iterator[bytes]: ...

    def exec(self, namespace: str, pod: str, container: str, cmd: list[str]) -> tuple[int, bytes]: ...

    def sandbox_pid(self, namespace: str, pod: str) -> int: ...


class ExecRequest(BaseModel):
    command: list[str]


class ClientCheck:
    """Who may use the kubelet API: the verified client certificate naming one of `allowed` users."""

    def __init__(self, allowed: tuple[str, ...] = (APISERVER_KUBELET_CLIENT,)) -> None:
        self.allowed = allowed

    def __call__(self, scope: MutableMapping[str, Any]) -> MiniK8sError | None:
        """None when the peer may; else the 401/403 to answer."""
        user = x509.user_of_scope(scope)
        if user is None:
            return Unauthorized("Unauthorized: the kubelet API needs the API server's client certificate")
        if user.name not in self.allowed:
            return Forbidden(f'Forbidden: user "{user.name}" may not use the kubelet API')
        return None


def make_app(pods: PodIO, check: ClientCheck | None = None) -> FastAPI:
    app = FastAPI(title="minik8s kubelet", docs_url=None, redoc_url=None, openapi_url=None)
    check = check or ClientCheck()

    def authorize(request: Request) -> None:
        refused = check(request.scope)
        if refused is not None:
            raise refused  # answered as a Status by the handler below

    @app.exception_handler(MiniK8sError)
    def _status(request: Request, exc: MiniK8sError) -> JSONResponse:
        return JSONResponse(exc.to_status(), status_code=exc.code)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/containerLogs/{namespace}/{pod}/{container}", dependencies=[Depends(authorize)])
    def container_logs(
        namespace: str,
        pod: str,
        container: str,
        follow: bool = False,
        tailLines: int | None = None,
        previous: bool = False,
    ) -> StreamingResponse:  # noqa: N803
        stream = pods.logs(namespace, pod, container, follow=follow, tail_lines=tailLines, previous=previous)
        return StreamingResponse(stream, media_type="text/plain")

    @app.post("/exec/{namespace}/{pod}/{container}", dependencies=[Depends(authorize)])
    def exec_in(namespace: str, pod: str, container: str, body: ExecRequest) -> dict[str, object]:
        code, output = pods.exec(namespace, pod, container, body.command)
        return {"exitCode": code, "output": output.decode(errors="replace")}

    streams.register(app, pods, check)  # WebSocket exec and attach (kubectl's protocol)
    portforward.register(app, pods, check)  # WebSocket /portForward/{namespace}/{pod}?port=N
    return app


class KubeletServer:
    """uvicorn in a daemon thread; ``start`` returns once it listens, ``stop`` waits for it to end."""

    def __init__(self, app: FastAPI, host: str, port: int, tls_cert: str | None = None,
                 tls_key: str | None = None, client_ca: str | None = None) -> None:
        """Serve HTTPS with `tls_cert`/`tls_key`, asking clients for a certificate from `client_ca`
        (without them the server speaks plain HTTP, and every route but /healthz answers 401)."""
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                           http=x509.PeerCertHttpProtocol, ws=x509.PeerCertWebSocketProtocol,
                           ssl_certfile=tls_cert, ssl_keyfile=tls_key, ssl_ca_certs=client_ca,
                           ssl_cert_reqs=ssl.CERT_OPTIONAL if client_ca else ssl.CERT_NONE)
        )
        self._thread: threading.Thread | None = None
        self.host, self.port = host, port

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.run, name="kubelet-server", daemon=True)
        self._thread.start()
        waited = 0.0
        while not self._server.started and self._thread.is_alive() and waited < STARTUP_TIMEOUT_SECONDS:
            threading.Event().wait(STARTUP_POLL_SECONDS)
            waited += STARTUP_POLL_SECONDS
        if not self._server.started:
            raise RuntimeError(f"kubelet server did not start on {self.host}:{self.port}")
        log.info("kubelet server listening", extra={"host": self.host, "port": self.port})

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(SHUTDOWN_TIMEOUT_SECONDS)
