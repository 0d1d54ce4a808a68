"""`keywarden admin ...` while the server runs: accounts and credentials
take effect (and stop taking effect) at once."""

from __future__ import annotations

import json
import time
import uuid

from botocore.exceptions import ClientError
from kw_helpers import Account, eventually_error, expect_error


def entries(doc, key: str) -> list[dict]:
    """The list under `key` (or the document itself if it is a list)."""
    if isinstance(doc, dict):
        doc = doc[key]
    assert isinstance(doc, list), doc
    return doc


def test_account_create_and_list(server):
    name = f"admin-test-{uuid.uuid4().hex[:8]}"
    acct = server.create_account(name)
    listed = entries(server.admin("account", "list"), "Accounts")
    mine = [a for a in listed if a.get("AccountId") == acct.account_id]
    assert len(mine) == 1, listed
    assert mine[0].get("Name") == name
    assert acct.secret_access_key not in json.dumps(listed)
    # Usable right away.
    assert server.client(acct).list_keys()["Keys"] == []


def test_account_ids_and_keys_are_unique(server):
    accounts = [server.create_account() for _ in range(3)]
    assert len({a.account_id for a in accounts}) == 3
    assert len({a.access_key_id for a in accounts}) == 3
    assert len({a.secret_access_key for a in accounts}) == 3
    for a in accounts:
        assert len(a.secret_access_key) >= 30


def test_credentials_create_list_revoke(server):
    acct = server.create_account()
    second = server.create_credential(acct.account_id)
    assert second.account_id == acct.account_id

    listed = entries(server.admin("credentials", "list", "--account", acct.account_id), "Credentials")
    by_id = {c["AccessKeyId"]: c for c in listed}
    assert set(by_id) == {acct.access_key_id, second.access_key_id}
    assert all(c.get("AccountId") == acct.account_id for c in listed)
    assert all(c.get("Status") == "Active" for c in listed)
    text = json.dumps(listed)
    assert acct.secret_access_key not in text and second.secret_access_key not in text

    everyone = entries(server.admin("credentials", "list"), "Credentials")
    assert {acct.access_key_id, second.access_key_id} <= {c["AccessKeyId"] for c in everyone}

    first_client = server.client(acct)
    second_client = server.client(second)
    key = second_client.create_key()["KeyMetadata"]["KeyId"]

    server.revoke_credential(second.access_key_id)
    eventually_error("UnrecognizedClientException", second_client.list_keys)
    listed = entries(server.admin("credentials", "list", "--account", acct.account_id), "Credentials")
    status = {c["AccessKeyId"]: c.get("Status") for c in listed}
    assert status[second.access_key_id] == "Revoked"
    assert status[acct.access_key_id] == "Active"
    # The account and its keys live on through the other credential.
    assert first_client.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"


def test_admin_errors_exit_nonzero(server):
    proc = server.admin_raw("credentials", "create", "--account", "not-an-account", check=False)
    assert proc.returncode != 0
    proc = server.admin_raw("credentials", "create", "--account", "999999999999", check=False)
    assert proc.returncode != 0
    proc = server.admin_raw("credentials", "revoke", "--access-key-id", "AKIANOSUCHKEY0000000", check=False)
    assert proc.returncode != 0


def test_startup_banner(server):
    out = server.stdout_path.read_text()
    assert f"listening on {server.url}" in out
    assert "Next steps" in out
    assert str(server.data_dir) in out


def test_products_are_registered_and_their_keys_authenticate(server):
    seeded = {p["ProductCode"]: p for p in entries(server.admin("product", "list"), "Products")}
    assert {"evs", "zos", "sfs", "mysql"} <= set(seeded)
    assert seeded["mysql"]["Class"] == "database"
    assert seeded["evs"]["Principal"] == "arn:aws:iam::000000000000:role/keywarden-product/evs"

    code = "p" + uuid.uuid4().hex[:10]
    added = server.admin("product", "add", "--code", code, "--class", "storage")
    assert added["Status"] == "active"
    issued = server.admin("product", "credentials", "create", "--code", code)
    product = server.client(
        Account(account_id="", access_key_id=issued["AccessKeyId"],
                secret_access_key=issued["SecretAccessKey"])
    )
    # Signed correctly, so not UnrecognizedClient; ListKeys is not a product operation.
    expect_error("AccessDeniedException", product.list_keys)
    server.admin("product", "disable", "--code", code)
    err = eventually_error_message("AccessDeniedException", "disabled", product.list_keys)
    assert code in err
    listed = entries(server.admin("credentials", "list"), "Credentials")
    mine = [c for c in listed if c["AccessKeyId"] == issued["AccessKeyId"]]
    assert mine and mine[0].get("ProductCode") == code and "AccountId" not in mine[0]
    assert issued["SecretAccessKey"] not in json.dumps(listed)


def eventually_error_message(code: str, needle: str, fn) -> str:
    """Retries `fn` until it fails with `code` and a message containing `needle`."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            fn()
        except ClientError as e:
            message = e.response["Error"]["Message"]
            if e.response["Error"]["Code"] == code and needle in message:
                return message
        if time.monotonic() > deadline:
            raise AssertionError(f"no {code} mentioning {needle!r} within 2 s")
        time.sleep(0.02)
