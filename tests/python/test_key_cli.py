"""`keywarden key ...`, the operator's key commands, against the session
server's data dir while it runs: changes reach the server within the cache
refresh period, `schedule-deletion` shows the key's last use (recorded
through boto3 and flushed by the server about once a second) and asks for
confirmation, and bad input changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from kw_helpers import PROPAGATION_S, eventually_error, expect_error

# The server flushes key usage every second; wait up to five times that.
FLUSH_WAIT_S = 5.0


def key_args(account, key_id: str, *more: str) -> tuple[str, ...]:
    return ("--account", account.account_id, "--key-id", key_id, *more)


def eventually(check, what: str, timeout: float = PROPAGATION_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout} s")
        time.sleep(0.05)


def state(kms, key_id: str) -> str:
    return kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"]


def flushed_last_usage(server, account, key_id: str, operation: str) -> dict:
    """`key last-usage` once the server flushed a use with `operation`."""
    seen: dict = {}

    def check() -> bool:
        doc = server.key("last-usage", *key_args(account, key_id))
        seen.update(doc)
        return doc["KeyLastUsage"].get("Operation") == operation

    eventually(check, f"flushed last use {operation} of {key_id}", FLUSH_WAIT_S)
    return seen


def test_key_commands_drive_a_running_server(server, account):
    kms = server.client(account)
    created = server.key("create", "--account", account.account_id, "--description", "from the cli")
    meta = created["KeyMetadata"]
    key_id, arn = meta["KeyId"], meta["Arn"]
    assert meta["KeyState"] == "Enabled" and meta["Description"] == "from the cli"
    assert meta["AWSAccountId"] == account.account_id
    # The tenant sees it through the API at once.
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"] == arn
    listed = server.key("list", "--account", account.account_id)["Keys"]
    assert [k["KeyId"] for k in listed] == [key_id]
    assert server.key("describe", *key_args(account, key_id))["KeyMetadata"]["Arn"] == arn

    kms.encrypt(KeyId=key_id, Plaintext=b"x")
    assert server.key("disable", *key_args(account, key_id))["KeyMetadata"]["KeyState"] == "Disabled"
    eventually_error("DisabledException", kms.encrypt, KeyId=key_id, Plaintext=b"x")
    assert server.key("enable", *key_args(account, key_id))["KeyMetadata"]["Enabled"] is True
    eventually(lambda: kms.describe_key(KeyId=key_id)["KeyMetadata"]["Enabled"], "re-enabled")

    st = server.key("enable-rotation", *key_args(account, key_id, "--period-days", "180"))
    assert st["KeyRotationEnabled"] is True and st["RotationPeriodInDays"] == 180
    eventually(
        lambda: kms.get_key_rotation_status(KeyId=key_id).get("RotationPeriodInDays") == 180,
        "rotation period through the API",
    )
    assert server.key("rotation-status", *key_args(account, key_id))["RotationPeriodInDays"] == 180
    assert server.key("disable-rotation", *key_args(account, key_id))["KeyRotationEnabled"] is False
    rotated = server.key("rotate", *key_args(account, key_id))
    assert rotated["KeyId"] == arn and rotated["CurrentVersion"] == 2
    eventually(
        lambda: [r["RotationType"] for r in kms.list_key_rotations(KeyId=key_id)["Rotations"]]
        == ["ON_DEMAND"],
        "on-demand rotation through the API",
    )

    protected = server.key("protect", *key_args(account, key_id))
    assert protected["KeyMetadata"]["DeletionProtectionEnabled"] is True
    eventually_error("DeletionProtectionEnabledException", kms.schedule_key_deletion, KeyId=key_id)
    refused = server.key_raw("schedule-deletion", *key_args(account, key_id, "--yes"), check=False)
    assert refused.returncode != 0
    assert b"DeletionProtectionEnabledException" in refused.stderr
    server.key("unprotect", *key_args(account, key_id))

    scheduled = server.key("schedule-deletion", *key_args(account, key_id, "--days", "7", "--yes"))
    assert scheduled["KeyState"] == "PendingDeletion" and scheduled["PendingWindowInDays"] == 7
    eventually(lambda: state(kms, key_id) == "PendingDeletion", "scheduled deletion")
    assert server.key("cancel-deletion", *key_args(account, key_id))["KeyId"] == arn
    eventually(lambda: state(kms, key_id) == "Disabled", "cancelled deletion")


def test_create_external_key(server, account):
    meta = server.key("create", "--account", account.account_id, "--origin", "EXTERNAL")["KeyMetadata"]
    assert meta["Origin"] == "EXTERNAL" and meta["KeyState"] == "PendingImport"
    kms = server.client(account)
    assert kms.get_parameters_for_import(
        KeyId=meta["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
    )["ImportToken"]


def test_schedule_deletion_shows_the_last_use_and_needs_confirmation(server, account):
    kms = server.client(account)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    fresh = server.key("last-usage", *key_args(account, key_id))
    assert fresh["KeyLastUsage"] == {}

    kms.encrypt(KeyId=key_id, Plaintext=b"x")
    last = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    request_id = last["ResponseMetadata"]["RequestId"]
    doc = flushed_last_usage(server, account, key_id, "GenerateDataKey")
    assert doc["KeyLastUsage"]["Principal"] == account.access_key_id
    assert doc["KeyLastUsage"]["KmsRequestId"] == request_id

    # Not a terminal and no --yes: refused, with the last use shown first.
    refused = server.key_raw("schedule-deletion", *key_args(account, key_id), check=False)
    err = refused.stderr.decode()
    assert refused.returncode != 0
    assert "GenerateDataKey" in err and account.access_key_id in err and request_id in err
    assert "--yes" in err and "not a terminal" in err
    assert refused.stdout == b""
    time.sleep(PROPAGATION_S / 2)
    assert state(kms, key_id) == "Enabled"

    done = server.key_raw("schedule-deletion", *key_args(account, key_id, "--yes"))
    assert "GenerateDataKey" in done.stderr.decode()
    assert account.access_key_id in done.stderr.decode()

    out = json.loads(done.stdout)
    assert out["KeyState"] == "PendingDeletion" and out["PendingWindowInDays"] == 30
    eventually(lambda: state(kms, key_id) == "PendingDeletion", "scheduled deletion")


def run_on_terminal(server, args: tuple[str, ...], answer: bytes) -> tuple[int, bytes]:
    """Runs `keywarden key ARGS` with a pseudo-terminal as stdin, answers the
    prompt with `answer`; returns the exit status and stderr."""
    leader, follower = os.openpty()
    try:
        proc = subprocess.Popen(
            [str(server.bin), "key", *args, "--data-dir", str(server.data_dir)],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=server.env(),
        )
        os.write(leader, answer)
        _, err = proc.communicate(timeout=60)
        return proc.returncode, err
    finally:
        os.close(leader)
        os.close(follower)


def test_schedule_deletion_asks_on_a_terminal(server, account):
    kms = server.client(account)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    rc, err = run_on_terminal(server, ("schedule-deletion", *key_args(account, key_id, "--days", "10")), b"n\n")
    assert rc != 0 and b"[y/N]" in err and b"not scheduled" in err, err
    time.sleep(PROPAGATION_S / 2)
    assert state(kms, key_id) == "Enabled"
    rc, err = run_on_terminal(server, ("schedule-deletion", *key_args(account, key_id, "--days", "10")), b"y\n")
    assert rc == 0, err
    eventually(lambda: state(kms, key_id) == "PendingDeletion", "scheduled deletion")
    meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["PendingDeletionWindowInDays"] == 10


@pytest.mark.parametrize(
    "args, error",
    [
        (("--days", "3", "--yes"), "ValidationException"),
        (("--days", "31", "--yes"), "ValidationException"),
    ],
)
def test_schedule_deletion_bad_days_change_nothing(server, account, args, error):
    kms = server.client(account)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    proc = server.key_raw("schedule-deletion", *key_args(account, key_id, *args), check=False)
    assert proc.returncode != 0
    assert error in proc.stderr.decode() and "between 7 and 30" in proc.stderr.decode()
    assert proc.stdout == b""
    time.sleep(PROPAGATION_S / 2)
    assert state(kms, key_id) == "Enabled"


def test_bad_input_exits_non_zero_and_changes_nothing(server, account, new_client):
    kms = server.client(account)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    cases = [
        (("describe", "--account", account.account_id, "--key-id", "11111111-2222-3333-4444-555555555555"), "NotFoundException"),
        (("disable", "--account", "12345", "--key-id", key_id), "ValidationException"),
        (("disable", "--account", "not-an-id", "--key-id", key_id), "ValidationException"),
        (("disable", "--account", "000000000000", "--key-id", key_id), "NotFoundException"),
        (("disable", "--account", account.account_id, "--key-id", "arn:aws:s3:::bucket"), "InvalidArnException"),
        (("enable-rotation", "--account", account.account_id, "--key-id", key_id, "--period-days", "5"), "ValidationException"),
        (("cancel-deletion", "--account", account.account_id, "--key-id", key_id), "KMSInvalidStateException"),
        (("schedule-deletion", "--account", account.account_id, "--key-id", "alias/nope", "--yes"), "NotFoundException"),
    ]
    for args, error in cases:
        proc = server.key_raw(*args, check=False)
        assert proc.returncode != 0, args
        assert f"{error}:" in proc.stderr.decode(), (args, proc.stderr)
        assert proc.stdout == b"", args
    # Another tenant cannot reach the key either.
    other = server.create_account()
    proc = server.key_raw("disable", *key_args(other, key_id), check=False)
    assert proc.returncode != 0 and b"NotFoundException" in proc.stderr
    # A malformed option is refused by the parser.
    proc = server.key_raw("create", "--account", account.account_id, "--origin", "AWS_CLOUDHSM", check=False)
    assert proc.returncode != 0
    # Nothing changed: still enabled, no rotation, one key.
    time.sleep(PROPAGATION_S / 2)
    meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["KeyState"] == "Enabled"
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is False
    assert [k["KeyId"] for k in kms.list_keys()["Keys"]] == [key_id]
    expect_error("NotFoundException", new_client().describe_key, KeyId=key_id)


def test_import_workflow_with_openssl(server, account, kms, tmp_path):
    """The operator's BYOK workflow without the AWS CLI: parameters to files,
    material wrapped with openssl (RSAES_OAEP_SHA_256), imported; the key
    encrypts through the API; deleting the material stops it; re-importing
    the same material brings old ciphertexts back; other material is refused."""
    created = server.key("create", "--account", account.account_id, "--origin", "EXTERNAL")
    key_id = created["KeyMetadata"]["KeyId"]
    assert created["KeyMetadata"]["KeyState"] == "PendingImport"
    material = tmp_path / "material.bin"
    material.write_bytes(os.urandom(32))

    def wrap(mat: "os.PathLike[str]", name: str):
        pub, token, wrapped = tmp_path / f"{name}.der", tmp_path / f"{name}.token", tmp_path / f"{name}.enc"
        out = server.key(
            "get-parameters-for-import", *key_args(account, key_id),
            "--wrapping-key-spec", "RSA_2048",
            "--public-key-out", str(pub), "--import-token-out", str(token),
        )
        assert out["KeyId"].endswith(key_id)
        subprocess.run(
            ["openssl", "pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", str(pub),
             "-in", str(mat), "-out", str(wrapped),
             "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
             "-pkeyopt", "rsa_mgf1_md:sha256"],
            check=True, capture_output=True,
        )
        return token, wrapped

    token, wrapped = wrap(material, "first")
    imported = server.key(
        "import-key-material", *key_args(account, key_id),
        "--import-token", str(token), "--encrypted-key-material", str(wrapped),
    )
    assert imported["KeyMetadata"]["KeyState"] == "Enabled"
    assert imported["KeyMetadata"]["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE"
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"imported")["CiphertextBlob"]

    deleted = server.key("delete-imported-key-material", *key_args(account, key_id))
    assert deleted["KeyMetadata"]["KeyState"] == "PendingImport"
    eventually_error("KMSInvalidStateException", kms.decrypt, CiphertextBlob=blob)

    token, wrapped = wrap(material, "again")
    # ValidTo more than 365 days ahead is refused and changes nothing.
    far = server.key_raw(
        "import-key-material", *key_args(account, key_id),
        "--import-token", str(token), "--encrypted-key-material", str(wrapped),
        "--valid-to", "2099-01-01T00:00:00Z", check=False,
    )
    assert far.returncode != 0 and b"ValidationException" in far.stderr, far.stderr
    server.key(
        "import-key-material", *key_args(account, key_id),
        "--import-token", str(token), "--encrypted-key-material", str(wrapped),
    )
    eventually(
        lambda: _decrypts(kms, blob, b"imported"),
        "old ciphertext decrypts after re-importing the same material",
    )

    other = tmp_path / "other.bin"
    other.write_bytes(os.urandom(32))
    token, wrapped = wrap(other, "other")
    refused = server.key_raw(
        "import-key-material", *key_args(account, key_id),
        "--import-token", str(token), "--encrypted-key-material", str(wrapped), check=False,
    )
    assert refused.returncode != 0
    assert b"IncorrectKeyMaterialException" in refused.stderr, refused.stderr
    versions = server.key("list-rotations", *key_args(account, key_id))["Versions"]
    assert [v["MaterialPresent"] for v in versions] == [True]
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    bad = server.key_raw(
        "import-key-material", *key_args(account, key_id),
        "--import-token", str(empty), "--encrypted-key-material", str(wrapped), check=False,
    )
    assert bad.returncode != 0 and b"ValidationException" in bad.stderr, bad.stderr


def _decrypts(kms, blob: bytes, expected: bytes) -> bool:
    try:
        return kms.decrypt(CiphertextBlob=blob)["Plaintext"] == expected
    except Exception:
        return False
