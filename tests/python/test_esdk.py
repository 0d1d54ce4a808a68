"""The AWS Encryption SDK for Python, with its legacy
StrictAwsKmsMasterKeyProvider, using Keywarden as its KMS.

How the SDK finds Keywarden: the provider builds its own KMS clients from a
botocore session (boto3.Session(botocore_session=...).client("kms",
region_name=...)) and takes no endpoint URL. botocore resolves a client's
endpoint from `AWS_ENDPOINT_URL_KMS` when none is passed, so each test sets
that variable (monkeypatch, undone afterwards) and hands the provider a
botocore session that carries the account's credentials and region.
"""

from __future__ import annotations

import os

import aws_encryption_sdk
import botocore.session
import pytest
from aws_encryption_sdk import CommitmentPolicy, StrictAwsKmsMasterKeyProvider
from aws_encryption_sdk.exceptions import AWSEncryptionSDKClientError

from kw_helpers import REGION, Account


@pytest.fixture
def esdk_env(server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", server.url)
    return server


def botocore_session_for(account: Account) -> botocore.session.Session:
    session = botocore.session.Session()
    session.set_credentials(account.access_key_id, account.secret_access_key)
    session.set_config_variable("region", REGION)
    return session


def provider(account: Account, *key_arns: str) -> StrictAwsKmsMasterKeyProvider:
    return StrictAwsKmsMasterKeyProvider(key_ids=list(key_arns), botocore_session=botocore_session_for(account))


@pytest.fixture
def sdk():
    return aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )


def test_esdk_round_trip_1mb(esdk_env, kms, account, sdk):
    arn = kms.create_key(Description="esdk")["KeyMetadata"]["Arn"]
    message = os.urandom(1024 * 1024)
    mkp = provider(account, arn)

    ciphertext, enc_header = sdk.encrypt(source=message, key_provider=mkp)
    assert message not in ciphertext
    assert len(ciphertext) > len(message)
    # The one encrypted data key is Keywarden's, named by the key ARN.
    edks = list(enc_header.encrypted_data_keys)
    assert len(edks) == 1
    assert edks[0].key_provider.provider_id == "aws-kms"
    assert edks[0].key_provider.key_info.decode() == arn

    plaintext, dec_header = sdk.decrypt(source=ciphertext, key_provider=provider(account, arn))
    assert plaintext == message
    assert dec_header.message_id == enc_header.message_id

    # The data key really is protected by Keywarden: the EDK decrypts there
    # (with the SDK's encryption context) to a key of the suite's length.
    dk = kms.decrypt(
        CiphertextBlob=edks[0].encrypted_data_key,
        EncryptionContext=dict(enc_header.encryption_context),
    )
    assert dk["KeyId"] == arn
    assert len(dk["Plaintext"]) == enc_header.algorithm.kdf_input_len


def test_esdk_encryption_context(esdk_env, kms, account, sdk):
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    context = {"purpose": "esdk-test", "department": "qa", "unicode": "ĉu funkcias?"}
    message = b"bound to its context " * 100

    ciphertext, _ = sdk.encrypt(source=message, key_provider=provider(account, arn), encryption_context=context)
    plaintext, header = sdk.decrypt(source=ciphertext, key_provider=provider(account, arn))
    assert plaintext == message
    # The SDK adds its own entries (the signing key); ours are all there.
    assert context.items() <= dict(header.encryption_context).items()


def test_esdk_streaming(esdk_env, kms, account, sdk):
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    message = os.urandom(200_000)
    ciphertext, _ = sdk.encrypt(source=message, key_provider=provider(account, arn), frame_length=4096)
    out = bytearray()
    with sdk.stream(mode="d", source=ciphertext, key_provider=provider(account, arn)) as decryptor:
        for chunk in decryptor:
            out += chunk
    assert bytes(out) == message


def test_esdk_decrypt_with_other_key_fails(esdk_env, kms, account, sdk):
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    other_arn = kms.create_key()["KeyMetadata"]["Arn"]
    ciphertext, _ = sdk.encrypt(source=b"for the first key only", key_provider=provider(account, arn))
    with pytest.raises(AWSEncryptionSDKClientError):
        sdk.decrypt(source=ciphertext, key_provider=provider(account, other_arn))
    # Sanity: the right key still works.
    assert sdk.decrypt(source=ciphertext, key_provider=provider(account, arn))[0] == b"for the first key only"


def test_esdk_other_tenant_cannot_decrypt(esdk_env, server, kms, account, sdk):
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    ciphertext, _ = sdk.encrypt(source=b"tenant A's data", key_provider=provider(account, arn))
    intruder = server.create_account()
    # Even naming A's key ARN, B's credentials cannot unwrap the data key.
    with pytest.raises(AWSEncryptionSDKClientError):
        sdk.decrypt(source=ciphertext, key_provider=provider(intruder, arn))
    # Nor encrypt under A's key.
    with pytest.raises(AWSEncryptionSDKClientError):
        sdk.encrypt(source=b"x", key_provider=provider(intruder, arn))


def test_esdk_disabled_key(esdk_env, kms, account, sdk):
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    ciphertext, _ = sdk.encrypt(source=b"before disabling", key_provider=provider(account, arn))
    kms.disable_key(KeyId=arn)
    with pytest.raises(AWSEncryptionSDKClientError):
        sdk.decrypt(source=ciphertext, key_provider=provider(account, arn))
    with pytest.raises(AWSEncryptionSDKClientError):
        sdk.encrypt(source=b"x", key_provider=provider(account, arn))
    kms.enable_key(KeyId=arn)
    assert sdk.decrypt(source=ciphertext, key_provider=provider(account, arn))[0] == b"before disabling"
