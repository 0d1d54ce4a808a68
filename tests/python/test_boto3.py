"""Every Keywarden operation through boto3, as an AWS KMS client sees it."""

from __future__ import annotations

import datetime
import os
import re
import uuid

import pytest
from botocore.exceptions import ClientError

from kw_helpers import KEY_ARN_RE, expect_error

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def new_key(kms, description: str = "", **kwargs) -> dict:
    meta = kms.create_key(Description=description, **kwargs)["KeyMetadata"]
    return meta


def alias_name() -> str:
    return f"alias/pytest-{uuid.uuid4().hex[:12]}"


def state(kms, key_id: str) -> str:
    return kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"]


def assert_request_id(resp: dict) -> None:
    assert resp["ResponseMetadata"]["RequestId"], resp["ResponseMetadata"]
    assert resp["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-requestid")


# -- keys ---------------------------------------------------------------------


def test_create_key_metadata(kms, account):
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    resp = kms.create_key(Description="first key")
    assert_request_id(resp)
    meta = resp["KeyMetadata"]
    assert UUID_RE.match(meta["KeyId"]), meta["KeyId"]
    assert KEY_ARN_RE.match(meta["Arn"]), meta["Arn"]
    assert meta["Arn"] == f"arn:aws:kms:us-east-1:{account.account_id}:key/{meta['KeyId']}"
    assert meta["AWSAccountId"] == account.account_id
    assert meta["Description"] == "first key"
    assert meta["Enabled"] is True
    assert meta["KeyState"] == "Enabled"
    assert meta["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert meta["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert meta["CustomerMasterKeySpec"] == "SYMMETRIC_DEFAULT"
    assert meta["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"]
    assert meta["Origin"] == "AWS_KMS"
    assert meta["KeyManager"] == "CUSTOMER"
    assert meta["MultiRegion"] is False
    assert "DeletionDate" not in meta
    created = meta["CreationDate"]
    assert isinstance(created, datetime.datetime)
    assert before <= created <= datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5)


def test_describe_key_by_every_id_form(kms, account):
    meta = new_key(kms, "described")
    alias = alias_name()
    kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
    alias_arn = f"arn:aws:kms:us-east-1:{account.account_id}:{alias}"
    for key_id in (meta["KeyId"], meta["Arn"], alias, alias_arn):
        got = kms.describe_key(KeyId=key_id)["KeyMetadata"]
        assert got["Arn"] == meta["Arn"], key_id
        assert got["KeyId"] == meta["KeyId"], key_id
        assert got["Description"] == "described", key_id


def test_unknown_key_is_not_found(kms, account):
    missing = str(uuid.uuid4())
    expect_error("NotFoundException", kms.describe_key, KeyId=missing)
    expect_error(
        "NotFoundException",
        kms.describe_key,
        KeyId=f"arn:aws:kms:us-east-1:{account.account_id}:key/{missing}",
    )
    expect_error("NotFoundException", kms.describe_key, KeyId=alias_name())
    expect_error("NotFoundException", kms.encrypt, KeyId=missing, Plaintext=b"x")
    expect_error("NotFoundException", kms.disable_key, KeyId=missing)
    expect_error("NotFoundException", kms.generate_data_key, KeyId=missing, KeySpec="AES_256")


def test_update_key_description(kms):
    meta = new_key(kms, "before")
    resp = kms.update_key_description(KeyId=meta["Arn"], Description="after")
    assert_request_id(resp)
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["Description"] == "after"
    kms.update_key_description(KeyId=meta["KeyId"], Description="")
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["Description"] == ""


def test_disable_enable_key(kms):
    meta = new_key(kms)
    key = meta["KeyId"]
    ct = kms.encrypt(KeyId=key, Plaintext=b"secret")["CiphertextBlob"]

    kms.disable_key(KeyId=key)
    got = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert got["KeyState"] == "Disabled"
    assert got["Enabled"] is False
    expect_error("DisabledException", kms.encrypt, KeyId=key, Plaintext=b"x")
    expect_error("DisabledException", kms.decrypt, CiphertextBlob=ct)
    expect_error("DisabledException", kms.generate_data_key, KeyId=key, KeySpec="AES_256")
    expect_error(
        "DisabledException", kms.generate_data_key_without_plaintext, KeyId=key, KeySpec="AES_256"
    )
    # ReEncrypt into the disabled key.
    other = new_key(kms)["KeyId"]
    other_ct = kms.encrypt(KeyId=other, Plaintext=b"other")["CiphertextBlob"]
    expect_error("DisabledException", kms.re_encrypt, CiphertextBlob=other_ct, DestinationKeyId=key)
    # Disabling twice is allowed (idempotent in AWS).
    kms.disable_key(KeyId=key)

    kms.enable_key(KeyId=key)
    got = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert got["KeyState"] == "Enabled"
    assert got["Enabled"] is True
    assert kms.decrypt(CiphertextBlob=ct)["Plaintext"] == b"secret"


def test_reencrypt_from_disabled_source_fails(kms):
    src = new_key(kms)["KeyId"]
    dst = new_key(kms)["KeyId"]
    ct = kms.encrypt(KeyId=src, Plaintext=b"payload")["CiphertextBlob"]
    kms.disable_key(KeyId=src)
    expect_error("DisabledException", kms.re_encrypt, CiphertextBlob=ct, DestinationKeyId=dst)


def test_key_deletion_lifecycle(kms):
    meta = new_key(kms, "doomed")
    key, arn = meta["KeyId"], meta["Arn"]
    ct = kms.encrypt(KeyId=key, Plaintext=b"keep me")["CiphertextBlob"]

    now = datetime.datetime.now(datetime.timezone.utc)
    resp = kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    assert_request_id(resp)
    assert resp["KeyId"] == arn
    assert resp["KeyState"] == "PendingDeletion"
    assert resp["PendingWindowInDays"] == 7
    when = resp["DeletionDate"]
    assert datetime.timedelta(days=7) - datetime.timedelta(minutes=5) <= when - now
    assert when - now <= datetime.timedelta(days=7) + datetime.timedelta(minutes=5)

    got = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert got["KeyState"] == "PendingDeletion"
    assert got["Enabled"] is False
    assert got["DeletionDate"] == when
    assert got["PendingDeletionWindowInDays"] == 7
    # Still listed while pending deletion.
    assert key in [k["KeyId"] for k in kms.list_keys()["Keys"]]

    expect_error("KMSInvalidStateException", kms.encrypt, KeyId=key, Plaintext=b"x")
    expect_error("KMSInvalidStateException", kms.decrypt, CiphertextBlob=ct)
    expect_error("KMSInvalidStateException", kms.generate_data_key, KeyId=key, KeySpec="AES_128")
    expect_error("KMSInvalidStateException", kms.enable_key, KeyId=key)
    expect_error("KMSInvalidStateException", kms.disable_key, KeyId=key)
    expect_error("KMSInvalidStateException", kms.schedule_key_deletion, KeyId=key, PendingWindowInDays=7)

    resp = kms.cancel_key_deletion(KeyId=arn)
    assert resp["KeyId"] == arn
    got = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert got["KeyState"] == "Disabled"
    assert "DeletionDate" not in got
    expect_error("DisabledException", kms.encrypt, KeyId=key, Plaintext=b"x")
    expect_error("KMSInvalidStateException", kms.cancel_key_deletion, KeyId=key)

    kms.enable_key(KeyId=key)
    assert state(kms, key) == "Enabled"
    assert kms.decrypt(CiphertextBlob=ct)["Plaintext"] == b"keep me"


def test_schedule_key_deletion_default_window_is_30_days(kms):
    key = new_key(kms)["KeyId"]
    now = datetime.datetime.now(datetime.timezone.utc)
    resp = kms.schedule_key_deletion(KeyId=key)
    assert resp["PendingWindowInDays"] == 30
    delta = resp["DeletionDate"] - now
    assert datetime.timedelta(days=30, minutes=-5) <= delta <= datetime.timedelta(days=30, minutes=5)


@pytest.mark.parametrize("days", [7, 30])
def test_schedule_key_deletion_window_bounds_accepted(kms, days):
    key = new_key(kms)["KeyId"]
    assert kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=days)["PendingWindowInDays"] == days


@pytest.mark.parametrize("days", [1, 6, 31, 365])
def test_schedule_key_deletion_window_out_of_range(kms, days):
    key = new_key(kms)["KeyId"]
    expect_error("ValidationException", kms.schedule_key_deletion, KeyId=key, PendingWindowInDays=days)
    assert state(kms, key) == "Enabled"


def test_list_keys_pagination(kms):
    created = {new_key(kms, f"page {i}")["KeyId"] for i in range(5)}
    seen: list[str] = []
    pages = 0
    marker = None
    while True:
        kwargs = {"Limit": 2}
        if marker:
            kwargs["Marker"] = marker
        resp = kms.list_keys(**kwargs)
        pages += 1
        assert len(resp["Keys"]) <= 2
        for k in resp["Keys"]:
            assert k["KeyArn"].endswith("/" + k["KeyId"])
            assert KEY_ARN_RE.match(k["KeyArn"])
            seen.append(k["KeyId"])
        if not resp["Truncated"]:
            assert "NextMarker" not in resp
            break
        marker = resp["NextMarker"]
        assert marker
        assert pages < 10, "pagination does not end"
    assert len(seen) == len(set(seen)), f"duplicates across pages: {seen}"
    assert set(seen) == created
    assert pages >= 3

    # The boto3 paginator agrees.
    via_paginator = [
        k["KeyId"]
        for page in kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 2})
        for k in page["Keys"]
    ]
    assert sorted(via_paginator) == sorted(created)

    # Without Limit: everything in one page.
    resp = kms.list_keys()
    assert resp["Truncated"] is False
    assert {k["KeyId"] for k in resp["Keys"]} == created


def test_list_keys_bad_marker(kms):
    new_key(kms)
    with pytest.raises(ClientError) as info:
        kms.list_keys(Limit=1, Marker="not-a-marker-this-server-issued")
    assert info.value.response["Error"]["Code"] in ("InvalidMarkerException", "ValidationException")


# -- aliases ------------------------------------------------------------------


def test_alias_create_update_delete_list(kms, account):
    k1 = new_key(kms, "k1")
    k2 = new_key(kms, "k2")
    name = alias_name()
    alias_arn = f"arn:aws:kms:us-east-1:{account.account_id}:{name}"

    resp = kms.create_alias(AliasName=name, TargetKeyId=k1["KeyId"])
    assert_request_id(resp)
    listed = kms.list_aliases()["Aliases"]
    mine = [a for a in listed if a["AliasName"] == name]
    assert len(mine) == 1, listed
    assert mine[0]["AliasArn"] == alias_arn
    assert mine[0]["TargetKeyId"] == k1["KeyId"]
    assert isinstance(mine[0]["CreationDate"], datetime.datetime)

    # Encrypt through the alias name and the alias ARN.
    for key_id in (name, alias_arn):
        out = kms.encrypt(KeyId=key_id, Plaintext=b"via alias")
        assert out["KeyId"] == k1["Arn"], key_id
        dec = kms.decrypt(CiphertextBlob=out["CiphertextBlob"])
        assert dec["KeyId"] == k1["Arn"]
        assert dec["Plaintext"] == b"via alias"
        # Decrypt naming the key by the alias works too.
        assert kms.decrypt(CiphertextBlob=out["CiphertextBlob"], KeyId=key_id)["Plaintext"] == b"via alias"

    # Filtered by key.
    by_k1 = kms.list_aliases(KeyId=k1["KeyId"])["Aliases"]
    assert [a["AliasName"] for a in by_k1] == [name]
    assert kms.list_aliases(KeyId=k2["Arn"])["Aliases"] == []

    # Duplicate name.
    expect_error("AlreadyExistsException", kms.create_alias, AliasName=name, TargetKeyId=k2["KeyId"])

    # Point it at k2.
    kms.update_alias(AliasName=name, TargetKeyId=k2["Arn"])
    out = kms.encrypt(KeyId=name, Plaintext=b"now k2")
    assert out["KeyId"] == k2["Arn"]
    assert kms.decrypt(CiphertextBlob=out["CiphertextBlob"])["KeyId"] == k2["Arn"]
    assert kms.describe_key(KeyId=alias_arn)["KeyMetadata"]["Arn"] == k2["Arn"]
    assert [a["AliasName"] for a in kms.list_aliases(KeyId=k2["KeyId"])["Aliases"]] == [name]
    assert kms.list_aliases(KeyId=k1["KeyId"])["Aliases"] == []

    # Delete.
    kms.delete_alias(AliasName=name)
    assert name not in [a["AliasName"] for a in kms.list_aliases()["Aliases"]]
    expect_error("NotFoundException", kms.encrypt, KeyId=name, Plaintext=b"x")
    expect_error("NotFoundException", kms.describe_key, KeyId=alias_arn)
    expect_error("NotFoundException", kms.delete_alias, AliasName=name)
    expect_error("NotFoundException", kms.update_alias, AliasName=name, TargetKeyId=k1["KeyId"])
    # The keys themselves are untouched.
    assert state(kms, k1["KeyId"]) == "Enabled"
    assert state(kms, k2["KeyId"]) == "Enabled"


def test_alias_name_rules(kms):
    key = new_key(kms)["KeyId"]
    expect_error(
        "InvalidAliasNameException", kms.create_alias, AliasName="alias/aws/pytest", TargetKeyId=key
    )
    with pytest.raises(ClientError) as info:
        kms.create_alias(AliasName="no-prefix-" + uuid.uuid4().hex[:8], TargetKeyId=key)
    assert info.value.response["Error"]["Code"] in ("ValidationException", "InvalidAliasNameException")
    expect_error("NotFoundException", kms.create_alias, AliasName=alias_name(), TargetKeyId=str(uuid.uuid4()))
    assert kms.list_aliases(KeyId=key)["Aliases"] == []


def test_alias_cannot_target_alias(kms):
    key = new_key(kms)["KeyId"]
    first = alias_name()
    kms.create_alias(AliasName=first, TargetKeyId=key)
    with pytest.raises(ClientError) as info:
        kms.create_alias(AliasName=alias_name(), TargetKeyId=first)
    assert info.value.response["Error"]["Code"] in ("ValidationException", "NotFoundException")


def test_list_aliases_pagination(kms):
    key = new_key(kms)["KeyId"]
    names = {alias_name() for _ in range(3)}
    for n in names:
        kms.create_alias(AliasName=n, TargetKeyId=key)
    seen = []
    marker = None
    for _ in range(10):
        kwargs = {"Limit": 1}
        if marker:
            kwargs["Marker"] = marker
        resp = kms.list_aliases(**kwargs)
        assert len(resp["Aliases"]) <= 1
        seen += [a["AliasName"] for a in resp["Aliases"]]
        if not resp["Truncated"]:
            break
        marker = resp["NextMarker"]
    else:
        pytest.fail("ListAliases pagination does not end")
    assert len(seen) == len(set(seen)), seen
    # The account may also list AWS-managed aliases; ours must all be there.
    assert names <= set(seen)
    assert all(n.startswith("alias/") for n in seen)


# -- tags ---------------------------------------------------------------------


def tags_of(kms, key_id: str) -> dict[str, str]:
    return {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key_id)["Tags"]}


def test_tags(kms):
    key = new_key(kms, Tags=[{"TagKey": "team", "TagValue": "core"}])["KeyId"]
    assert tags_of(kms, key) == {"team": "core"}

    resp = kms.tag_resource(
        KeyId=key,
        Tags=[{"TagKey": "env", "TagValue": "test"}, {"TagKey": "team", "TagValue": "platform"}],
    )
    assert_request_id(resp)
    assert tags_of(kms, key) == {"team": "platform", "env": "test"}

    kms.untag_resource(KeyId=key, TagKeys=["team"])
    assert tags_of(kms, key) == {"env": "test"}
    # Removing a key that is not there is fine.
    kms.untag_resource(KeyId=key, TagKeys=["absent"])
    assert tags_of(kms, key) == {"env": "test"}

    # Empty values are allowed.
    kms.tag_resource(KeyId=key, Tags=[{"TagKey": "empty", "TagValue": ""}])
    assert tags_of(kms, key) == {"env": "test", "empty": ""}

    # By ARN too.
    arn = kms.describe_key(KeyId=key)["KeyMetadata"]["Arn"]
    assert tags_of(kms, arn) == {"env": "test", "empty": ""}


def test_tag_aws_prefix_rejected(kms):
    key = new_key(kms)["KeyId"]
    expect_error("TagException", kms.tag_resource, KeyId=key, Tags=[{"TagKey": "aws:owner", "TagValue": "x"}])
    expect_error(
        "TagException", kms.create_key, Tags=[{"TagKey": "aws:created", "TagValue": "x"}]
    )
    assert tags_of(kms, key) == {}


def test_tag_limit_50(kms):
    key = new_key(kms)["KeyId"]
    fifty = [{"TagKey": f"k{i:02d}", "TagValue": f"v{i}"} for i in range(50)]
    kms.tag_resource(KeyId=key, Tags=fifty)
    assert len(tags_of(kms, key)) == 50
    # Overwriting an existing tag is not a new tag.
    kms.tag_resource(KeyId=key, Tags=[{"TagKey": "k00", "TagValue": "changed"}])
    assert tags_of(kms, key)["k00"] == "changed"
    expect_error("LimitExceededException", kms.tag_resource, KeyId=key, Tags=[{"TagKey": "one-more", "TagValue": "x"}])
    assert len(tags_of(kms, key)) == 50

    other = new_key(kms)["KeyId"]
    fifty_one = [{"TagKey": f"k{i:02d}", "TagValue": "v"} for i in range(51)]
    expect_error("LimitExceededException", kms.tag_resource, KeyId=other, Tags=fifty_one)
    assert tags_of(kms, other) == {}


def test_list_resource_tags_pagination(kms):
    key = new_key(kms)["KeyId"]
    tags = {f"key{i}": f"value{i}" for i in range(5)}
    kms.tag_resource(KeyId=key, Tags=[{"TagKey": k, "TagValue": v} for k, v in tags.items()])
    got: dict[str, str] = {}
    marker = None
    for _ in range(10):
        kwargs = {"KeyId": key, "Limit": 2}
        if marker:
            kwargs["Marker"] = marker
        resp = kms.list_resource_tags(**kwargs)
        assert len(resp["Tags"]) <= 2
        for t in resp["Tags"]:
            assert t["TagKey"] not in got, "duplicate tag across pages"
            got[t["TagKey"]] = t["TagValue"]
        if not resp["Truncated"]:
            break
        marker = resp["NextMarker"]
    else:
        pytest.fail("ListResourceTags pagination does not end")
    assert got == tags


# -- encrypt / decrypt --------------------------------------------------------


def test_encrypt_decrypt_round_trip(kms):
    meta = new_key(kms)
    for size in (1, 32, 4096):
        plaintext = os.urandom(size)
        out = kms.encrypt(KeyId=meta["KeyId"], Plaintext=plaintext)
        assert_request_id(out)
        assert out["KeyId"] == meta["Arn"]
        assert out["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
        ct = out["CiphertextBlob"]
        # A random 1-byte plaintext occurs somewhere in a 50-byte blob by chance
        # (~18%); from 16 bytes on a chance match is negligible (< 2^-120).
        if size >= 16:
            assert plaintext not in ct
        assert len(ct) == size + 49
        dec = kms.decrypt(CiphertextBlob=ct)
        assert dec["Plaintext"] == plaintext
        assert dec["KeyId"] == meta["Arn"]
        assert dec["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
        # Naming the key explicitly, by id and by ARN.
        assert kms.decrypt(CiphertextBlob=ct, KeyId=meta["KeyId"])["Plaintext"] == plaintext
        assert kms.decrypt(CiphertextBlob=ct, KeyId=meta["Arn"])["Plaintext"] == plaintext
    # Same plaintext twice gives different ciphertexts.
    a = kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"same")["CiphertextBlob"]
    b = kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"same")["CiphertextBlob"]
    assert a != b


def test_encryption_context(kms):
    key = new_key(kms)["KeyId"]
    ctx = {"purpose": "e2e", "tenant": "acme", "ünïcode": "välue"}
    ct = kms.encrypt(KeyId=key, Plaintext=b"bound", EncryptionContext=ctx)["CiphertextBlob"]

    assert kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)["Plaintext"] == b"bound"
    reordered = dict(reversed(list(ctx.items())))
    assert list(reordered) != list(ctx)
    assert kms.decrypt(CiphertextBlob=ct, EncryptionContext=reordered)["Plaintext"] == b"bound"

    expect_error("InvalidCiphertextException", kms.decrypt, CiphertextBlob=ct)
    expect_error("InvalidCiphertextException", kms.decrypt, CiphertextBlob=ct, EncryptionContext={})
    expect_error(
        "InvalidCiphertextException",
        kms.decrypt,
        CiphertextBlob=ct,
        EncryptionContext={**ctx, "purpose": "other"},
    )
    expect_error(
        "InvalidCiphertextException",
        kms.decrypt,
        CiphertextBlob=ct,
        EncryptionContext={k: v for k, v in ctx.items() if k != "tenant"},
    )
    expect_error(
        "InvalidCiphertextException",
        kms.decrypt,
        CiphertextBlob=ct,
        EncryptionContext={**ctx, "extra": "x"},
    )
    # A ciphertext made without context does not decrypt with one.
    plain_ct = kms.encrypt(KeyId=key, Plaintext=b"free")["CiphertextBlob"]
    expect_error(
        "InvalidCiphertextException", kms.decrypt, CiphertextBlob=plain_ct, EncryptionContext={"a": "b"}
    )
    assert kms.decrypt(CiphertextBlob=plain_ct, EncryptionContext={})["Plaintext"] == b"free"


def test_decrypt_with_wrong_key_id(kms):
    k1 = new_key(kms)["KeyId"]
    k2 = new_key(kms)
    ct = kms.encrypt(KeyId=k1, Plaintext=b"for k1")["CiphertextBlob"]
    expect_error("IncorrectKeyException", kms.decrypt, CiphertextBlob=ct, KeyId=k2["KeyId"])
    expect_error("IncorrectKeyException", kms.decrypt, CiphertextBlob=ct, KeyId=k2["Arn"])
    name = alias_name()
    kms.create_alias(AliasName=name, TargetKeyId=k2["KeyId"])
    expect_error("IncorrectKeyException", kms.decrypt, CiphertextBlob=ct, KeyId=name)


def test_decrypt_garbage_is_invalid_ciphertext(kms):
    new_key(kms)
    for blob in (b"\x00", b"not a ciphertext at all", os.urandom(64), os.urandom(200)):
        expect_error("InvalidCiphertextException", kms.decrypt, CiphertextBlob=blob)


def test_every_flipped_byte_and_truncation_is_rejected(kms):
    key = new_key(kms)["KeyId"]
    ct = kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=ct)["Plaintext"] == b"x"
    failures = []
    for i in range(len(ct)):
        tampered = bytearray(ct)
        tampered[i] ^= 0x01
        try:
            kms.decrypt(CiphertextBlob=bytes(tampered))
            failures.append(f"flip at {i}: decrypted")
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code != "InvalidCiphertextException":
                failures.append(f"flip at {i}: {code}")
    for n in range(1, len(ct)):
        try:
            kms.decrypt(CiphertextBlob=ct[:n])
            failures.append(f"truncated to {n}: decrypted")
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code != "InvalidCiphertextException":
                failures.append(f"truncated to {n}: {code}")
    for extra in (b"\x00", b"garbage"):
        try:
            kms.decrypt(CiphertextBlob=ct + extra)
            failures.append(f"extended by {extra!r}: decrypted")
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code != "InvalidCiphertextException":
                failures.append(f"extended by {extra!r}: {code}")
    assert not failures, f"ciphertext of {len(ct)} bytes: " + "; ".join(failures)


# -- re-encrypt ---------------------------------------------------------------


def test_reencrypt_between_keys(kms, account):
    k1 = new_key(kms, "source")
    k2 = new_key(kms, "destination")
    name = alias_name()
    kms.create_alias(AliasName=name, TargetKeyId=k2["KeyId"])
    ct1 = kms.encrypt(KeyId=k1["KeyId"], Plaintext=b"moving", EncryptionContext={"a": "1"})["CiphertextBlob"]

    out = kms.re_encrypt(
        CiphertextBlob=ct1,
        SourceEncryptionContext={"a": "1"},
        DestinationKeyId=name,
        DestinationEncryptionContext={"b": "2"},
    )
    assert_request_id(out)
    assert out["SourceKeyId"] == k1["Arn"]
    assert out["KeyId"] == k2["Arn"]
    assert out["SourceEncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    assert out["DestinationEncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    ct2 = out["CiphertextBlob"]
    assert ct2 != ct1
    dec = kms.decrypt(CiphertextBlob=ct2, EncryptionContext={"b": "2"})
    assert dec == {**dec, "Plaintext": b"moving", "KeyId": k2["Arn"]}
    expect_error("InvalidCiphertextException", kms.decrypt, CiphertextBlob=ct2, EncryptionContext={"a": "1"})
    expect_error("IncorrectKeyException", kms.decrypt, CiphertextBlob=ct2, KeyId=k1["KeyId"], EncryptionContext={"b": "2"})

    # Source key named explicitly; wrong one → IncorrectKeyException.
    out = kms.re_encrypt(
        CiphertextBlob=ct2,
        SourceKeyId=k2["Arn"],
        SourceEncryptionContext={"b": "2"},
        DestinationKeyId=k1["KeyId"],
    )
    assert out["KeyId"] == k1["Arn"] and out["SourceKeyId"] == k2["Arn"]
    assert kms.decrypt(CiphertextBlob=out["CiphertextBlob"])["Plaintext"] == b"moving"
    expect_error(
        "IncorrectKeyException",
        kms.re_encrypt,
        CiphertextBlob=ct2,
        SourceKeyId=k1["KeyId"],
        SourceEncryptionContext={"b": "2"},
        DestinationKeyId=k1["KeyId"],
    )
    # Wrong source context.
    expect_error(
        "InvalidCiphertextException",
        kms.re_encrypt,
        CiphertextBlob=ct1,
        SourceEncryptionContext={"a": "2"},
        DestinationKeyId=k2["KeyId"],
    )
    # Unknown destination.
    expect_error(
        "NotFoundException",
        kms.re_encrypt,
        CiphertextBlob=ct1,
        SourceEncryptionContext={"a": "1"},
        DestinationKeyId=str(uuid.uuid4()),
    )


def test_reencrypt_to_same_key(kms):
    meta = new_key(kms)
    ct = kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"same key")["CiphertextBlob"]
    out = kms.re_encrypt(CiphertextBlob=ct, DestinationKeyId=meta["Arn"])
    assert out["KeyId"] == meta["Arn"] == out["SourceKeyId"]
    assert kms.decrypt(CiphertextBlob=out["CiphertextBlob"])["Plaintext"] == b"same key"


# -- data keys and random -----------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, length",
    [
        ({"KeySpec": "AES_256"}, 32),
        ({"KeySpec": "AES_128"}, 16),
        ({"NumberOfBytes": 1}, 1),
        ({"NumberOfBytes": 64}, 64),
        ({"NumberOfBytes": 1024}, 1024),
    ],
)
def test_generate_data_key(kms, kwargs, length):
    meta = new_key(kms)
    out = kms.generate_data_key(KeyId=meta["KeyId"], **kwargs)
    assert_request_id(out)
    assert out["KeyId"] == meta["Arn"]
    assert len(out["Plaintext"]) == length
    dec = kms.decrypt(CiphertextBlob=out["CiphertextBlob"])
    assert dec["Plaintext"] == out["Plaintext"]
    assert dec["KeyId"] == meta["Arn"]
    again = kms.generate_data_key(KeyId=meta["Arn"], **kwargs)
    if length >= 16:
        assert again["Plaintext"] != out["Plaintext"]


def test_generate_data_key_with_context_and_alias(kms, account):
    meta = new_key(kms)
    name = alias_name()
    kms.create_alias(AliasName=name, TargetKeyId=meta["KeyId"])
    ctx = {"file": "report.pdf", "owner": "alice"}
    out = kms.generate_data_key(
        KeyId=f"arn:aws:kms:us-east-1:{account.account_id}:{name}", KeySpec="AES_256", EncryptionContext=ctx
    )
    assert out["KeyId"] == meta["Arn"]
    assert kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"] == out["Plaintext"]
    expect_error("InvalidCiphertextException", kms.decrypt, CiphertextBlob=out["CiphertextBlob"])


def test_generate_data_key_without_plaintext(kms):
    meta = new_key(kms)
    out = kms.generate_data_key_without_plaintext(
        KeyId=meta["KeyId"], KeySpec="AES_256", EncryptionContext={"k": "v"}
    )
    assert_request_id(out)
    assert "Plaintext" not in out
    assert out["KeyId"] == meta["Arn"]
    dec = kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"k": "v"})
    assert len(dec["Plaintext"]) == 32
    out = kms.generate_data_key_without_plaintext(KeyId=meta["Arn"], NumberOfBytes=7)
    assert len(kms.decrypt(CiphertextBlob=out["CiphertextBlob"])["Plaintext"]) == 7
    out = kms.generate_data_key_without_plaintext(KeyId=meta["Arn"], KeySpec="AES_128")
    assert len(kms.decrypt(CiphertextBlob=out["CiphertextBlob"])["Plaintext"]) == 16


@pytest.mark.parametrize("op", ["generate_data_key", "generate_data_key_without_plaintext"])
def test_generate_data_key_spec_rules(kms, op):
    key = new_key(kms)["KeyId"]
    fn = getattr(kms, op)
    expect_error("ValidationException", fn, KeyId=key, KeySpec="AES_256", NumberOfBytes=32)
    expect_error("ValidationException", fn, KeyId=key)
    expect_error("ValidationException", fn, KeyId=key, KeySpec="AES_512")


def test_generate_random(kms):
    for n in (1, 32, 1024):
        out = kms.generate_random(NumberOfBytes=n)
        assert_request_id(out)
        assert len(out["Plaintext"]) == n
    a = kms.generate_random(NumberOfBytes=32)["Plaintext"]
    b = kms.generate_random(NumberOfBytes=32)["Plaintext"]
    assert a != b
    # 1 KiB of output uses most byte values (a constant or counter would not).
    assert len(set(kms.generate_random(NumberOfBytes=1024)["Plaintext"])) > 200


# -- dry run ------------------------------------------------------------------


def test_dry_run(kms):
    meta = new_key(kms)
    other = new_key(kms)
    key = meta["KeyId"]
    ct = kms.encrypt(KeyId=key, Plaintext=b"dry")["CiphertextBlob"]
    expect_error("DryRunOperationException", kms.encrypt, KeyId=key, Plaintext=b"x", DryRun=True, status=412)
    expect_error("DryRunOperationException", kms.decrypt, CiphertextBlob=ct, DryRun=True, status=412)
    expect_error(
        "DryRunOperationException", kms.generate_data_key, KeyId=key, KeySpec="AES_256", DryRun=True, status=412
    )
    expect_error(
        "DryRunOperationException",
        kms.generate_data_key_without_plaintext,
        KeyId=key,
        KeySpec="AES_256",
        DryRun=True,
        status=412,
    )
    expect_error(
        "DryRunOperationException",
        kms.re_encrypt,
        CiphertextBlob=ct,
        DestinationKeyId=other["KeyId"],
        DryRun=True,
        status=412,
    )
    # DryRun=False behaves normally.
    assert kms.decrypt(CiphertextBlob=ct, DryRun=False)["Plaintext"] == b"dry"


# -- tenant isolation ---------------------------------------------------------


def test_tenant_isolation(server, new_client):
    a = new_client()
    b = new_client()
    a_meta = new_key(a, "A's key", Tags=[{"TagKey": "owner", "TagValue": "a"}])
    a_key, a_arn = a_meta["KeyId"], a_meta["Arn"]
    a_alias = alias_name()
    a.create_alias(AliasName=a_alias, TargetKeyId=a_key)
    a_ct = a.encrypt(KeyId=a_key, Plaintext=b"A's secret")["CiphertextBlob"]
    a_ctx_ct = a.encrypt(KeyId=a_key, Plaintext=b"A's secret", EncryptionContext={"c": "1"})["CiphertextBlob"]
    a_account = a_arn.split(":")[4]
    a_alias_arn = f"arn:aws:kms:us-east-1:{a_account}:{a_alias}"
    b_key = new_key(b, "B's key")["KeyId"]

    for ref in (a_key, a_arn, a_alias, a_alias_arn):
        expect_error("NotFoundException", b.describe_key, KeyId=ref)
        expect_error("NotFoundException", b.encrypt, KeyId=ref, Plaintext=b"x")
        expect_error("NotFoundException", b.generate_data_key, KeyId=ref, KeySpec="AES_256")
    for fn, kwargs in [
        (b.disable_key, {}),
        (b.enable_key, {}),
        (b.schedule_key_deletion, {"PendingWindowInDays": 7}),
        (b.cancel_key_deletion, {}),
        (b.update_key_description, {"Description": "pwned"}),
        (b.tag_resource, {"Tags": [{"TagKey": "owner", "TagValue": "b"}]}),
        (b.untag_resource, {"TagKeys": ["owner"]}),
        (b.list_resource_tags, {}),
        (b.generate_data_key_without_plaintext, {"KeySpec": "AES_256"}),
    ]:
        expect_error("NotFoundException", fn, KeyId=a_arn, **kwargs)
    expect_error("NotFoundException", b.create_alias, AliasName=alias_name(), TargetKeyId=a_arn)
    expect_error("NotFoundException", b.delete_alias, AliasName=a_alias)
    expect_error("NotFoundException", b.update_alias, AliasName=a_alias, TargetKeyId=b_key)

    # A's ciphertexts are meaningless to B.
    expect_error("InvalidCiphertextException", b.decrypt, CiphertextBlob=a_ct)
    expect_error("InvalidCiphertextException", b.decrypt, CiphertextBlob=a_ctx_ct, EncryptionContext={"c": "1"})
    expect_error("InvalidCiphertextException", b.re_encrypt, CiphertextBlob=a_ct, DestinationKeyId=b_key)
    with pytest.raises(ClientError) as info:
        b.decrypt(CiphertextBlob=a_ct, KeyId=a_arn)
    assert info.value.response["Error"]["Code"] in ("NotFoundException", "InvalidCiphertextException")

    # B's listings show nothing of A.
    assert [k["KeyId"] for k in b.list_keys()["Keys"]] == [b_key]
    b_aliases = b.list_aliases()["Aliases"]
    assert a_alias not in [x["AliasName"] for x in b_aliases]
    assert all(a_key != x.get("TargetKeyId") for x in b_aliases)
    with pytest.raises(ClientError):
        b.list_aliases(KeyId=a_arn)

    # B may use the same alias name in its own account.
    b.create_alias(AliasName=a_alias, TargetKeyId=b_key)
    assert b.encrypt(KeyId=a_alias, Plaintext=b"x")["KeyId"].endswith(b_key)

    # And A's key is exactly as A left it.
    meta = a.describe_key(KeyId=a_key)["KeyMetadata"]
    assert meta["KeyState"] == "Enabled"
    assert meta["Description"] == "A's key"
    assert tags_of(a, a_key) == {"owner": "a"}
    assert a.decrypt(CiphertextBlob=a_ct)["Plaintext"] == b"A's secret"
    assert a.encrypt(KeyId=a_alias, Plaintext=b"x")["KeyId"] == a_arn
    assert [k["KeyId"] for k in a.list_keys()["Keys"]] == [a_key]


def test_second_credential_of_account_sees_same_keys(server, account, kms):
    key = new_key(kms)["KeyId"]
    ct = kms.encrypt(KeyId=key, Plaintext=b"shared")["CiphertextBlob"]
    second = server.create_credential(account.account_id)
    assert second.account_id == account.account_id
    assert second.access_key_id != account.access_key_id
    other = server.client(second)
    assert other.decrypt(CiphertextBlob=ct)["Plaintext"] == b"shared"
    assert [k["KeyId"] for k in other.list_keys()["Keys"]] == [key]
