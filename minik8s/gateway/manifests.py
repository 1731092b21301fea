"""The gateway's data plane in `kube-system`: a Deployment (nginx + config sidecar) and its Service.

No kubelet feature beyond emptyDir is needed: the sidecar (python:3.11) long-polls the gateway
controller and writes nginx.conf atomically (write, then rename) into an emptyDir both
containers mount; the nginx container's shell loop notices the new checksum, checks the file
with `nginx -t` and runs `nginx -s reload` (graceful: old workers finish their requests). The
two containers share the network namespace but not the PID namespace, hence the file.
A config nginx rejects is logged and the running one kept.
"""

from __future__ import annotations

import logging
from typing import Any

from minik8s.api.networking import default_class_object
from minik8s.client import Client
from minik8s.errors import AlreadyExists

log = logging.getLogger("minik8s.gateway")

NAMESPACE = "kube-system"
NAME = "gateway"
REPLICAS = 2
HTTP_PORT = 80
CONFIG_DIR = "/etc/gateway"
CONFIG_FILE = f"{CONFIG_DIR}/nginx.conf"
NGINX_IMAGE = "nginx"
SIDECAR_IMAGE = "python:3.11"
LABELS = {"app": NAME, "minik8s.io/component": "gateway"}

#: the nginx container's PID 1: start nginx once a config exists, then reload it whenever the file changes
NGINX_LOOP = f"""
conf={CONFIG_FILE}
pid=/run/nginx.pid
trap 'nginx -c "$conf" -s quit; exit 0' TERM QUIT INT
while [ ! -s "$conf" ]; do sleep 0.5; done
nginx -c "$conf" || exit 1
sum=$(cksum < "$conf")
while sleep 1; do
  if [ ! -f "$pid" ] || ! kill -0 "$(cat "$pid")" 2>/dev/null; then echo "nginx exited" >&2; exit 1; fi
  new=$(cksum < "$conf")
  [ "$new" = "$sum" ] && continue
  sum=$new
  if nginx -t -q -c "$conf"; then nginx -c "$conf" -s reload && echo "gateway: reloaded nginx"
  else echo "gateway: nginx rejected the new config, keeping the running one" >&2; fi
done
"""

#: the sidecar: long-poll the controller, write each new config atomically
SIDECAR = f"""
import os, sys, time, urllib.error, urllib.request
url, out = os.environ["GATEWAY_CONFIG_URL"], os.environ.get("GATEWAY_CONFIG_FILE", "{CONFIG_FILE}")
version, delay = "", 1.0
while True:
    try:
        with urllib.request.urlopen(f"{{url}}?version={{version}}&timeout=30", timeout=60) as resp:
            body = resp.read()
            tmp = out + ".tmp"
            with open(tmp, "wb") as f:
                f.write(body)
            os.replace(tmp, out)
            version = resp.headers.get("X-Gateway-Version", "")
            print("gateway config", version, flush=True)
        delay = 1.0
    except urllib.error.HTTPError as exc:
        if exc.code != 304:
            print("gateway config: HTTP", exc.code, file=sys.stderr, flush=True)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
    except Exception as exc:
        print("gateway config:", exc, file=sys.stderr, flush=True)
        time.sleep(delay)
        delay = min(delay * 2, 30.0)
"""


def deployment(config_url: str, replicas: int = REPLICAS) -> dict[str, Any]:
    mount = [{"name": "config", "mountPath": CONFIG_DIR}]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "volumes": [{"name": "config", "emptyDir": {}}],
                    "containers": [
                        {"name": "nginx", "image": NGINX_IMAGE, "command": ["sh", "-c", NGINX_LOOP],
                         "ports": [{"name": "http", "containerPort": HTTP_PORT}], "volumeMounts": mount,
                         "readinessProbe": {"tcpSocket": {"port": HTTP_PORT}, "periodSeconds": 2}},
                        {"name": "config", "image": SIDECAR_IMAGE, "command": ["python3", "-u", "-c", SIDECAR],
                         "env": [{"name": "GATEWAY_CONFIG_URL", "value": config_url},
                                 {"name": "GATEWAY_CONFIG_FILE", "value": CONFIG_FILE}],
                         "volumeMounts": mount},
                    ],
                },
            },
        },
    }


def service() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)},
            "spec": {"type": "ClusterIP", "selector": {"app": NAME},
                     "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": HTTP_PORT, "protocol": "TCP"}]}}


def ensure_gateway(client: Client, config_url: str, replicas: int = REPLICAS) -> list[str]:
    """Create the gateway Deployment and Service when missing; existing ones (maybe scaled) are left alone."""
    created = []
    for obj in (service(), deployment(config_url, replicas)):
        try:
            client.create(obj)
            created.append(f"{obj['kind']} {NAMESPACE}/{NAME}")
        except AlreadyExists:
            continue
    if created:
        log.info("gateway objects created", extra={"objects": created})
    return created


def ensure_ingress_class(client: Client) -> bool:
    """Create the default IngressClass `minik8s` (controller minik8s.io/gateway) when missing; True if created.

    An existing one is left alone: a user who removed its default-class annotation meant it."""
    try:
        client.create(default_class_object())
    except AlreadyExists:
        return False
    log.info("default IngressClass created")
    return True


ENSURE_RETRY_S = 2.0
ENSURE_ATTEMPTS = 150


def ensure_gateway_when_ready(client: Client, config_url: str, replicas: int = REPLICAS) -> None:
    """`ensure_gateway` and `ensure_ingress_class`, retried while the API server is not answering yet
    (the control plane is starting)."""
    import time

    from minik8s.errors import MiniK8sError

    for _ in range(ENSURE_ATTEMPTS):
        try:
            ensure_gateway(client, config_url, replicas)
            ensure_ingress_class(client)
            return
        except MiniK8sError as exc:
            log.info("gateway objects not ensured yet, retrying", extra={"error": exc.message})
            time.sleep(ENSURE_RETRY_S)
    log.error("gave up ensuring the gateway Deployment and Service")
