"""HTTPS and WSS with --tls-cert/--tls-key: what a headset on the LAN needs, since its browser
offers WebXR only on a secure origin. The certificate is made here with openssl for 127.0.0.1."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, cli, start_server
from tests.session_client import SessionClient


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=xrserve test",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    server = start_server(tmp, "--no-builtins", "--tls-cert", str(cert), "--tls-key", str(key), admin_key=True)
    yield server, cert
    server.stop()


def test_https_and_wss_with_the_certificate(tls_server: tuple[Server, Path]) -> None:
    server, cert = tls_server
    assert server.url.startswith("https://")
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    with httpx.Client(base_url=server.url, verify=ssl.create_default_context(cafile=str(cert))) as client:
        assert client.get("/v1/models", headers=headers).status_code == 200
        page = client.get("/web/", follow_redirects=True)
        assert page.status_code == 200 and "dist/app.js" in page.text
    trusted = ssl.create_default_context(cafile=str(cert))
    wss = server.url.replace("https://", "wss://")
    with SessionClient(wss, server.admin_key, ssl=trusted) as session:
        assert session.hello["type"] == "hello"


def test_plain_http_and_untrusted_certificates_are_refused(tls_server: tuple[Server, Path]) -> None:
    server, _ = tls_server
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url.replace("https://", "http://") + "/v2/health/ready", timeout=5)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(server.url + "/v2/health/ready", timeout=5)  # the system's CAs do not know it


def test_half_a_tls_configuration_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not used")
    result = cli("serve", "--tls-cert", str(tmp_path / "cert.pem"), data_dir=tmp_path / "data", check=False)
    assert result.returncode == 2 and "--tls-cert and --tls-key go together" in result.stderr
