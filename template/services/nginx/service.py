"""nginx as berth sees it: a local CA + server certificate, and the HTTPS URL.

`inv up` creates the certificates when missing; `inv certs --renew` replaces
them. Keys are 0600 (nginx's master process reads them as root); clients
trust secrets/tls/ca.crt. The CA key never leaves secrets/tls/.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from berth import secrets
from berth.service import Endpoints, Port, SecretLookup, Service

if TYPE_CHECKING:
    from berth.project import Project

SERVER_DAYS = 397  # the longest validity browsers accept for a server certificate
CA_DAYS = 3650
NAMES = ("localhost", "nginx", "host.docker.internal")
ADDRESSES = ("127.0.0.1", "::1")


def certificates(project: Project, renew: bool) -> list[str]:
    folder = project.secrets_dir / "tls"
    paths = [folder / n for n in ("ca.crt", "ca.key", "server.crt", "server.key")]
    if all(p.exists() for p in paths) and not renew:
        return []
    secrets.ensure_dir(project.secrets_dir)
    secrets.ensure_dir(folder)
    write_certificates(folder, project.name, project.bind_address)
    return [f"{'renewed' if renew else 'created'} local CA and server certificate in secrets/tls/"]


def write_certificates(folder: Path, project: str, bind_address: str) -> None:
    # Imported here: cryptography is only needed when certificates are made.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{project} local CA (berth)")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    addresses = {*ADDRESSES, *([bind_address] if bind_address != "0.0.0.0" else [])}  # noqa: S104
    alt_names = [x509.DNSName(n) for n in NAMES] + [
        x509.IPAddress(ipaddress.ip_address(a)) for a in sorted(addresses)
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def pem_key(k: ec.EllipticCurvePrivateKey) -> str:
        return k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def pem_cert(c: x509.Certificate) -> str:
        return c.public_bytes(serialization.Encoding.PEM).decode()

    # Keys first, certificates last: a crash in between leaves a set that is
    # incomplete by content (cert/key mismatch is caught by `inv up`'s health
    # check), never a readable private key.
    secrets.write_atomic(folder / "ca.key", pem_key(ca_key), 0o600)
    secrets.write_atomic(folder / "server.key", pem_key(key), 0o600)
    secrets.write_atomic(folder / "ca.crt", pem_cert(ca_cert), 0o644)
    secrets.write_atomic(folder / "server.crt", pem_cert(cert) + pem_cert(ca_cert), 0o644)


def urls(env: Mapping[str, str], secret: SecretLookup, at: Endpoints) -> dict[str, str]:
    https, http = at["https"], at["http"]
    host = "localhost" if https.host in ("127.0.0.1", "::1") else https.host
    return {"HTTPS_URL": f"https://{host}:{https.port}/", "HTTP_URL": f"http://{host}:{http.port}/"}


SERVICE = Service(
    name="nginx",
    ports=(Port("http", 80, "NGINX_HTTP_PORT"), Port("https", 443, "NGINX_HTTPS_PORT")),
    generate=certificates,
    urls=urls,
    stateful=False,
)
