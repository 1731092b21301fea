"""Container lifecycle hooks and termination messages on the real cluster, driven with kubectl.

preStop runs before SIGTERM (seen from another pod), postStart finishes before the container counts as
running, a failing postStart is an event, and a container's last words reach
``status.containerStatuses[].state.terminated.message`` (from its file, or its log tail on error).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from minik8s import Client
from tests.e2e.conftest import kubectl, unique, wait_for

READY_S = 120.0
RECORDER_PORT = 8080
#: An HTTP server that appends each request's path to /tmp/seen (python:3, as other e2e tests use).
RECORDER = (
    "import http.server\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        with open('/tmp/seen', 'a') as f:\n"
    "            f.write(self.path + '\\n')\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n"
    f"http.server.ThreadingHTTPServer(('', {RECORDER_PORT}), H).serve_forever()\n"
)


def pod(name: str, command: str, image: str = "busybox", **extra: Any) -> dict[str, Any]:
    """A one-container Pod; ``extra`` keys starting with ``c_`` go to the container, the others to the spec."""
    container = {"name": "main", "image": image, "command": ["sh", "-c", command]}
    container.update({k[2:]: v for k, v in extra.items() if k.startswith("c_")})
    spec = {"containers": [container], **{k: v for k, v in extra.items() if not k.startswith("c_")}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def apply(kubeconfig: Path, ns: str, manifest: dict[str, Any]) -> None:
    kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", input=json.dumps(manifest))


def running(client: Client, name: str, ns: str) -> Any:
    """The pod once it is Running with every container ready, else None."""
    p = client.get("Pod", name, ns)
    statuses = (p.status.containerStatuses if p.status else None) or []
    ok = p.status is not None and p.status.phase == "Running" and statuses and all(s.ready for s in statuses)
    return p if ok else None


def phase(client: Client, name: str, ns: str) -> str | None:
    p = client.get("Pod", name, ns)
    return p.status.phase if p.status else None


def jsonpath(kubeconfig: Path, ns: str, name: str, path: str) -> str:
    return kubectl(kubeconfig, "get", "pod", name, "-n", ns, "-o", f"jsonpath={{{path}}}").stdout


def exec_out(kubeconfig: Path, ns: str, name: str, *command: str) -> str | None:
    proc = kubectl(kubeconfig, "exec", name, "-n", ns, "--", *command, check=False)
    return proc.stdout if proc.returncode == 0 else None


def event_reasons(kubeconfig: Path, ns: str, name: str) -> list[str]:
    events = json.loads(kubectl(kubeconfig, "get", "events", "-n", ns, "-o", "json").stdout)["items"]
    return [e["reason"] for e in events if e["involvedObject"]["name"] == name]


def test_pre_stop_reaches_another_pod_before_sigterm(client: Client, kubeconfig: Path, ns: str) -> None:
    recorder, victim = unique("recorder"), unique("victim")
    apply(kubeconfig, ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": recorder},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
            "name": "main", "image": "python:3", "command": ["python3", "-c", RECORDER],
            "readinessProbe": {"tcpSocket": {"port": RECORDER_PORT}, "periodSeconds": 1},
        }]},
    })
    recorder_ip = wait_for("recorder ready", lambda: running(client, recorder, ns), timeout=READY_S).status.podIP
    url = f"http://{recorder_ip}:{RECORDER_PORT}"
    apply(kubeconfig, ns, pod(
        victim,
        f'trap "wget -q -O- {url}/sigterm; exit 0" TERM; while :; do sleep 1; done',
        terminationGracePeriodSeconds=30,
        c_lifecycle={"preStop": {"exec": {"command": ["sh", "-c", f"wget -q -O- {url}/prestop"]}}},
    ))
    wait_for("victim ready", lambda: running(client, victim, ns), timeout=READY_S)
    assert exec_out(kubeconfig, ns, recorder, "cat", "/tmp/seen") is None  # nothing recorded yet

    kubectl(kubeconfig, "delete", "pod", victim, "-n", ns)

    def sigterm_seen() -> str | None:
        out = exec_out(kubeconfig, ns, recorder, "cat", "/tmp/seen")
        return out if out is not None and "/sigterm" in out else None

    seen = wait_for("the recorder to see the victim's SIGTERM", sigterm_seen, timeout=60)
    assert seen.split() == ["/prestop", "/sigterm"]
    assert "FailedPreStopHook" not in event_reasons(kubeconfig, ns, victim)


def test_post_start_finishes_before_the_container_is_running(client: Client, kubeconfig: Path, ns: str) -> None:
    name = unique("poststart")
    apply(kubeconfig, ns, pod(
        name,
        "until [ -f /tmp/hook ]; do sleep 0.2; done; cp /tmp/hook /tmp/seen-by-app; sleep 3600",
        terminationGracePeriodSeconds=0,
        c_lifecycle={"postStart": {"exec": {"command": ["sh", "-c",
                                                        "sleep 3; echo hello-from-poststart > /tmp/hook"]}}},
    ))
    wait_for(f"pod {name} running", lambda: phase(client, name, ns) == "Running", timeout=READY_S)
    # the hook returned before the pod was reported Running: its file is there from the first look
    assert exec_out(kubeconfig, ns, name, "cat", "/tmp/hook") == "hello-from-poststart\n"
    seen = wait_for("the app to read the hook's file",
                    lambda: exec_out(kubeconfig, ns, name, "cat", "/tmp/seen-by-app"), timeout=30)
    assert seen == "hello-from-poststart\n"


def test_failing_post_start_is_an_event_and_kills_the_container(client: Client, kubeconfig: Path, ns: str) -> None:
    name = unique("badstart")
    apply(kubeconfig, ns, pod(
        name,
        'trap "exit 2" TERM; while :; do sleep 1; done',
        restartPolicy="Never",
        c_lifecycle={"postStart": {"exec": {"command": ["sh", "-c", "echo cannot start; exit 1"]}}},
    ))
    wait_for(f"pod {name} failed", lambda: phase(client, name, ns) == "Failed", timeout=READY_S)
    assert jsonpath(kubeconfig, ns, name, ".status.containerStatuses[0].state.terminated.exitCode") == "2"
    def post_start_failed() -> list[str] | None:
        reasons = event_reasons(kubeconfig, ns, name)
        return reasons if "FailedPostStartHook" in reasons else None

    reasons = wait_for("a FailedPostStartHook event", post_start_failed, timeout=30)
    assert "Started" in reasons


def test_termination_message_from_the_file(client: Client, kubeconfig: Path, ns: str) -> None:
    name = unique("lastwords")
    apply(kubeconfig, ns, pod(name, "printf 'disk full on /data' > /dev/termination-log; exit 3",
                              restartPolicy="Never"))
    wait_for(f"pod {name} failed", lambda: phase(client, name, ns) == "Failed", timeout=READY_S)
    state = ".status.containerStatuses[0].state.terminated"
    assert jsonpath(kubeconfig, ns, name, f"{state}.exitCode") == "3"
    assert jsonpath(kubeconfig, ns, name, f"{state}.message") == "disk full on /data"


def test_termination_message_falls_back_to_the_log_tail(client: Client, kubeconfig: Path, ns: str) -> None:
    name = unique("fallback")
    apply(kubeconfig, ns, pod(name, "echo starting; echo something broke; exit 4", restartPolicy="Never",
                              c_terminationMessagePolicy="FallbackToLogsOnError"))
    wait_for(f"pod {name} failed", lambda: phase(client, name, ns) == "Failed", timeout=READY_S)
    message = jsonpath(kubeconfig, ns, name, ".status.containerStatuses[0].state.terminated.message")
    assert message.rstrip("\n") == "starting\nsomething broke"


def test_tcp_socket_hook_is_refused_naming_the_field(kubeconfig: Path, ns: str) -> None:
    name = unique("tcphook")
    proc = kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", check=False, input=json.dumps(pod(
        name, "sleep 3600", c_lifecycle={"preStop": {"tcpSocket": {"port": 80}}})))
    assert proc.returncode != 0
    assert "spec.containers[0].lifecycle.preStop.tcpSocket" in proc.stderr
    assert kubectl(kubeconfig, "get", "pod", name, "-n", ns, check=False).returncode != 0  # nothing was created
