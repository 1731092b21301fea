"""Admission checks of a pod's name-resolution settings: dnsPolicy, dnsConfig, hostAliases, hostname and
subdomain, with kube-apiserver's limits and wording (the kubelet renders them: `minik8s.kubelet.podnet`)."""

from __future__ import annotations

import ipaddress

from minik8s.api import types as t

Causes = list[tuple[str, str]]

DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
POLICY_NONE = "None"
#: glibc reads at most 3 nameservers; Kubernetes' MaxDNSNameservers.
MAX_NAMESERVERS = 3
#: Kubernetes' MaxDNSSearchPaths and MaxDNSSearchListChars (glibc 2.26+).
MAX_SEARCHES = 32
MAX_SEARCH_CHARS = 2048


def _ip_ok(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _check_dns_config(spec: t.PodSpec, path: str, causes: Causes) -> None:
    conf = spec.dnsConfig
    if spec.dnsPolicy == POLICY_NONE:
        if conf is None:
            causes.append((f"{path}.dnsConfig", "Required value: must provide `dnsConfig` when `dnsPolicy` is None"))
            return
        if not conf.nameservers:
            causes.append((f"{path}.dnsConfig.nameservers", "Required value: must provide at least one DNS "
                                                            "nameserver when `dnsPolicy` is None"))
    if conf is None:
        return
    from minik8s.api.validation import DNS1123_SUBDOMAIN, MAX_SUBDOMAIN  # validation imports this module

    cpath = f"{path}.dnsConfig"
    servers = conf.nameservers or []
    if len(servers) > MAX_NAMESERVERS:
        causes.append((f"{cpath}.nameservers", f"Invalid value: {servers}: must not have more than "
                                               f"{MAX_NAMESERVERS} nameservers"))
    for i, server in enumerate(servers):
        if not _ip_ok(server):
            causes.append((f"{cpath}.nameservers[{i}]", f'Invalid value: "{server}": must be valid IP address'))
    searches = conf.searches or []
    if len(searches) > MAX_SEARCHES:
        causes.append((f"{cpath}.searches", f"Invalid value: {searches}: must not have more than {MAX_SEARCHES} "
                                            "search paths"))
    if len(" ".join(searches)) > MAX_SEARCH_CHARS:
        causes.append((f"{cpath}.searches", f"Invalid value: {searches}: must not have more than "
                                            f"{MAX_SEARCH_CHARS} characters (including spaces) in the search list"))
    for i, search in enumerate(searches):
        name = search[:-1] if search.endswith(".") else search  # a trailing dot is allowed
        if len(name) > MAX_SUBDOMAIN or not DNS1123_SUBDOMAIN.match(name):
            causes.append((f"{cpath}.searches[{i}]", f'Invalid value: "{search}": must be a lowercase RFC 1123 '
                                                     "subdomain"))
    for i, option in enumerate(conf.options or []):
        if not option.name:
            causes.append((f"{cpath}.options[{i}].name", "Required value: must not be empty"))


def _check_host_aliases(spec: t.PodSpec, path: str, causes: Causes) -> None:
    from minik8s.api.validation import DNS1123_SUBDOMAIN, MAX_SUBDOMAIN  # validation imports this module

    for i, alias in enumerate(spec.hostAliases or []):
        apath = f"{path}.hostAliases[{i}]"
        if not _ip_ok(alias.ip):
            causes.append((f"{apath}.ip", f'Invalid value: "{alias.ip}": must be a valid IP address'))
        for j, host in enumerate(alias.hostnames or []):
            if len(host) > MAX_SUBDOMAIN or not DNS1123_SUBDOMAIN.match(host):
                causes.append((f"{apath}.hostnames[{j}]", f'Invalid value: "{host}": must be a lowercase RFC 1123 '
                                                          "subdomain"))


def check_pod_dns(spec: t.PodSpec, path: str, causes: Causes) -> None:
    """dnsPolicy, dnsConfig, hostAliases, hostname and subdomain of one pod spec."""
    from minik8s.api.validation import check_name  # validation imports this module

    if spec.dnsPolicy is not None and spec.dnsPolicy not in DNS_POLICIES:
        supported = ", ".join(f'"{p}"' for p in DNS_POLICIES)
        causes.append((f"{path}.dnsPolicy", f'Unsupported value: "{spec.dnsPolicy}": supported values: {supported}'))
    _check_dns_config(spec, path, causes)
    _check_host_aliases(spec, path, causes)
    for field in ("hostname", "subdomain"):
        value = getattr(spec, field)
        if value:  # "" is unset, as in Kubernetes
            check_name(value, f"{path}.{field}", causes, label=True)
