"""Gateway benchmark: requests/s and p99 through nginx (host + path routing) vs straight to the upstream.

Local mode (root, nginx-light installed): a small asyncio HTTP upstream on 127.0.0.2, a real
nginx with a rendered gateway config on 127.0.0.1, and bounded keep-alive request loops in
worker processes; both paths measured in the same run, printed as a ratio.

Cluster mode: point it at a live cluster's gateway and the upstream Service (run it where both
are reachable, e.g. `ip netns exec mk8s-node-1 ...`):
  python -m benchmarks.gateway --cluster --gateway http://<gateway ClusterIP>/api --host shop.example.com \
      --direct http://<service ClusterIP>:80/

Usage: python -m benchmarks.gateway [--requests 8000] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import multiprocessing as mp
import socket
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks import smoke
from minik8s.gateway import config as gw
from minik8s.gateway.localrun import LocalNginx

UPSTREAM_HOST = "127.0.0.2"
BODY = b"ok\n"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def _serve(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s"
                             % (len(BODY), BODY))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, UPSTREAM_HOST, port, backlog=1024)
    async with server:
        await server.serve_forever()


def upstream_main(port: int) -> None:
    asyncio.run(_serve(port))


def load(url: str, host: str | None, n: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """One keep-alive connection, n sequential GETs; sends back (latencies, failures)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
    path = parts.path or "/"
    headers = {"Host": host} if host else {}
    lat, failures = [], 0
    start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across the worker processes
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                failures += 1
        except (OSError, http.client.HTTPException):
            failures += 1
            conn.close()
        lat.append(time.perf_counter() - t0)
    end = time.perf_counter()
    conn.close()
    out.put((lat, failures, start, end))


def measure(url: str, host: str | None, requests: int, concurrency: int) -> dict[str, float]:
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [mp.Process(target=load, args=(url, host, requests // concurrency, out)) for _ in range(concurrency)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    wall = max(r[3] for r in results) - min(r[2] for r in results)  # process start-up left out
    for p in procs:
        p.join()
    lat = sorted(x for r in results for x in r[0])
    return {"rps": len(lat) / wall, "p50_ms": statistics.median(lat) * 1e3,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, "failures": sum(r[1] for r in results)}


def report(direct: dict[str, float], via: dict[str, float]) -> None:
    for name, r in (("direct", direct), ("gateway", via)):
        print(f"{name:<8} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
              f"failures {int(r['failures'])}")
    print(f"ratio gateway/direct: throughput {via['rps'] / direct['rps']:.2f}, "
          f"p99 {direct['p99_ms'] / via['p99_ms']:.2f} (direct p99 / gateway p99; 1.0 = no overhead)")


def local(args: argparse.Namespace) -> None:
    port = free_port(UPSTREAM_HOST)
    upstream = mp.Process(target=upstream_main, args=(port,), daemon=True)
    upstream.start()
    with tempfile.TemporaryDirectory(prefix="minik8s-gw-bench-") as tmp:
        nginx = LocalNginx(Path(tmp), f"127.0.0.1:{free_port()}", workers=str(args.nginx_workers))
        dns = {"metadata": {"name": "bench", "namespace": "default"},
               "spec": {"host": "bench.example.com", "paths": [{"path": "/api", "service": "up", "port": port}]}}
        try:
            nginx.start(gw.render([dns], {("default", "up"): gw.Backend(UPSTREAM_HOST, (port,), 1)}, nginx.options))
            time.sleep(0.3)
            measure(f"http://{UPSTREAM_HOST}:{port}/", None, args.concurrency * 50, args.concurrency)  # warm-up
            measure(f"http://{nginx.options.listen}/api/", "bench.example.com", args.concurrency * 50,
                    args.concurrency)
            direct = measure(f"http://{UPSTREAM_HOST}:{port}/", None, args.requests, args.concurrency)
            via = measure(f"http://{nginx.options.listen}/api/", "bench.example.com", args.requests,
                          args.concurrency)
        finally:
            nginx.stop()
            upstream.terminate()
            upstream.join(5)
    report(direct, via)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=8000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--nginx-workers", type=int, default=1)
    ap.add_argument("--cluster", action="store_true", help="measure a live cluster's gateway instead")
    ap.add_argument("--gateway", help="cluster mode: http://<gateway IP>/<path>")
    ap.add_argument("--host", help="cluster mode: the DNS host name (sent as Host)")
    ap.add_argument("--direct", help="cluster mode: http://<service ClusterIP>:<port>/")
    args = smoke.parse(ap, requests=200, concurrency=2)
    if args.cluster:
        if not (args.gateway and args.host and args.direct):
            ap.error("--cluster needs --gateway, --host and --direct")
        report(measure(args.direct, None, args.requests, args.concurrency),
               measure(args.gateway, args.host, args.requests, args.concurrency))
    else:
        local(args)


if __name__ == "__main__":
    main()
