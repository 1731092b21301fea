"""What mutual TLS costs the API server's calls to a kubelet: one new connection and one request, as each
`logs`, `exec` and forwarded port-forward connection makes, over plain HTTP versus TLS with the API
server's client certificate checked by the kubelet. No cluster needed (run as any user):

    .venv/bin/python benchmarks/kubelet_tls.py [--runs 300]

Both servers are the kubelet's own (`minik8s.kubelet.server`: uvicorn, the same app) on loopback, in
this process; the client is httpx, as the API server's log proxy. Interleaved in one run; prints
p50/p90 per request of each and the p50 ratio (TLS / plain). Also the CPU of the API server's
authorization step per request (request attributes and the authorizer union) for a non-node user.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from benchmarks import smoke  # noqa: E402
from minik8s.auth import x509  # noqa: E402
from minik8s.auth.authz import request_attributes  # noqa: E402
from minik8s.auth.node import NodeAuthorizer  # noqa: E402
from minik8s.auth.user import ADMIN, SYSTEM_MASTERS, UserInfo  # noqa: E402
from minik8s.kubelet.server import KubeletServer, make_app  # noqa: E402
from minik8s.pki import SERVER_AUTH, ensure_pki, issue  # noqa: E402
from tests.conftest import free_port  # noqa: E402


class _Pods:
    def logs(self, namespace: str, pod: str, container: str, **_: object) -> Iterator[bytes]:
        yield b"ok\n"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def one(url: str, verify: object) -> float:
    start = time.perf_counter()
    with httpx.Client(verify=verify) as c:  # type: ignore[arg-type]
        c.get(url).raise_for_status()
    return time.perf_counter() - start


def authz_cpu_us(runs: int) -> float:
    admin = UserInfo(ADMIN, (SYSTEM_MASTERS,))
    authorizer = NodeAuthorizer(index=None)  # type: ignore[arg-type]  # never read for a non-node user
    start = time.process_time()
    for _ in range(runs):
        authorizer.authorize(request_attributes(admin, "GET", "/api/v1/namespaces/default/pods/web", "watch=false"))
    return (time.process_time() - start) / runs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300)
    args = smoke.parse(parser, runs=20)
    with tempfile.TemporaryDirectory() as tmp:
        pki = ensure_pki(Path(tmp), ["127.0.0.1"], ["localhost"])
        issue(pki, Path(tmp) / "k.key", Path(tmp) / "k.crt", "system:node:bench", ["system:nodes"], SERVER_AUTH,
              ["IP:127.0.0.1"])
        app = make_app(_Pods())  # type: ignore[arg-type]
        plain_port, tls_port = free_port(), free_port()
        servers = [KubeletServer(app, "127.0.0.1", plain_port),
                   KubeletServer(app, "127.0.0.1", tls_port, str(Path(tmp) / "k.crt"), str(Path(tmp) / "k.key"),
                                 str(pki.ca_cert))]
        for s in servers:
            s.start()
        tls = x509.client_context(pki.ca_pem(), str(pki.kubelet_client_cert), str(pki.kubelet_client_key))
        plain_url = f"http://127.0.0.1:{plain_port}/healthz"
        tls_url = f"https://127.0.0.1:{tls_port}/containerLogs/default/p/c"
        plain: list[float] = []
        mutual: list[float] = []
        try:
            for _ in range(args.runs):
                plain.append(one(plain_url, False))
                mutual.append(one(tls_url, tls))
        finally:
            for s in servers:
                s.stop()
    for label, values in (("plain HTTP, no credential", plain), ("mutual TLS, API server's cert", mutual)):
        print(f"{label:32s} p50 {percentile(values, 50) * 1e3:6.2f} ms  p90 {percentile(values, 90) * 1e3:6.2f} ms")
    print(f"ratio p50 (TLS / plain): {percentile(mutual, 50) / percentile(plain, 50):.2f}x "
          f"(a new connection each; a port-forward stream's bytes pay only the cipher after that)")
    print(f"authorization step per request (non-node user): {authz_cpu_us(20000):.1f} us CPU")


if __name__ == "__main__":
    main()
