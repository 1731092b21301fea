"""User images: build from a Dockerfile FROM a base image, push to the cluster registry, run as a pod."""

from __future__ import annotations

import textwrap
from pathlib import Path

from minik8s import Client
from tests.e2e.conftest import run, unique, wait_for, wait_running


def test_build_push_list_and_run_a_user_image(client: Client, ns: str, tmp_path: Path) -> None:
    tag = f"{unique('hello')}:v1"
    (tmp_path / "Dockerfile").write_text(textwrap.dedent("""\
        FROM busybox
        RUN mkdir -p /www && echo "built by minik8s" > /www/index.html
        CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
        """))
    out = run("image", "build", "-t", tag, str(tmp_path)).stdout
    assert f"built and pushed {tag}" in out
    listing = run("image", "ls").stdout
    repo, version = tag.split(":")
    assert any(line.split()[0] == repo and version in line for line in listing.splitlines()[1:]), listing
    assert any(line.split()[0] == "busybox" for line in listing.splitlines()[1:])
    run("image", "push", tag)  # pushing again is harmless
    name = unique("userimg")
    run("apply", "-n", ns, "-f", "-", input=f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  containers:
  - {{name: web, image: "{tag}"}}
  - {{name: probe, image: busybox, command: [sleep, "3600"]}}
""")
    wait_running(client, name, namespace=ns)
    body = wait_for("the user image's page", lambda: run(
        "exec", "-n", ns, name, "-c", "probe", "--", "wget", "-qO-", "http://localhost:8080/", check=False).stdout)
    assert body.strip() == "built by minik8s"
    run("delete", "pod", "-n", ns, name, "--grace-period", "0")


def test_bad_dockerfile_is_a_clear_error(cluster: None, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM nosuchbase:9\n")
    proc = run("image", "build", "-t", "broken:v1", str(tmp_path), check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuchbase:9" in lines[0]


def test_python_base_image_runs(client: Client, ns: str) -> None:
    name = unique("py")
    run("apply", "-n", ns, "-f", "-", input=f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  containers:
  - {{name: main, image: "python:3", command: [python3, -c, "import sys; print('py', sys.version_info[0])"]}}
""")
    wait_for("the python pod to succeed", lambda: client.get("Pod", name, ns).status.phase == "Succeeded", timeout=120)
    assert run("logs", "-n", ns, name).stdout.strip() == "py 3"
    run("delete", "pod", "-n", ns, name)
