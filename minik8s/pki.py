"""The cluster's certificates, made with openssl: a CA, the API server's serving certificate, the API
server's client certificates toward kubelets and toward https:// etcd members, and what nodes get at join
(a client certificate naming `system:node:<name>` in `system:nodes`, and the kubelet's serving certificate).

kubectl (client-go) never sends a bearer token over plain HTTP, so the API is served over TLS.
Files live in `<state>/pki/` (keys 0600) and are made once, at the first `up`.  The serving
certificate is issued again (by the same CA, so join tokens stay valid) when it lacks a name
asked for, e.g. after `up --advertise-address` on a head that first ran without one.

A node makes its own keys and sends certificate requests (CSRs); the API server signs them with the
subject and names *it* decides (`sign_csr`), so a node's private keys never leave it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from minik8s.auth.user import APISERVER_KUBELET_CLIENT

CERT_DAYS = 3650
ETCD_CLIENT_CN = "kube-apiserver-etcd-client"  # kubeadm's name for the API server's identity toward etcd
CURVE = "prime256v1"


@dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def server_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def kubelet_client_cert(self) -> Path:
        """The API server's client certificate toward kubelets (CN=system:apiserver-kubelet-client)."""
        return self.dir / "apiserver-kubelet-client.crt"

    @property
    def kubelet_client_key(self) -> Path:
        return self.dir / "apiserver-kubelet-client.key"

    @property
    def etcd_client_cert(self) -> Path:
        """The API server's client certificate toward https:// etcd members started with `--client-cert-auth
        --trusted-ca-file <this CA>` (kubeadm's apiserver-etcd-client)."""
        return self.dir / "apiserver-etcd-client.crt"

    @property
    def etcd_client_key(self) -> Path:
        return self.dir / "apiserver-etcd-client.key"

    def ca_pem(self) -> str:
        return self.ca_cert.read_text()


#: what a certificate may be used for (extendedKeyUsage); TLS servers check it on client certificates
CLIENT_AUTH = "clientAuth"
SERVER_AUTH = "serverAuth"


def _openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], check=True, capture_output=True, text=True).stdout


def subject_arg(common_name: str, organizations: list[str] | tuple[str, ...] = ()) -> str:
    """openssl's `-subj` form; the names are ours (node names are DNS labels), never user text with `/`."""
    for part in (common_name, *organizations):
        if "/" in part or "=" in part or "\n" in part:
            raise ValueError(f"a certificate name may not contain '/', '=' or a newline: {part!r}")
    return "".join(f"/O={o}" for o in organizations) + f"/CN={common_name}"


def _extensions(usage: str, sans: list[str] | None) -> str:
    key_usage = "digitalSignature,keyEncipherment" if SERVER_AUTH in usage else "digitalSignature"
    text = f"extendedKeyUsage={usage}\nkeyUsage=critical,{key_usage}\nbasicConstraints=critical,CA:FALSE\n"
    return text + (f"subjectAltName={','.join(sans)}\n" if sans else "")


def new_key_and_csr(key: Path, common_name: str, organizations: list[str] | tuple[str, ...] = ()) -> str:
    """A CSR (PEM) for the private key at `key`, made there first (0600) if missing: a key never travels."""
    key.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        csr = Path(tmp) / "req.csr"
        fresh = ("-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{CURVE}", "-keyout", str(key))
        _openssl("req", "-new", *(("-key", str(key)) if key.exists() else fresh), "-nodes",
                 "-subj", subject_arg(common_name, organizations), "-out", str(csr))
        os.chmod(key, 0o600)
        return csr.read_text()


def sign_csr(ca_cert: Path, ca_key: Path, csr_pem: str, common_name: str,
             organizations: list[str] | tuple[str, ...] = (), usage: str = CLIENT_AUTH,
             sans: list[str] | None = None, days: int = CERT_DAYS) -> str:
    """Sign a CSR with the cluster CA. The subject and names are the caller's, whatever the CSR asked for:
    the CSR only proves its key. Raises ValueError for a CSR that is not one or whose signature fails."""
    with tempfile.TemporaryDirectory() as tmp:
        csr, ext, out = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf", Path(tmp) / "out.crt"
        csr.write_text(csr_pem)
        ext.write_text(_extensions(usage, sans))
        try:
            _openssl("req", "-in", str(csr), "-noout", "-verify")
            _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
                     "-set_serial", "0x" + secrets.token_hex(16), "-days", str(days), "-extfile", str(ext),
                     "-subj", subject_arg(common_name, organizations), "-out", str(out))
        except subprocess.CalledProcessError as exc:
            raise ValueError(f"not a valid certificate request: {exc.stderr.strip().splitlines()[-1:]}") from None
        return out.read_text()


def issue(pki: Pki, key: Path, cert: Path, common_name: str, organizations: list[str] | tuple[str, ...] = (),
          usage: str = CLIENT_AUTH, sans: list[str] | None = None) -> None:
    """A key and a certificate signed by the CA, made where the CA is (the head's own identities)."""
    csr = new_key_and_csr(key, common_name, organizations)
    write_file(cert, sign_csr(pki.ca_cert, pki.ca_key, csr, common_name, organizations, usage, sans), 0o644)


def issue_etcd_server(pki: Pki, key: Path, cert: Path, sans: list[str]) -> None:
    """A serving certificate for an etcd member that takes the cluster CA's clients (`--cert-file`). Good for
    clientAuth too, as kubeadm's etcd server certificates are: etcd's HTTP gateway dials its own gRPC port
    with it, and a member started with `--client-cert-auth` refuses it otherwise (/health then fails)."""
    issue(pki, key, cert, "etcd-server", usage=f"{SERVER_AUTH},{CLIENT_AUTH}", sans=sans)


def write_file(path: Path, text: str, mode: int) -> None:
    """Write `text` so that it is never readable beyond `mode`, even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def cert_subject(cert: Path) -> str:
    """The subject in RFC 2253 order-independent form, e.g. `CN=system:node:node-1,O=system:nodes`."""
    return _openssl("x509", "-in", str(cert), "-noout", "-subject", "-nameopt", "RFC2253").strip().removeprefix(
        "subject=")


def cert_sans(cert: Path) -> set[str]:
    """The subjectAltName entries of ``cert`` as ``IP:…``/``DNS:…`` strings (openssl's spelling normalised)."""
    out = _openssl("x509", "-in", str(cert), "-noout", "-ext", "subjectAltName")
    entries = (e.strip() for line in out.splitlines()[1:] for e in line.split(","))
    return {e.replace("IP Address:", "IP:") for e in entries if e}


def ensure_pki(directory: Path, ips: list[str], dns_names: list[str]) -> Pki:
    """Create the CA and a serving cert for `ips` + `dns_names` unless they exist; issue the serving
    cert again if it lacks one of them."""
    pki = Pki(directory)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    if not (pki.ca_cert.exists() and pki.ca_key.exists()):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{CURVE}", "-nodes",
                 "-days", str(CERT_DAYS), "-subj", "/CN=minik8s-ca", "-keyout", str(pki.ca_key),
                 "-out", str(pki.ca_cert), "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    wanted = [*(f"IP:{ip}" for ip in dict.fromkeys(ips)), *(f"DNS:{d}" for d in dict.fromkeys(dns_names))]
    have = pki.server_cert.exists() and pki.server_key.exists()
    if not have or not set(wanted) <= cert_sans(pki.server_cert):
        sans = ",".join(wanted)
        with tempfile.TemporaryDirectory() as tmp:
            csr, ext = Path(tmp) / "server.csr", Path(tmp) / "ext.cnf"
            ext.write_text(f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n"
                           "keyUsage=critical,digitalSignature,keyEncipherment\n")
            _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{CURVE}", "-nodes",
                     "-subj", "/CN=minik8s-apiserver", "-keyout", str(pki.server_key), "-out", str(csr))
            _openssl("x509", "-req", "-in", str(csr), "-CA", str(pki.ca_cert), "-CAkey", str(pki.ca_key),
                     "-CAcreateserial", "-days", str(CERT_DAYS), "-extfile", str(ext), "-out", str(pki.server_cert))
    if not (pki.kubelet_client_cert.exists() and pki.kubelet_client_key.exists()):
        issue(pki, pki.kubelet_client_key, pki.kubelet_client_cert, APISERVER_KUBELET_CLIENT)
    if not (pki.etcd_client_cert.exists() and pki.etcd_client_key.exists()):
        issue(pki, pki.etcd_client_key, pki.etcd_client_cert, ETCD_CLIENT_CN)
    for key in (pki.ca_key, pki.server_key, pki.kubelet_client_key, pki.etcd_client_key):
        os.chmod(key, 0o600)
    return pki
