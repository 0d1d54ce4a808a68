"""The AWS CLI (v1, installed in the same virtualenv as pytest) against
Keywarden, with `--endpoint-url` and credentials from the environment only."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from kw_helpers import KEY_ARN_RE, LEAKY_ENV_PREFIXES, REGION


def aws_executable() -> Path:
    exe = Path(sys.executable).parent / "aws"
    if not exe.exists():
        pytest.fail(f"the AWS CLI is not installed next to {sys.executable} (expected {exe})")
    return exe


@pytest.fixture
def aws(server, account, tmp_path):
    """Runs `aws kms ARGS --endpoint-url URL` as `account`; returns
    (exit status, stdout, stderr). `check=True` asserts success."""
    config = tmp_path / "aws-config"
    creds = tmp_path / "aws-credentials"
    config.write_text("")
    creds.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(LEAKY_ENV_PREFIXES)}
    env.update(
        AWS_ACCESS_KEY_ID=account.access_key_id,
        AWS_SECRET_ACCESS_KEY=account.secret_access_key,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(creds),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_MAX_ATTEMPTS="1",
        AWS_PAGER="",
    )
    exe = aws_executable()

    def run(*args: str, check: bool = True):
        proc = subprocess.run(
            [str(exe), "kms", *args, "--endpoint-url", server.url],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert proc.returncode == 0, (
                f"aws kms {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
            )
        return proc.returncode, proc.stdout, proc.stderr

    return run


def test_cli_round_trip(aws, account, tmp_path):
    # create-key
    _, out, _ = aws("create-key", "--description", "made by the aws cli", "--output", "json")
    meta = json.loads(out)["KeyMetadata"]
    key_id, arn = meta["KeyId"], meta["Arn"]
    assert KEY_ARN_RE.match(arn)
    assert meta["AWSAccountId"] == account.account_id
    assert meta["KeyState"] == "Enabled"

    # create-alias
    alias = f"alias/cli-{uuid.uuid4().hex[:10]}"
    aws("create-alias", "--alias-name", alias, "--target-key-id", key_id)

    # encrypt a binary file through the alias; the CLI prints base64 text
    plaintext = os.urandom(300) + b"\x00\xff\n\r binary \x00"
    plain_file = tmp_path / "plain.bin"
    plain_file.write_bytes(plaintext)
    _, out, _ = aws(
        "encrypt",
        "--key-id", alias,
        "--plaintext", f"fileb://{plain_file}",
        "--encryption-context", "purpose=cli-test,team=qa",
        "--output", "text",
        "--query", "CiphertextBlob",
    )
    ct = base64.b64decode(out.strip(), validate=True)
    assert plaintext not in ct
    ct_file = tmp_path / "ct.bin"
    ct_file.write_bytes(ct)

    # decrypt from the binary ciphertext file
    _, out, _ = aws(
        "decrypt",
        "--ciphertext-blob", f"fileb://{ct_file}",
        "--encryption-context", "team=qa,purpose=cli-test",
        "--output", "json",
    )
    dec = json.loads(out)
    assert base64.b64decode(dec["Plaintext"]) == plaintext
    assert dec["KeyId"] == arn

    # text output of the plaintext, decoded to a file, as the AWS docs show
    _, out, _ = aws(
        "decrypt",
        "--ciphertext-blob", f"fileb://{ct_file}",
        "--encryption-context", "purpose=cli-test,team=qa",
        "--output", "text",
        "--query", "Plaintext",
    )
    (tmp_path / "decrypted.bin").write_bytes(base64.b64decode(out.strip()))
    assert (tmp_path / "decrypted.bin").read_bytes() == plaintext

    # wrong context fails with the AWS error name on stderr
    rc, _, err = aws(
        "decrypt", "--ciphertext-blob", f"fileb://{ct_file}", "--encryption-context", "purpose=other", check=False
    )
    assert rc != 0
    assert "InvalidCiphertextException" in err

    # generate-data-key
    _, out, _ = aws("generate-data-key", "--key-id", arn, "--key-spec", "AES_256", "--output", "json")
    dk = json.loads(out)
    assert dk["KeyId"] == arn
    dk_plain = base64.b64decode(dk["Plaintext"])
    assert len(dk_plain) == 32
    (tmp_path / "dk.bin").write_bytes(base64.b64decode(dk["CiphertextBlob"]))
    _, out, _ = aws(
        "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'dk.bin'}", "--output", "text", "--query", "Plaintext"
    )
    assert base64.b64decode(out.strip()) == dk_plain

    _, out, _ = aws("generate-data-key", "--key-id", alias, "--number-of-bytes", "64", "--output", "json")
    assert len(base64.b64decode(json.loads(out)["Plaintext"])) == 64

    # list-keys
    _, out, _ = aws("list-keys", "--output", "json")
    keys = json.loads(out)["Keys"]
    assert {"KeyId": key_id, "KeyArn": arn} in keys
    _, out, _ = aws("list-keys", "--output", "text", "--query", "Keys[].KeyId")
    assert key_id in out.split()

    # describe-key by alias
    _, out, _ = aws("describe-key", "--key-id", alias, "--output", "json")
    meta = json.loads(out)["KeyMetadata"]
    assert meta["Arn"] == arn
    assert meta["Description"] == "made by the aws cli"

    # list-aliases shows the alias
    _, out, _ = aws("list-aliases", "--key-id", key_id, "--output", "json")
    assert [a["AliasName"] for a in json.loads(out)["Aliases"]] == [alias]


def test_cli_errors(aws, tmp_path):
    rc, _, err = aws("describe-key", "--key-id", str(uuid.uuid4()), check=False)
    assert rc != 0
    assert "NotFoundException" in err

    _, out, _ = aws("create-key", "--output", "text", "--query", "KeyMetadata.KeyId")
    key_id = out.strip()
    aws("disable-key", "--key-id", key_id)
    (tmp_path / "one.bin").write_bytes(b"1")
    rc, _, err = aws("encrypt", "--key-id", key_id, "--plaintext", f"fileb://{tmp_path / 'one.bin'}", check=False)
    assert rc != 0
    assert "DisabledException" in err
    rc, _, err = aws("generate-data-key", "--key-id", key_id, "--key-spec", "AES_256", check=False)
    assert rc != 0
    assert "DisabledException" in err
    aws("enable-key", "--key-id", key_id)
    _, out, _ = aws("generate-random", "--number-of-bytes", "16", "--output", "text", "--query", "Plaintext")
    assert len(base64.b64decode(out.strip())) == 16


def test_cli_sign_and_verify_with_fileb_and_openssl(aws, tmp_path):
    """`aws kms sign`/`verify` with `fileb://` inputs; the signature checks
    out with `openssl dgst -verify` on GetPublicKey's DER."""
    _, out, _ = aws(
        "create-key", "--key-spec", "ECC_NIST_P256", "--key-usage", "SIGN_VERIFY", "--output", "json"
    )
    key_id = json.loads(out)["KeyMetadata"]["KeyId"]
    message = tmp_path / "message.bin"
    message.write_bytes(b"signed by the aws cli\x00\xff")
    _, out, _ = aws(
        "sign", "--key-id", key_id, "--message", "fileb://message.bin", "--message-type", "RAW",
        "--signing-algorithm", "ECDSA_SHA_256", "--output", "text", "--query", "Signature",
    )
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(out.strip()))
    _, out, _ = aws("get-public-key", "--key-id", key_id, "--output", "text", "--query", "PublicKey")
    (tmp_path / "pub.der").write_bytes(base64.b64decode(out.strip()))
    conv = subprocess.run(
        ["openssl", "pkey", "-pubin", "-inform", "DER", "-in", "pub.der", "-out", "pub.pem"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert conv.returncode == 0, conv.stderr
    ok = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.bin", "message.bin"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert ok.returncode == 0 and "Verified OK" in ok.stdout, ok.stdout + ok.stderr
    _, out, _ = aws(
        "verify", "--key-id", key_id, "--message", "fileb://message.bin", "--signature",
        "fileb://sig.bin", "--signing-algorithm", "ECDSA_SHA_256", "--output", "json",
    )
    assert json.loads(out)["SignatureValid"] is True
    message.write_bytes(b"another message")
    code, _, err = aws(
        "verify", "--key-id", key_id, "--message", "fileb://message.bin", "--signature",
        "fileb://sig.bin", "--signing-algorithm", "ECDSA_SHA_256", check=False,
    )
    assert code != 0 and "KMSInvalidSignatureException" in err, err
