"""Exec and attach over WebSocket: a client -> the real API server -> a real kubelet -> a real dockerd.

Driven with the SDK's stream client and with the official `kubernetes` Python client.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from minik8s import errors
from minik8s.auth import x509
from minik8s.client.streams import PodStream, open_pod_stream
from minik8s.kubelet.kubelet import Kubelet, KubeletConfig
from minik8s.streaming import channels as ch
from tests.conftest import TEST_TOKEN, apiserver_pki_config, free_port, kubelet_tls, seed_service_account_objects
from tests.integration.test_kubelet_apiserver import until
from tests.integration.test_kubelet_runtime import IMAGE, PAUSE_COMMAND, dockerd, pytestmark  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kubelet(dockerd: Any, apiserver: str, test_pki: Any) -> Iterator[Kubelet]:  # noqa: F811 (the fixture above)
    """A kubelet serving TLS from the cluster CA, as in a cluster (the API server calls it with its client cert)."""
    from minik8s import Client

    node = f"ex-{uuid.uuid4().hex[:6]}"
    cfg = KubeletConfig(node_name=node, node_ip="127.0.0.1", pod_cidr="10.246.3.0/24", pods_dir=dockerd.root / "kx",
                        pause_image=IMAGE, pause_command=PAUSE_COMMAND, heartbeat_seconds=1, resync_seconds=5,
                        server_port=free_port(), **kubelet_tls(test_pki, dockerd.root, node))
    api = Client(apiserver, TEST_TOKEN)
    seed_service_account_objects(api)  # pods get a token volume: the controllers' part
    k = Kubelet(cfg, api, dockerd)
    th = threading.Thread(target=k.run, daemon=True)
    th.start()
    yield k
    k.stop()
    th.join(10)


def _pod(client: Any, node: str, **container: Any) -> str:
    name = f"x-{uuid.uuid4().hex[:6]}"
    spec = {"name": "main", "image": "busybox", "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
            **container}
    client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                   "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [spec]}})
    until(lambda: client.get("Pod", name).status.phase == "Running")
    return name


def _run(stream: PodStream, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    if stdin is not None:
        stream.send_stdin(stdin)
        stream.close_stdin()
    code = stream.run(None, out, err)
    return code, out.getvalue(), err.getvalue()


def test_exec_output_exit_code_stdin_and_tty(kubelet: Kubelet, client: Any) -> None:  # noqa: F811
    name = _pod(client, kubelet.config.node_name)
    stream = open_pod_stream(client, name, command=["sh", "-c", "echo out; echo err >&2"])
    assert stream.protocol == ch.V5
    assert _run(stream) == (0, b"out\n", b"err\n")

    assert _run(open_pod_stream(client, name, command=["sh", "-c", "exit 3"]))[0] == 3

    data = b"".join(b"line %d\n" % i for i in range(20000))  # several frames each way; EOF ends `cat`
    assert _run(open_pod_stream(client, name, command=["cat"], stdin=True), data) == (0, data, b"")

    tty = open_pod_stream(client, name, command=["sh"], stdin=True, tty=True)
    tty.resize(100, 30)
    tty.send_stdin(b"stty size; exit 7\n")
    code, out, _ = _run(tty)
    assert code == 7 and b"30 100" in out


def test_exec_errors(kubelet: Kubelet, client: Any, apiserver: str) -> None:  # noqa: F811
    name = _pod(client, kubelet.config.node_name)
    with pytest.raises(errors.NotFound):
        open_pod_stream(client, "nosuch", command=["true"])
    with pytest.raises(errors.BadRequest, match="container nope is not valid"):
        open_pod_stream(client, name, command=["true"], container="nope")
    missing = open_pod_stream(client, name, command=["no-such-binary"])
    code, out, err = _run(missing)
    assert code in (126, 127) and b"no-such-binary" in out + err
    # the upgrade needs the bearer token like every other request
    with pytest.raises(InvalidStatus) as denied:
        connect(f"{apiserver.replace('http', 'ws')}/api/v1/namespaces/default/pods/{name}/exec?command=true",
                subprotocols=[ch.V5], legacy=True)  # type: ignore[list-item]
    assert denied.value.response.status_code == 401


def test_attach_to_main_process(kubelet: Kubelet, client: Any) -> None:  # noqa: F811
    name = _pod(client, kubelet.config.node_name, command=["cat"], stdin=True)
    stream = open_pod_stream(client, name, subresource="attach", stdin=True)
    stream.send_stdin(b"hello attach\n")
    seen = b""
    for channel, data in stream.messages():
        assert channel == ch.STDOUT
        seen += data
        if b"hello attach\n" in seen:
            break
    stream.close()
    no_stdin = _pod(client, kubelet.config.node_name)
    refused = open_pod_stream(client, no_stdin, subresource="attach", stdin=True)
    assert list(refused.messages()) == []
    assert "stdin is not enabled" in str(refused.status)


def test_official_python_client(kubelet: Kubelet, client: Any, apiserver: str) -> None:  # noqa: F811
    import kubernetes
    from kubernetes.stream import stream

    name = _pod(client, kubelet.config.node_name)
    cfg = kubernetes.client.Configuration()
    cfg.host = apiserver
    cfg.api_key = {"authorization": f"Bearer {TEST_TOKEN}"}
    core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(cfg))
    assert stream(core.connect_get_namespaced_pod_exec, name, "default", command=["echo", "hi"],
                  stderr=True, stdin=False, stdout=True, tty=False) == "hi\n"
    resp = stream(core.connect_get_namespaced_pod_exec, name, "default", command=["sh", "-c", "cat; exit 5"],
                  stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
    resp.write_stdin("from python\n")
    resp.close_channel(ch.STDIN)
    resp.run_forever(timeout=20)
    assert resp.read_stdout() == "from python\n"
    assert resp.returncode == 5


def test_cli_exec_stdin_and_cp(kubelet: Kubelet, client: Any, apiserver: str, tmp_path: Path) -> None:  # noqa: F811
    name = _pod(client, kubelet.config.node_name)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"server": apiserver, "token": TEST_TOKEN}))
    env = {**os.environ, "MINIK8S_CONFIG": str(config), "PYTHONPATH": str(REPO)}

    def cli(*args: str, input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "cli.main", *args], input=input, capture_output=True,
                              env=env, cwd=REPO, timeout=60)

    piped = cli("exec", "-i", name, "--", "sh", "-c", "cat; echo done >&2; exit 4", input=b"abc\n")
    assert (piped.returncode, piped.stdout, piped.stderr) == (4, b"abc\n", b"done\n")
    assert cli("exec", "-i", name, "--", "mkdir", "-p", "/data").returncode == 0

    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f.bin").write_bytes(bytes(range(256)) * 1000)
    assert cli("cp", str(tree), f"{name}:/data/").returncode == 0  # an existing directory: copied inside it
    assert cli("exec", name, "--", "wc", "-c", "/data/tree/sub/f.bin").stdout.split()[0] == b"256000"
    assert cli("cp", f"{name}:/data/tree", str(tmp_path / "back")).returncode == 0
    assert (tmp_path / "back" / "sub" / "f.bin").read_bytes() == (tree / "sub" / "f.bin").read_bytes()

    missing = cli("cp", f"{name}:/nope", str(tmp_path / "nope"))
    assert (missing.returncode, missing.stderr) == (1, f"error: {name}:/nope: no such file or directory\n".encode())
    assert not (tmp_path / "nope").exists()
    wrong = cli("cp", "-c", "other", str(tree), f"{name}:/data/")
    assert (wrong.returncode, wrong.stderr) == (1, f"error: container other is not valid for pod {name}\n".encode())
    both_local = cli("cp", str(tree), str(tmp_path / "x"))
    assert both_local.returncode == 1 and b"one of SRC and DEST must be POD:PATH" in both_local.stderr


@pytest.fixture(scope="module")
def tls_apiserver(etcd_endpoint: str, test_pki: Any) -> Iterator[tuple[str, Path]]:
    """A second API server on the same etcd, serving TLS: kubectl sends its token over TLS only."""
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    pki = test_pki
    port = free_port()
    api = ApiServer(ApiServerConfig(etcd_endpoints=[etcd_endpoint], token=TEST_TOKEN, port=port,
                                    pod_cidr="10.0.0.0/8", tls_cert=str(pki.server_cert), tls_key=str(pki.server_key),
                                    **apiserver_pki_config(pki)))
    server = ServerThread(api.app, ["127.0.0.1"], port, name="test-tls-apiserver", tls_cert=str(pki.server_cert),
                          tls_key=str(pki.server_key))
    server.start()
    yield f"https://127.0.0.1:{port}", pki.ca_cert
    server.stop()


def _kubeconfig(path: Path, server: str, ca: Path) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "t", "user": {"token": TEST_TOKEN}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
    return path


def test_kubectl_exec_and_cp(kubelet: Kubelet, client: Any, tls_apiserver: tuple[str, Path],  # noqa: F811
                             tmp_path: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is missing: `make install` puts one in .venv/bin")
    name = _pod(client, kubelet.config.node_name)
    kc = _kubeconfig(tmp_path / "kc", *tls_apiserver)

    def kubectl(*args: str, input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["kubectl", "--kubeconfig", str(kc), *args], input=input, capture_output=True,
                              timeout=60)

    hi = kubectl("exec", name, "--", "sh", "-c", "echo hi; echo oops >&2; exit 3")
    expected = (3, b"hi\n", b"oops\ncommand terminated with exit code 3\n")
    assert (hi.returncode, hi.stdout, hi.stderr) == expected, hi.stderr.decode()
    cat = kubectl("exec", "-i", name, "--", "cat", input=b"x" * 100000)
    assert (cat.returncode, len(cat.stdout)) == (0, 100000), cat.stderr
    (tmp_path / "f.txt").write_text("copied\n")
    up = kubectl("cp", str(tmp_path / "f.txt"), f"{name}:/f.txt")
    assert up.returncode == 0, up.stderr
    down = kubectl("cp", f"{name}:/f.txt", str(tmp_path / "back.txt"))
    assert down.returncode == 0, down.stderr
    assert (tmp_path / "back.txt").read_text() == "copied\n"


def test_exec_tty_in_tmux(kubelet: Kubelet, client: Any, tls_apiserver: tuple[str, Path],  # noqa: F811
                          tmp_path: Path) -> None:
    """kubectl exec -it and minik8s exec -it on a real terminal: keys in, screen out, resizes, exit code."""
    if shutil.which("tmux") is None or shutil.which("kubectl") is None:
        pytest.fail("tmux and kubectl are needed: `make install` installs both")
    name = _pod(client, kubelet.config.node_name)
    kc = _kubeconfig(tmp_path / "kc", *tls_apiserver)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"server": tls_apiserver[0], "token": TEST_TOKEN, "ca": tls_apiserver[1].read_text()}))
    tools = (f"kubectl --kubeconfig {kc}", f"MINIK8S_CONFIG={config} PYTHONPATH={REPO} {sys.executable} -m cli.main")
    for tool in tools:
        _drive_shell(tool, name, tmp_path / "exit")


def _drive_shell(tool: str, pod: str, done: Path) -> None:
    """`TOOL exec -it POD -- sh` in a 120x30 tmux window: type, read the screen, resize, exit 4."""
    session = f"ex-{uuid.uuid4().hex[:6]}"
    done.unlink(missing_ok=True)
    shell = f"{tool} exec -it {pod} -- sh; echo $? > {done}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "30", shell], check=True)

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

    def keys(text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", session, text, "Enter"], check=True)

    try:
        until(lambda: "#" in screen())
        keys("echo $((6*7)); stty size")
        until(lambda: "42" in screen() and "30 120" in screen())
        subprocess.run(["tmux", "resize-window", "-t", session, "-x", "100", "-y", "20"], check=True)
        keys("stty size")
        until(lambda: "20 100" in screen())
        keys("exit 4")
        assert until(lambda: done.exists() and done.read_text().strip()) == "4", tool
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_kubectl_attach(kubelet: Kubelet, client: Any, tls_apiserver: tuple[str, Path],  # noqa: F811
                        tmp_path: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is missing: `make install` puts one in .venv/bin")
    name = _pod(client, kubelet.config.node_name, command=["sh", "-c", "while read l; do echo got:$l; done"],
                stdin=True)
    kc = _kubeconfig(tmp_path / "kc", *tls_apiserver)
    attach = subprocess.Popen(["kubectl", "--kubeconfig", str(kc), "attach", "-i", name], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert attach.stdin is not None and attach.stdout is not None
        attach.stdin.write(b"hello\n")
        attach.stdin.flush()
        assert attach.stdout.readline() == b"got:hello\n"
    finally:
        attach.kill()
        attach.wait()


def test_pod_gets_a_token_of_its_service_account(kubelet: Kubelet, client: Any, test_pki: Any) -> None:
    """The kubelet asks the API for a token bound to the pod and projects it, read-only, with the CA and the
    namespace; the token authenticates as the pod's ServiceAccount until the pod is deleted."""
    name = f"sa-{uuid.uuid4().hex[:6]}"
    client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                   "spec": {"nodeName": kubelet.config.node_name, "terminationGracePeriodSeconds": 1,
                            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}})
    until(lambda: client.get("Pod", name).status.phase == "Running")
    base = f"https://127.0.0.1:{kubelet.config.server_port}"
    # the kubelet API takes only the API server's client certificate
    as_apiserver = x509.client_context(Path(test_pki.ca_cert).read_text(), str(test_pki.kubelet_client_cert),
                                       str(test_pki.kubelet_client_key))

    def sh(script: str) -> dict:
        return httpx.post(f"{base}/exec/default/{name}/main", json={"command": ["sh", "-c", script]},
                          verify=as_apiserver).json()

    d = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert sh(f"cat {d}/namespace")["output"] == "default"
    assert sh(f"cat {d}/ca.crt")["output"] == client.get("ConfigMap", "kube-root-ca.crt").data["ca.crt"]
    assert sh(f"echo x > {d}/token")["exitCode"] != 0  # read-only
    token = sh(f"cat {d}/token")["output"]
    review = httpx.post(f"{client.server}/apis/authentication.k8s.io/v1/selfsubjectreviews",
                        headers={"Authorization": f"Bearer {token}"}, json={}).json()
    info = review["status"]["userInfo"]
    assert info["username"] == "system:serviceaccount:default:default"
    assert info["extra"]["authentication.kubernetes.io/pod-name"] == [name]
    client.delete("Pod", name, grace_period_seconds=1)
    until(lambda: not [p for p in client.list("Pod", "default").items if p.metadata.name == name])
    assert httpx.post(f"{client.server}/apis/authentication.k8s.io/v1/selfsubjectreviews",
                      headers={"Authorization": f"Bearer {token}"}, json={}).status_code == 401
