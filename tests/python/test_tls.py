"""HTTPS: `keywarden serve --tls-cert/--tls-key` with a throwaway certificate
made by openssl; boto3 over TLS trusting that certificate; untrusted clients
and plain HTTP are refused; HTTP/2 (curl's own SigV4 signer) works over TLS."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import boto3
import pytest
import requests

from kw_helpers import LISTEN_RE, REGION, KeywardenServer, keywarden_bin, no_retry_config


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    data = d / "data"
    log = open(d / "server.log", "wb")
    proc = subprocess.Popen(
        [str(keywarden_bin()), "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0",
         "--tls-cert", str(cert), "--tls-key", str(key)],
        stdout=subprocess.PIPE,
        stderr=log,
        env=KeywardenServer.env(),
    )
    url = None
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            break
        m = LISTEN_RE.search(line)
        if m:
            url = m.group(1)
    assert url and url.startswith("https://"), f"no https listening line; log: {(d / 'server.log').read_text()}"
    admin = subprocess.run(
        [str(keywarden_bin()), "admin", "account", "create", "--name", "tls", "--data-dir", str(data)],
        check=True, capture_output=True, env=KeywardenServer.env(),
    )
    acct = json.loads(admin.stdout)
    yield {"url": url, "cert": cert, "acct": acct}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    log.close()


def client(srv, verify):
    return boto3.client(
        "kms",
        endpoint_url=srv["url"],
        region_name=REGION,
        aws_access_key_id=srv["acct"]["AccessKeyId"],
        aws_secret_access_key=srv["acct"]["SecretAccessKey"],
        verify=verify,
        config=no_retry_config(),
    )


def test_boto3_over_https(tls_server):
    kms = client(tls_server, str(tls_server["cert"]))
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"over tls")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"over tls"


def test_untrusted_client_and_plain_http_are_refused(tls_server):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(tls_server["url"] + "/healthz", timeout=5)
    assert requests.get(tls_server["url"] + "/healthz", verify=str(tls_server["cert"]), timeout=5).status_code == 200
    plain = tls_server["url"].replace("https://", "http://")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(plain + "/healthz", timeout=5)


def test_http2_over_tls_with_sigv4(tls_server):
    curl = shutil.which("curl")
    assert curl, "curl is required (scripts/test.sh installs it)"
    acct = tls_server["acct"]
    out = subprocess.run(
        [
            curl, "-sS", "--http2", "--cacert", str(tls_server["cert"]),
            "--aws-sigv4", f"aws:amz:{REGION}:kms",
            "--user", f"{acct['AccessKeyId']}:{acct['SecretAccessKey']}",
            "-H", "X-Amz-Target: TrentService.ListKeys",
            "-H", "Content-Type: application/x-amz-json-1.1",
            "-d", "{}", "-w", "\n%{http_version} %{http_code}",
            tls_server["url"] + "/",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    body, _, status = out.stdout.decode().rpartition("\n")
    assert status == "2 200", (status, body, out.stderr)
    assert json.loads(body)["Truncated"] is False
