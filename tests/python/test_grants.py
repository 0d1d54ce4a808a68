"""Grants and default keys with boto3 and the operator CLI: an account
grants its CMK to the mysql product, which uses it with the product's own
credentials; the product's default key is visible but closed to the
account; `keywarden key schedule-deletion` warns about the product's grant
and names the product behind the key's last use."""

from __future__ import annotations

import json

from kw_helpers import Account, expect_error
from test_key_cli import flushed_last_usage, key_args

MYSQL = "arn:aws:iam::000000000000:role/keywarden-product/mysql"


def product_client(server, code: str):
    issued = server.admin("product", "credentials", "create", "--code", code)
    return server.client(
        Account(account_id="", access_key_id=issued["AccessKeyId"],
                secret_access_key=issued["SecretAccessKey"])
    ), issued["AccessKeyId"]


def test_boto3_grant_lifecycle_and_product_use(server, account):
    kms = server.client(account)
    mysql, _ = product_client(server, "mysql")
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    expect_error("AccessDeniedException", mysql.generate_data_key, KeyId=arn, KeySpec="AES_256")

    grant = kms.create_grant(
        KeyId=arn, GranteePrincipal=MYSQL, RetiringPrincipal=MYSQL,
        Operations=["GenerateDataKey", "Decrypt"],
        Constraints={"EncryptionContextSubset": {"instance": "db-1"}},
    )
    assert len(grant["GrantId"]) == 64 and grant["GrantToken"]
    dk = mysql.generate_data_key(
        KeyId=arn, KeySpec="AES_256", EncryptionContext={"instance": "db-1"},
        GrantTokens=[grant["GrantToken"]],
    )
    back = mysql.decrypt(
        KeyId=arn, CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"instance": "db-1"}
    )
    assert back["Plaintext"] == dk["Plaintext"]
    expect_error(
        "AccessDeniedException", mysql.generate_data_key,
        KeyId=arn, KeySpec="AES_256", EncryptionContext={"instance": "db-2"},
    )

    listed = kms.list_grants(KeyId=arn)["Grants"]
    assert [g["GrantId"] for g in listed] == [grant["GrantId"]]
    assert listed[0]["Constraints"] == {"EncryptionContextSubset": {"instance": "db-1"}}
    retirable = kms.list_retirable_grants(RetiringPrincipal=MYSQL)["Grants"]
    assert [g["GrantId"] for g in retirable] == [grant["GrantId"]]

    # The product retires its own grant; access ends at once.
    mysql.retire_grant(GrantToken=grant["GrantToken"])
    expect_error(
        "AccessDeniedException", mysql.decrypt,
        KeyId=arn, CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"instance": "db-1"},
    )
    assert kms.list_grants(KeyId=arn)["Grants"] == []


def test_default_key_seen_by_the_account(server, account):
    kms = server.client(account)
    zos, _ = product_client(server, "zos")
    alias_arn = f"arn:aws:kms:us-east-1:{account.account_id}:alias_zos"
    out = zos.encrypt(KeyId=alias_arn, Plaintext=b"object")
    meta = kms.describe_key(KeyId="alias_zos")["KeyMetadata"]
    assert meta["Arn"] == out["KeyId"] and meta["KeyManager"] == "AWS"
    assert "alias_zos" in [a["AliasName"] for a in kms.list_aliases()["Aliases"]]
    err = expect_error("UnsupportedOperationException", kms.disable_key, KeyId=meta["KeyId"])
    assert "default key" in err.response["Error"]["Message"]
    expect_error("UnsupportedOperationException", kms.schedule_key_deletion, KeyId=meta["KeyId"])
    expect_error("AccessDeniedException", kms.decrypt, CiphertextBlob=out["CiphertextBlob"])


def test_schedule_deletion_warns_about_product_grants(server, account):
    kms = server.client(account)
    mysql, mysql_key_id = product_client(server, "mysql")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    arn = kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    grant = kms.create_grant(KeyId=key_id, GranteePrincipal=MYSQL, Operations=["Encrypt"])
    mysql.encrypt(KeyId=arn, Plaintext=b"row")
    doc = flushed_last_usage(server, account, key_id, "Encrypt")
    assert doc["KeyLastUsage"]["Principal"] == mysql_key_id

    done = server.key_raw("schedule-deletion", *key_args(account, key_id, "--yes"))
    err = done.stderr.decode()
    assert "WARNING" in err and "product mysql" in err and grant["GrantId"] in err, err
    assert f"{mysql_key_id} of product mysql" in err, err
    assert json.loads(done.stdout)["KeyState"] == "PendingDeletion"
