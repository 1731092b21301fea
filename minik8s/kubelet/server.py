"""The kubelet's HTTP server (Kubernetes' port 10250 shape): container logs, exec, attach, healthz.

The API server proxies ``pods/{name}/log`` and ``pods/{name}/exec`` here. Every route but
``/healthz`` needs ``Authorization: Bearer <token>``. Handlers are plain ``def`` (Starlette
runs them, and the streamed log iterator, in its thread pool), so Docker's blocking calls
never run on the event loop thread.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Iterator
from typing import Protocol

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from minik8s.errors import MiniK8sError
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


def make_app(pods: PodIO, token: str) -> FastAPI:
    app = FastAPI(title="minik8s kubelet", docs_url=None, redoc_url=None, openapi_url=None)

    def authorized(header: str) -> bool:
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())

    def authorize(request: Request) -> None:
        if not authorized(request.headers.get("authorization", "")):
            raise HTTPException(status_code=401, detail="Unauthorized")

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

    streams.register(app, pods, authorized)  # WebSocket exec and attach (kubectl's protocol)
    portforward.register(app, pods, token)  # WebSocket /portForward/{namespace}/{pod}?port=N
    return app


class KubeletServer:
    """uvicorn in a daemon thread; ``start`` returns once it listens, ``stop`` waits for it to end."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
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
