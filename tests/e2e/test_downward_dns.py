"""The downward API and a pod's name resolution on a real cluster, through kubectl as a user drives them:
env from fieldRef/resourceFieldRef and service links, a downwardAPI volume that follows `kubectl label`,
dnsConfig and hostAliases in the pod's resolv.conf and hosts file, and a pod's hostname.subdomain
resolving through a headless Service."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.e2e.conftest import kubectl, unique, wait_for

#: A label change must reach the downwardAPI file within seconds (one kubelet sync); the poll allows more.
LABEL_TIMEOUT_S = 30.0
RUNNING_TIMEOUT_S = 120.0
DNS_TIMEOUT_S = 30.0
CLUSTER_DNS = "10.96.0.10"


def apply(kc: Path, ns: str, manifest: str) -> None:
    kubectl(kc, "apply", "-n", ns, "-f", "-", input=textwrap.dedent(manifest))


def field(kc: Path, ns: str, pod: str, path: str) -> str:
    return kubectl(kc, "get", "pod", pod, "-n", ns, "-o", f"jsonpath={{{path}}}").stdout.strip()


def wait_running(kc: Path, ns: str, pod: str) -> str:
    """Wait until the pod runs; its IP."""
    wait_for(f"pod {pod} running", lambda: field(kc, ns, pod, ".status.phase") == "Running",
             timeout=RUNNING_TIMEOUT_S)
    return wait_for(f"pod {pod} IP", lambda: field(kc, ns, pod, ".status.podIP"), timeout=RUNNING_TIMEOUT_S)


def in_pod(kc: Path, ns: str, pod: str, *cmd: str) -> str:
    return kubectl(kc, "exec", "-n", ns, pod, "--", *cmd).stdout


def env_of(kc: Path, ns: str, pod: str) -> dict[str, str]:
    lines = in_pod(kc, ns, pod, "env").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def sleeper(name: str, extra_spec: str = "", labels: str = "{}", container_extra: str = "") -> str:
    """A busybox pod that sleeps; `extra_spec` and `container_extra` are YAML lines at pod-spec/container level."""
    spec = textwrap.indent(textwrap.dedent(extra_spec), "  ")
    cont = textwrap.indent(textwrap.dedent(container_extra), "    ")
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {labels}\nspec:\n"
            f"  terminationGracePeriodSeconds: 0\n{spec}"
            f"  containers:\n  - name: main\n    image: busybox\n    command: [sleep, \"3600\"]\n{cont}")


def test_env_from_field_and_resource_refs_and_service_links(kubeconfig: Path, ns: str) -> None:
    pod, quiet, svc = unique("dapi"), unique("nolinks"), "links"
    apply(kubeconfig, ns, f"""\
        apiVersion: v1
        kind: Service
        metadata: {{name: {svc}}}
        spec:
          ports: [{{port: 8080}}]
        """)
    env_spec = """\
        resources:
          limits: {memory: 64Mi}
          requests: {cpu: 250m}
        env:
        - {name: MY_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: MY_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        - {name: MY_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: MY_NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
        - {name: MY_TIER, valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}}
        - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
        - {name: CPU_M, valueFrom: {resourceFieldRef: {containerName: main, resource: requests.cpu, divisor: 1m}}}
        """
    apply(kubeconfig, ns, sleeper(pod, labels="{tier: gold}", container_extra=env_spec))
    apply(kubeconfig, ns, sleeper(quiet, extra_spec="enableServiceLinks: false\n"))
    ip = wait_running(kubeconfig, ns, pod)
    node = field(kubeconfig, ns, pod, ".spec.nodeName")
    assert node
    env = env_of(kubeconfig, ns, pod)
    assert {k: env.get(k) for k in ("MY_NAME", "MY_NS", "MY_IP", "MY_NODE", "MY_TIER", "MEM_MI", "CPU_M")} == {
        "MY_NAME": pod, "MY_NS": ns, "MY_IP": ip, "MY_NODE": node, "MY_TIER": "gold", "MEM_MI": "64",
        "CPU_M": "250"}, env
    svc_ip = kubectl(kubeconfig, "get", "svc", svc, "-n", ns, "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    assert env.get("LINKS_SERVICE_HOST") == svc_ip and env.get("LINKS_SERVICE_PORT") == "8080", env
    wait_running(kubeconfig, ns, quiet)
    quiet_env = env_of(kubeconfig, ns, quiet)
    assert "LINKS_SERVICE_HOST" not in quiet_env, quiet_env  # enableServiceLinks: false
    assert quiet_env.get("KUBERNETES_SERVICE_HOST"), quiet_env  # the API's variables stay, as in Kubernetes


def test_bad_downward_fields_are_refused(kubeconfig: Path, ns: str) -> None:
    bad = sleeper(unique("bad"), container_extra="""\
        env:
        - {name: BAD_FIELD, valueFrom: {fieldRef: {fieldPath: spec.hostname}}}
        - {name: BAD_RESOURCE, valueFrom: {resourceFieldRef: {resource: limits.gpu}}}
        """)
    proc = kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", input=bad, check=False)
    assert proc.returncode != 0
    assert "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath" in proc.stderr, proc.stderr
    assert "spec.containers[0].env[1].valueFrom.resourceFieldRef.resource" in proc.stderr, proc.stderr
    assert kubectl(kubeconfig, "get", "pods", "-n", ns, "-o", "name").stdout.strip() == ""  # nothing created


def test_downward_volume_follows_kubectl_label(kubeconfig: Path, ns: str) -> None:
    pod = unique("labels")
    apply(kubeconfig, ns, sleeper(pod, labels="{app: dd}", extra_spec="""\
        volumes:
        - name: info
          downwardAPI:
            items:
            - {path: labels, fieldRef: {fieldPath: metadata.labels}}
            - {path: name, fieldRef: {fieldPath: metadata.name}}
        """, container_extra="""\
        volumeMounts: [{name: info, mountPath: /etc/info}]
        """))
    wait_running(kubeconfig, ns, pod)
    assert in_pod(kubeconfig, ns, pod, "cat", "/etc/info/labels") == 'app="dd"'
    assert in_pod(kubeconfig, ns, pod, "cat", "/etc/info/name") == pod
    kubectl(kubeconfig, "label", "pod", pod, "-n", ns, "tier=x")
    assert wait_for("the new label in the file",
                    lambda: in_pod(kubeconfig, ns, pod, "cat", "/etc/info/labels") == 'app="dd"\ntier="x"',
                    timeout=LABEL_TIMEOUT_S)


def test_dns_config_and_host_aliases_reach_the_pods_files(kubeconfig: Path, ns: str) -> None:
    pod = unique("resolv")
    apply(kubeconfig, ns, sleeper(pod, extra_spec="""\
        dnsConfig:
          searches: [extra.example]
          options: [{name: ndots, value: "3"}, {name: edns0}]
        hostAliases:
        - {ip: 10.1.2.3, hostnames: [foo.local, bar.local]}
        """))
    wait_running(kubeconfig, ns, pod)
    resolv = in_pod(kubeconfig, ns, pod, "cat", "/etc/resolv.conf").splitlines()
    assert f"search {ns}.svc.cluster.local svc.cluster.local cluster.local" in resolv[0], resolv
    assert resolv[0].endswith(" extra.example"), resolv
    assert f"nameserver {CLUSTER_DNS}" in resolv, resolv
    assert "options ndots:3 edns0" in resolv, resolv  # dnsConfig's ndots replaces the default one
    hosts = in_pod(kubeconfig, ns, pod, "cat", "/etc/hosts")
    assert hosts.endswith("\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n"), hosts
    refused = kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", check=False,
                      input=sleeper(unique("nodns"), extra_spec="dnsPolicy: None\n"))
    assert refused.returncode != 0 and "spec.dnsConfig" in refused.stderr, refused.stderr


def test_hostname_and_subdomain_resolve_through_a_headless_service(kubeconfig: Path, ns: str) -> None:
    sub, target, asker = "sub", unique("target"), unique("asker")
    apply(kubeconfig, ns, f"""\
        apiVersion: v1
        kind: Service
        metadata: {{name: {sub}}}
        spec:
          clusterIP: None
          selector: {{app: {sub}}}
          ports: [{{name: http, port: 80}}]
        """)
    apply(kubeconfig, ns, sleeper(target, labels=f"{{app: {sub}}}", extra_spec=f"hostname: host-0\nsubdomain: {sub}\n"))
    apply(kubeconfig, ns, sleeper(asker))
    ip = wait_running(kubeconfig, ns, target)
    wait_running(kubeconfig, ns, asker)
    fqdn = f"host-0.{sub}.{ns}.svc.cluster.local"
    assert f"{ip}\t{fqdn}\thost-0\n" in in_pod(kubeconfig, ns, target, "cat", "/etc/hosts")

    def lookup(name: str) -> str:
        """busybox nslookup's answer section (its own resolver: the pod's resolv.conf names the server)."""
        proc = kubectl(kubeconfig, "exec", "-n", ns, asker, "--", "nslookup", "-type=a", name, check=False)
        return proc.stdout.split("Name:", 1)[1] if "Name:" in proc.stdout else ""

    assert wait_for(f"{fqdn} to resolve to {ip}", lambda: ip in lookup(fqdn), timeout=DNS_TIMEOUT_S)
    service_name = f"{sub}.{ns}.svc.cluster.local"
    assert wait_for(f"{service_name} to answer the pod's IP", lambda: ip in lookup(service_name),
                    timeout=DNS_TIMEOUT_S)
