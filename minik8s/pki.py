"""The cluster's certificates: a CA and the API server's serving certificate, made with openssl.

kubectl (client-go) never sends a bearer token over plain HTTP, so the API is served over TLS.
Files live in `<state>/pki/` (keys 0600) and are made once, at the first `up`.  The serving
certificate is issued again (by the same CA, so join tokens stay valid) when it lacks a name
asked for, e.g. after `up --advertise-address` on a head that first ran without one.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CERT_DAYS = 3650
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

    def ca_pem(self) -> str:
        return self.ca_cert.read_text()


def _openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], check=True, capture_output=True, text=True).stdout


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
    for key in (pki.ca_key, pki.server_key):
        os.chmod(key, 0o600)
    return pki
