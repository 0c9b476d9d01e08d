"""HTTPS and WSS with --tls-cert/--tls-key and the certificates of `xrserve certs dev`: what a
headset on the LAN needs, since its browser offers WebXR only on a secure origin. Real
clients (httpx, tritonclient, openai, a WebSocket client) trust the dev CA and nothing else."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import tritonclient.http as triton

from tests.conftest import Server, build_repository, cli, start_server
from tests.session_client import SessionClient


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("tls")
    made = cli("certs", "dev", "--out", str(tmp / "certs"), "--host", "xr.example").stdout
    assert "new CA" in made and "xr.example" in made
    build_repository(tmp / "repo")
    certs = tmp / "certs"
    tls = ("--tls-cert", str(certs / "cert.pem"), "--tls-key", str(certs / "key.pem"))
    server = start_server(tmp, "--no-builtins", "--only", "tiny", *tls, repo=tmp / "repo", admin_key=True)
    yield server, certs / "ca.pem"
    server.stop()


def test_https_and_wss_with_the_dev_ca(tls_server: tuple[Server, Path]) -> None:
    server, ca = tls_server
    assert server.url.startswith("https://")
    trusted = ssl.create_default_context(cafile=str(ca))
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    with httpx.Client(base_url=server.url, verify=trusted, headers=headers) as client:
        assert client.get("/v1/models").status_code == 200
        page = client.get("/web/", follow_redirects=True)
        assert page.status_code == 200 and "dist/app.js" in page.text
    models = openai.OpenAI(
        base_url=server.url + "/v1", api_key=server.admin_key, http_client=httpx.Client(verify=trusted)
    )
    assert "tiny" in {m.id for m in models.models.list()}
    host = server.url.removeprefix("https://")
    inference = triton.InferenceServerClient(host, ssl=True, ssl_context_factory=lambda: trusted)
    x = triton.InferInput("x", [1, 64], "FP32")
    x.set_data_from_numpy(np.ones((1, 64), np.float32))
    result = inference.infer("tiny", [x], headers=headers)
    assert result.as_numpy("y").shape == (1, 16)
    with SessionClient(server.url.replace("https://", "wss://"), server.admin_key, ssl=trusted) as session:
        assert session.hello["type"] == "hello"


def test_plain_http_and_untrusted_certificates_are_refused(tls_server: tuple[Server, Path]) -> None:
    server, _ = tls_server
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url.replace("https://", "http://") + "/v2/health/ready", timeout=5)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(server.url + "/v2/health/ready", timeout=5)  # the system's CAs do not know the dev CA


def test_a_second_certificate_reuses_the_ca(tmp_path: Path) -> None:
    first = cli("certs", "dev", "--out", str(tmp_path)).stdout
    ca = (tmp_path / "ca.pem").read_bytes()
    second = cli("certs", "dev", "--out", str(tmp_path), "--host", "10.1.2.3").stdout
    assert "new CA" in first and "existing CA" in second and (tmp_path / "ca.pem").read_bytes() == ca
    assert "10.1.2.3" in second  # a headset that trusts the CA keeps trusting the next certificate
    assert oct((tmp_path / "key.pem").stat().st_mode & 0o777) == "0o600"


def test_half_a_tls_configuration_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not used")
    result = cli("serve", "--tls-cert", str(tmp_path / "cert.pem"), data_dir=tmp_path / "data", check=False)
    assert result.returncode == 2 and "--tls-cert and --tls-key go together" in result.stderr
