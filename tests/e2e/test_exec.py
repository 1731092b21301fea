"""Interactive streams on the real cluster: exec, attach, cp and logs -f through kubectl 1.32, the official
Python client and the minik8s CLI (WebSocket v5/v4.channel.k8s.io, relayed by the API server to the kubelet)."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from minik8s import Client
from tests.e2e.conftest import MINIK8S, run, sleeper_pod, unique, wait_for, wait_running

KUBECTL_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def pod(client: Client, module_ns: str) -> Iterator[str]:
    """A sleeping pod in the module's namespace (the tests that use it take `module_ns` for its namespace)."""
    with sleeper_pod(client, "exec", namespace=module_ns) as name:
        yield name


def kubectl(kc: Path, *args: str, input: str | bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kc), *args], input=input, capture_output=True, text=True,
                          timeout=KUBECTL_TIMEOUT_S)


def _streaming_pod(name: str, command: str, stdin: bool = False) -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          terminationGracePeriodSeconds: 0
          containers:
          - name: main
            image: busybox
            stdin: {str(stdin).lower()}
            command: ["sh", "-c", {command!r}]
        """)


def _read_until(proc: subprocess.Popen[str], needle: str) -> str:
    """Lines from a streaming command until one contains `needle` (the command's timeout bounds the wait)."""
    seen = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"stream ended before {needle!r}; saw {seen!r}")


def test_kubectl_exec(kubeconfig: Path, pod: str, module_ns: str) -> None:
    ns = module_ns
    hi = kubectl(kubeconfig, "exec", "-n", ns, pod, "--", "echo", "hi")
    assert (hi.returncode, hi.stdout) == (0, "hi\n"), hi.stderr
    piped = kubectl(kubeconfig, "exec", "-n", ns, "-i", pod, "--", "cat", input="piped through\nstdin\n")
    assert (piped.returncode, piped.stdout) == (0, "piped through\nstdin\n"), piped.stderr
    split = kubectl(kubeconfig, "exec", "-n", ns, pod, "--", "sh", "-c", "echo out; echo err >&2")
    assert (split.stdout, split.stderr) == ("out\n", "err\n")
    failed = kubectl(kubeconfig, "exec", "-n", ns, pod, "--", "sh", "-c", "exit 3")
    assert failed.returncode == 3, failed.stderr
    bad = kubectl(kubeconfig, "exec", "-n", ns, pod, "-c", "nope", "--", "true")
    assert bad.returncode != 0 and "nope" in bad.stderr


def test_kubectl_exec_tty_in_tmux(kubeconfig: Path, pod: str, module_ns: str, tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is missing: scripts/install.sh installs it")
    session, done = f"mk8s-{uuid.uuid4().hex[:6]}", tmp_path / "exit"
    shell = f"kubectl --kubeconfig {kubeconfig} exec -n {module_ns} -it {pod} -- sh; echo $? > {done}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "30", shell], check=True)
    try:
        def screen() -> str:
            return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                  text=True).stdout

        wait_for("a shell prompt", lambda: "#" in screen() or None, timeout=60)
        subprocess.run(["tmux", "send-keys", "-t", session, "echo $((6*7)); stty size", "Enter"], check=True)
        wait_for("the command's output on the screen", lambda: "42" in screen() and "30 120" in screen() or None,
                 timeout=30)
        subprocess.run(["tmux", "send-keys", "-t", session, "exit 4", "Enter"], check=True)
        assert wait_for("kubectl to exit", lambda: done.exists() and done.read_text().strip(), timeout=30) == "4"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_kubectl_cp_both_ways(kubeconfig: Path, pod: str, module_ns: str, tmp_path: Path) -> None:
    ns = module_ns
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 400)
    up = kubectl(kubeconfig, "cp", "-n", ns, str(src), f"{pod}:/tmp/copied")
    assert up.returncode == 0, up.stderr
    listing = kubectl(kubeconfig, "exec", "-n", ns, pod, "--", "sh", "-c",
                      "cat /tmp/copied/a.txt; wc -c < /tmp/copied/sub/b.bin")
    assert listing.stdout.split() == ["alpha", "102400"]
    back = tmp_path / "back"
    down = kubectl(kubeconfig, "cp", "-n", ns, f"{pod}:/tmp/copied", str(back))
    assert down.returncode == 0, down.stderr
    assert (back / "a.txt").read_text() == "alpha\n"
    assert (back / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()


def test_kubectl_attach_and_logs_follow(kubeconfig: Path, client: Client, ns: str) -> None:
    name = unique("attach")
    run("apply", "-n", ns, "-f", "-", input=_streaming_pod(name, "while read l; do echo got:$l; done", stdin=True))
    ticker = unique("ticker")
    run("apply", "-n", ns, "-f", "-",
        input=_streaming_pod(ticker, "i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.3; done"))
    try:
        wait_running(client, name, namespace=ns)
        attach = subprocess.Popen(["kubectl", "--kubeconfig", str(kubeconfig), "attach", "-n", ns, "-i", name],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert attach.stdin is not None
            attach.stdin.write("hello\n")
            attach.stdin.flush()
            assert "got:hello" in _read_until(attach, "got:hello")
        finally:
            attach.kill()
            attach.wait()
        wait_running(client, ticker, namespace=ns)
        for tool in (["kubectl", "--kubeconfig", str(kubeconfig)], [MINIK8S]):
            follow = subprocess.Popen([*tool, "logs", "-n", ns, "-f", "--tail", "1", ticker], stdout=subprocess.PIPE,
                                      text=True)
            try:
                first = _read_until(follow, "tick-").split("tick-")[1].split()[0]
                later = f"tick-{int(first) + 3}"  # printed after `logs -f` started: followed, not replayed
                assert later in _read_until(follow, later)
            finally:
                follow.kill()
                follow.wait()
    finally:
        run("delete", "pod", "-n", ns, name, ticker, "--grace-period", "0", check=False)


def test_python_client_stream(kubeconfig: Path, pod: str, module_ns: str) -> None:
    from kubernetes import client as k8s
    from kubernetes import config
    from kubernetes.stream import stream

    core = k8s.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
    out = stream(core.connect_get_namespaced_pod_exec, pod, module_ns, command=["echo", "from", "python"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert out == "from python\n"
    resp = stream(core.connect_get_namespaced_pod_exec, pod, module_ns, command=["sh", "-c", "cat; exit 6"],
                  stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
    resp.write_stdin("typed\n")
    resp.close_channel(0)  # v5: stdin EOF, so `cat` ends
    resp.run_forever(timeout=60)
    assert resp.read_stdout() == "typed\n"
    assert resp.returncode == 6


def test_minik8s_exec_and_cp(pod: str, module_ns: str, tmp_path: Path) -> None:
    ns = module_ns
    piped = run("exec", "-n", ns, "-i", pod, "--", "cat", input="through minik8s\n")
    assert piped.stdout == "through minik8s\n"
    assert run("exec", "-n", ns, "-i", pod, "--", "sh", "-c", "exit 3", input="", check=False).returncode == 3
    assert run("exec", "-n", ns, pod, "--", "sh", "-c", "exit 5", check=False).returncode == 5

    local = tmp_path / "tree"
    (local / "d").mkdir(parents=True)
    (local / "d" / "f.txt").write_text("nested\n")
    run("cp", "-n", ns, str(local), f"{pod}:/tmp/")  # an existing directory: the copy goes inside
    assert run("exec", "-n", ns, pod, "--", "cat", "/tmp/tree/d/f.txt").stdout == "nested\n"
    single = tmp_path / "one.txt"
    single.write_text("one\n")
    run("cp", "-n", ns, str(single), f"{pod}:/tmp/renamed.txt")
    run("cp", "-n", ns, f"{pod}:/tmp/renamed.txt", str(tmp_path / "got.txt"))
    assert (tmp_path / "got.txt").read_text() == "one\n"
    run("cp", "-n", ns, f"{pod}:/tmp/tree", str(tmp_path / "tree-back"))
    assert (tmp_path / "tree-back" / "d" / "f.txt").read_text() == "nested\n"

    missing = run("cp", "-n", ns, f"{pod}:/no/such/file", str(tmp_path / "x"), check=False)
    assert (missing.returncode, missing.stderr) == (1, f"error: {pod}:/no/such/file: no such file or directory\n")
    assert not (tmp_path / "x").exists()
    nopod = run("cp", "-n", ns, str(single), "nosuchpod:/tmp/x", check=False)
    assert nopod.returncode == 1 and "nosuchpod" in nopod.stderr and nopod.stderr.count("\n") == 1
