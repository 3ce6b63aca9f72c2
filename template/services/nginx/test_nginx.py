"""Live tests for nginx: the TLS chain verifies with the local CA, redirects, headers, proxy."""

from __future__ import annotations

import http.client
import ssl
from urllib.parse import urlsplit

import pytest

from berth.project import Project


@pytest.fixture(scope="module")
def https(urls: dict[str, dict[str, str]]) -> tuple[str, int]:
    parts = urlsplit(urls["nginx"]["HTTPS_URL"])
    return parts.hostname or "", parts.port or 443


@pytest.fixture(scope="module")
def trusted(project: Project) -> ssl.SSLContext:
    """Trusts only berth's local CA (not the system store)."""
    return ssl.create_default_context(cafile=project.secrets_dir / "tls" / "ca.crt")


def get(host: str, port: int, path: str, context: ssl.SSLContext) -> http.client.HTTPResponse:
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=5)
    conn.request("GET", path)
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def test_tls_chain_verifies_with_local_ca(https: tuple[str, int], trusted: ssl.SSLContext) -> None:
    host, port = https
    response = get(host, port, "/healthz", trusted)
    assert response.status == 200
    assert response.body == b"ok\n"  # type: ignore[attr-defined]


def test_clients_without_the_local_ca_fail_verification(https: tuple[str, int]) -> None:
    host, port = https
    system_only = ssl.create_default_context()  # the system trust store, not berth's CA
    with pytest.raises(ssl.SSLCertVerificationError):
        get(host, port, "/healthz", system_only)


def test_security_headers_and_tls_versions(https: tuple[str, int], trusted: ssl.SSLContext) -> None:
    host, port = https
    headers = get(host, port, "/healthz", trusted).headers
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "nginx/" not in headers.get("Server", ""), "no version disclosure"
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        get(host, port, "/healthz", old)


def test_http_redirects_to_https(urls: dict[str, dict[str, str]]) -> None:
    parts = urlsplit(urls["nginx"]["HTTP_URL"])
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=5)
    conn.request("GET", "/some/page?x=1")
    response = conn.getresponse()
    conn.close()
    assert response.status == 301
    assert response.headers["Location"].startswith("https://")
    assert response.headers["Location"].endswith("/some/page?x=1")


def test_proxies_to_the_upstream_and_its_health_route(
    https: tuple[str, int], trusted: ssl.SSLContext, project: Project
) -> None:
    if project.env_name != "test":
        pytest.skip("needs the test overlay's stub upstream: run `nox -s integration`")
    host, port = https
    health = get(host, port, "/upstream-health", trusted)
    assert (health.status, health.body) == (200, b"upstream ok\n")  # type: ignore[attr-defined]
    page = get(host, port, "/", trusted)
    assert page.status == 200 and b"berth upstream stub" in page.body  # type: ignore[attr-defined]
