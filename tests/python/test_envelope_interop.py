"""`keywarden encrypt` / `keywarden decrypt` against the official AWS
Encryption SDK for Python (4.0.7), both ways, both key-committing suites.

Messages the SDK writes (CommitmentPolicy REQUIRE_ENCRYPT_REQUIRE_DECRYPT,
ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY and ..._ECDSA_P384) must decrypt with
`keywarden decrypt`; messages `keywarden encrypt` writes must decrypt with
the SDK. Sizes cover the empty message, one byte, exactly one frame, one
frame plus one byte, and 10 MB.

The SDK reaches Keywarden through AWS_ENDPOINT_URL_KMS (see test_esdk.py);
the keywarden binary gets the endpoint and the account's credentials through
its environment, as a user's shell would pass them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import aws_encryption_sdk
import botocore.session
import pytest
from aws_encryption_sdk import CommitmentPolicy, StrictAwsKmsMasterKeyProvider
from aws_encryption_sdk.identifiers import Algorithm

from kw_helpers import REGION, Account, KeywardenServer

FRAME = 4096
SIZES = [0, 1, FRAME, FRAME + 1, 10 * 1000 * 1000]
SUITES = {
    "committing": Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
    "committing-signed": Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
}
CONTEXT = {"purpose": "interop", "unicode": "ĉu funkcias?"}


@pytest.fixture
def esdk_env(server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", server.url)
    return server


@pytest.fixture(scope="module")
def sdk():
    return aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )


@pytest.fixture(scope="module")
def shared(server: KeywardenServer):
    """One account and key for the module (the SDK caches nothing across
    tests, so sharing them costs no isolation)."""
    account = server.create_account()
    arn = server.client(account).create_key(Description="envelope interop")["KeyMetadata"]["Arn"]
    return account, arn


def provider(account: Account, arn: str) -> StrictAwsKmsMasterKeyProvider:
    session = botocore.session.Session()
    session.set_credentials(account.access_key_id, account.secret_access_key)
    session.set_config_variable("region", REGION)
    return StrictAwsKmsMasterKeyProvider(key_ids=[arn], botocore_session=session)


def keywarden(server: KeywardenServer, account: Account, *args: str) -> subprocess.CompletedProcess:
    env = server.env()
    env.update(
        KEYWARDEN_ENDPOINT=server.url,
        AWS_ACCESS_KEY_ID=account.access_key_id,
        AWS_SECRET_ACCESS_KEY=account.secret_access_key,
    )
    return subprocess.run(
        [str(server.bin), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=300,
    )


def payload(size: int) -> bytes:
    return os.urandom(size)


@pytest.mark.parametrize("size", SIZES, ids=lambda n: f"{n}B")
@pytest.mark.parametrize("suite", list(SUITES))
def test_sdk_message_decrypts_with_keywarden(esdk_env, server, shared, sdk, tmp_path: Path, suite, size):
    account, arn = shared
    plaintext = payload(size)
    message, header = sdk.encrypt(
        source=plaintext,
        key_provider=provider(account, arn),
        algorithm=SUITES[suite],
        frame_length=FRAME,
        encryption_context=CONTEXT,
    )
    assert header.algorithm == SUITES[suite]
    src = tmp_path / "message"
    dst = tmp_path / "plain"
    src.write_bytes(message)

    proc = keywarden(server, account, "decrypt", "--key-id", arn, *ctx_args(CONTEXT), str(src), str(dst))
    assert proc.returncode == 0, proc.stderr.decode()
    assert dst.read_bytes() == plaintext

    # Discovery mode too, and a required pair the message lacks is refused.
    dst.unlink()
    proc = keywarden(server, account, "decrypt", str(src), str(dst))
    assert proc.returncode == 0, proc.stderr.decode()
    assert dst.read_bytes() == plaintext
    dst.unlink()
    proc = keywarden(server, account, "decrypt", "--context", "purpose=other", str(src), str(dst))
    assert proc.returncode != 0
    assert b"encryption context" in proc.stderr
    assert not dst.exists()


@pytest.mark.parametrize("size", SIZES, ids=lambda n: f"{n}B")
@pytest.mark.parametrize("suite", list(SUITES))
def test_keywarden_message_decrypts_with_sdk(esdk_env, server, shared, sdk, tmp_path: Path, suite, size):
    account, arn = shared
    plaintext = payload(size)
    src = tmp_path / "plain"
    dst = tmp_path / "message"
    src.write_bytes(plaintext)
    proc = keywarden(
        server,
        account,
        "encrypt",
        "--key-id",
        arn,
        "--suite",
        suite,
        "--frame-length",
        str(FRAME),
        *ctx_args(CONTEXT),
        str(src),
        str(dst),
    )
    assert proc.returncode == 0, proc.stderr.decode()

    decrypted, header = sdk.decrypt(source=dst.read_bytes(), key_provider=provider(account, arn))
    assert decrypted == plaintext
    assert header.algorithm == SUITES[suite]
    assert header.frame_length == FRAME
    assert CONTEXT.items() <= dict(header.encryption_context).items()
    edks = list(header.encrypted_data_keys)
    assert len(edks) == 1
    assert edks[0].key_provider.provider_id == "aws-kms"
    assert edks[0].key_provider.key_info.decode() == arn


def test_keywarden_two_keys_decrypt_with_sdk_under_either(esdk_env, server, sdk, tmp_path: Path):
    account = server.create_account()
    kms = server.client(account)
    a = kms.create_key()["KeyMetadata"]["Arn"]
    b = kms.create_key()["KeyMetadata"]["Arn"]
    src = tmp_path / "plain"
    dst = tmp_path / "message"
    src.write_bytes(b"two keys, either opens it")
    proc = keywarden(server, account, "encrypt", "--key-id", a, "--key-id", b, str(src), str(dst))
    assert proc.returncode == 0, proc.stderr.decode()
    for arn in (a, b):
        assert sdk.decrypt(source=dst.read_bytes(), key_provider=provider(account, arn))[0] == src.read_bytes()


def test_tampered_sdk_message_is_refused_without_output(esdk_env, server, shared, sdk, tmp_path: Path):
    account, arn = shared
    message, _ = sdk.encrypt(source=payload(3 * FRAME), key_provider=provider(account, arn), frame_length=FRAME)
    bad = bytearray(message)
    bad[len(bad) // 2] ^= 0x01
    src = tmp_path / "message"
    dst = tmp_path / "plain"
    src.write_bytes(bytes(bad))
    proc = keywarden(server, account, "decrypt", "--key-id", arn, str(src), str(dst))
    assert proc.returncode != 0
    assert b"authentication failed" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["message"]


def ctx_args(context: dict[str, str]) -> list[str]:
    args: list[str] = []
    for k, v in context.items():
        args += ["--context", f"{k}={v}"]
    return args
