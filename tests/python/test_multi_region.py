"""Multi-Region keys (docs/multi-region.md): one server serving two regions,
two boto3 clients of one account, one per region.

AWS semantics: https://docs.aws.amazon.com/kms/latest/developerguide/multi-region-keys-overview.html
"""

from __future__ import annotations

import os
import re
import time
import uuid

import pytest

from kw_helpers import KeywardenServer, expect_error, keywarden_bin

A = "us-east-1"
B = "eu-west-1"
MRK_RE = re.compile(r"^mrk-[0-9a-f]{32}$")


def start(tmp_path, **kwargs) -> KeywardenServer:
    srv = KeywardenServer(
        bin_path=keywarden_bin(),
        data_dir=tmp_path / "data",
        log_path=tmp_path / "server.log",
        stdout_path=tmp_path / "server.stdout",
        extra_args=["--region", A, "--regions", B],
        **kwargs,
    )
    srv.start()
    return srv


@pytest.fixture(scope="module")
def two_regions(tmp_path_factory, isolated_aws_env):
    srv = start(tmp_path_factory.mktemp("multi-region"))
    yield srv
    assert srv.stop() == 0


@pytest.fixture
def clients(two_regions):
    account = two_regions.create_account()
    return (
        account,
        two_regions.client(account, region=A),
        two_regions.client(account, region=B),
    )


def mrk(kms, **kwargs) -> dict:
    return kms.create_key(MultiRegion=True, **kwargs)["KeyMetadata"]


def test_create_replicate_and_decrypt_across_regions(clients):
    account, a, b = clients
    meta = mrk(a, Description="primary")
    key = meta["KeyId"]
    assert MRK_RE.match(key), key
    assert meta["MultiRegion"] is True
    assert meta["Arn"] == f"arn:aws:kms:{A}:{account.account_id}:key/{key}"
    config = meta["MultiRegionConfiguration"]
    assert config["MultiRegionKeyType"] == "PRIMARY"
    assert config["PrimaryKey"] == {"Arn": meta["Arn"], "Region": A}
    assert config["ReplicaKeys"] == []
    # Not in B until replicated.
    expect_error("NotFoundException", b.describe_key, KeyId=key)

    blob_a = a.encrypt(KeyId=key, Plaintext=b"from A", EncryptionContext={"x": "1"})["CiphertextBlob"]
    out = a.replicate_key(
        KeyId=key, ReplicaRegion=B, Description="replica", Tags=[{"TagKey": "r", "TagValue": "b"}]
    )
    replica = out["ReplicaKeyMetadata"]
    b_arn = f"arn:aws:kms:{B}:{account.account_id}:key/{key}"
    assert replica["Arn"] == b_arn
    assert replica["KeyId"] == key
    assert replica["Description"] == "replica"
    assert replica["KeyState"] == "Enabled"
    assert replica["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"
    assert out["ReplicaTags"] == [{"TagKey": "r", "TagValue": "b"}]
    assert '"Version"' in out["ReplicaPolicy"]

    # Encrypted in A, decrypted in B (with and without naming the key), and back.
    plain = b.decrypt(CiphertextBlob=blob_a, EncryptionContext={"x": "1"})
    assert plain["Plaintext"] == b"from A"
    assert plain["KeyId"] == b_arn
    assert b.decrypt(KeyId=key, CiphertextBlob=blob_a, EncryptionContext={"x": "1"})["Plaintext"] == b"from A"
    blob_b = b.encrypt(KeyId=b_arn, Plaintext=b"from B")["CiphertextBlob"]
    assert a.decrypt(CiphertextBlob=blob_b)["Plaintext"] == b"from B"

    # Each region's DescribeKey names both keys; the metadata of each region is its own.
    for client, kind, desc in ((a, "PRIMARY", "primary"), (b, "REPLICA", "replica")):
        m = client.describe_key(KeyId=key)["KeyMetadata"]
        assert m["Description"] == desc
        c = m["MultiRegionConfiguration"]
        assert c["MultiRegionKeyType"] == kind
        assert c["PrimaryKey"]["Region"] == A
        assert c["ReplicaKeys"] == [{"Arn": b_arn, "Region": B}]
    assert b.list_resource_tags(KeyId=key)["Tags"] == [{"TagKey": "r", "TagValue": "b"}]
    assert a.list_resource_tags(KeyId=key)["Tags"] == []
    # Disabling the replica leaves the primary alone.
    b.disable_key(KeyId=key)
    expect_error("DisabledException", b.encrypt, KeyId=key, Plaintext=b"x")
    a.encrypt(KeyId=key, Plaintext=b"x")
    b.enable_key(KeyId=key)


def test_rotation_is_shared_and_managed_on_the_primary(clients):
    _, a, b = clients
    key = mrk(a)["KeyId"]
    a.replicate_key(KeyId=key, ReplicaRegion=B)
    old = a.encrypt(KeyId=key, Plaintext=b"v1")["CiphertextBlob"]
    a.rotate_key_on_demand(KeyId=key)
    new_a = a.encrypt(KeyId=key, Plaintext=b"v2a")["CiphertextBlob"]
    new_b = b.encrypt(KeyId=key, Plaintext=b"v2b")["CiphertextBlob"]
    assert new_a != old
    for client in (a, b):
        assert client.decrypt(CiphertextBlob=old)["Plaintext"] == b"v1"
        assert client.decrypt(CiphertextBlob=new_a)["Plaintext"] == b"v2a"
        assert client.decrypt(CiphertextBlob=new_b)["Plaintext"] == b"v2b"
    assert len(b.list_key_rotations(KeyId=key)["Rotations"]) == 1
    # Rotation is changed only on the primary.
    expect_error("UnsupportedOperationException", b.rotate_key_on_demand, KeyId=key)
    expect_error("UnsupportedOperationException", b.enable_key_rotation, KeyId=key)
    a.enable_key_rotation(KeyId=key)
    assert b.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is True


def test_update_primary_region(clients):
    account, a, b = clients
    key = mrk(a)["KeyId"]
    a.replicate_key(KeyId=key, ReplicaRegion=B)
    a.update_primary_region(KeyId=key, PrimaryRegion=B)
    assert b.describe_key(KeyId=key)["KeyMetadata"]["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY"
    cfg = a.describe_key(KeyId=key)["KeyMetadata"]["MultiRegionConfiguration"]
    assert cfg["MultiRegionKeyType"] == "REPLICA"
    assert cfg["PrimaryKey"] == {"Arn": f"arn:aws:kms:{B}:{account.account_id}:key/{key}", "Region": B}
    assert cfg["ReplicaKeys"] == [{"Arn": f"arn:aws:kms:{A}:{account.account_id}:key/{key}", "Region": A}]
    # Now A is a replica: it can neither replicate nor move the primary.
    expect_error("UnsupportedOperationException", a.update_primary_region, KeyId=key, PrimaryRegion=B)
    expect_error("UnsupportedOperationException", a.rotate_key_on_demand, KeyId=key)
    b.rotate_key_on_demand(KeyId=key)
    blob = b.encrypt(KeyId=key, Plaintext=b"after")["CiphertextBlob"]
    assert a.decrypt(CiphertextBlob=blob)["Plaintext"] == b"after"
    b.update_primary_region(KeyId=key, PrimaryRegion=A)
    assert a.describe_key(KeyId=key)["KeyMetadata"]["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY"
    expect_error("ValidationException", a.update_primary_region, KeyId=key, PrimaryRegion=A)


def test_aliases_and_list_keys_are_per_region(clients):
    _, a, b = clients
    key = mrk(a)["KeyId"]
    single_a = a.create_key()["KeyMetadata"]["KeyId"]
    single_b = b.create_key()["KeyMetadata"]
    assert single_b["Arn"].startswith(f"arn:aws:kms:{B}:")
    name = f"alias/mr-{uuid.uuid4().hex[:8]}"
    a.create_alias(AliasName=name, TargetKeyId=key)
    # The key has no replica in B yet: the alias cannot point at it there.
    expect_error("NotFoundException", b.create_alias, AliasName=name, TargetKeyId=key)
    a.replicate_key(KeyId=key, ReplicaRegion=B)
    b.create_alias(AliasName=name, TargetKeyId=single_b["KeyId"])
    assert a.describe_key(KeyId=name)["KeyMetadata"]["KeyId"] == key
    assert b.describe_key(KeyId=name)["KeyMetadata"]["KeyId"] == single_b["KeyId"]
    a_aliases = {x["AliasName"]: x for x in a.list_aliases()["Aliases"]}
    b_aliases = {x["AliasName"]: x for x in b.list_aliases()["Aliases"]}
    assert a_aliases[name]["TargetKeyId"] == key
    assert a_aliases[name]["AliasArn"].startswith(f"arn:aws:kms:{A}:")
    assert b_aliases[name]["TargetKeyId"] == single_b["KeyId"]
    assert b_aliases[name]["AliasArn"].startswith(f"arn:aws:kms:{B}:")
    # Keys per region: the single-Region keys in their own region only.
    keys_a = {k["KeyId"]: k["KeyArn"] for k in a.list_keys()["Keys"]}
    keys_b = {k["KeyId"]: k["KeyArn"] for k in b.list_keys()["Keys"]}
    assert set(keys_a) == {key, single_a}
    assert set(keys_b) == {key, single_b["KeyId"]}
    assert keys_b[key].startswith(f"arn:aws:kms:{B}:")
    # Paginated: one key a page still lists each once.
    seen, marker = [], None
    while True:
        page = b.list_keys(Limit=1, **({"Marker": marker} if marker else {}))
        seen += [k["KeyId"] for k in page["Keys"]]
        if not page["Truncated"]:
            break
        marker = page["NextMarker"]
    assert sorted(seen) == sorted(keys_b)
    # A key ARN of the other region is not found.
    expect_error("NotFoundException", b.describe_key, KeyId=keys_a[single_a])


def test_deletion_rules(clients):
    _, a, b = clients
    key = mrk(a)["KeyId"]
    a.replicate_key(KeyId=key, ReplicaRegion=B)
    # The primary with a replica waits for it: no date, the window kept.
    out = a.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    assert out["KeyState"] == "PendingReplicaDeletion"
    assert "DeletionDate" not in out
    meta = a.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "PendingReplicaDeletion"
    assert meta["PendingDeletionWindowInDays"] == 7
    expect_error("KMSInvalidStateException", a.encrypt, KeyId=key, Plaintext=b"x")
    # The replica is independent.
    assert b.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"
    b.encrypt(KeyId=key, Plaintext=b"x")
    a.cancel_key_deletion(KeyId=key)
    assert a.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Disabled"
    out = b.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    assert out["KeyState"] == "PendingDeletion"
    assert "DeletionDate" in out
    assert a.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Disabled"
    b.cancel_key_deletion(KeyId=key)


def test_bad_input(clients):
    _, a, b = clients
    key = mrk(a)["KeyId"]
    single = a.create_key()["KeyMetadata"]["KeyId"]
    expect_error("UnsupportedOperationException", a.replicate_key, KeyId=key, ReplicaRegion="ap-south-1")
    expect_error("ValidationException", a.replicate_key, KeyId=key, ReplicaRegion=A)
    expect_error("ValidationException", a.replicate_key, KeyId=key, ReplicaRegion="Not A Region")
    expect_error("UnsupportedOperationException", a.replicate_key, KeyId=single, ReplicaRegion=B)
    a.replicate_key(KeyId=key, ReplicaRegion=B)
    expect_error("AlreadyExistsException", a.replicate_key, KeyId=key, ReplicaRegion=B)
    # A replica cannot be replicated.
    expect_error("UnsupportedOperationException", b.replicate_key, KeyId=key, ReplicaRegion=A)
    expect_error("UnsupportedOperationException", a.update_primary_region, KeyId=single, PrimaryRegion=B)
    lonely = mrk(a)["KeyId"]
    expect_error("NotFoundException", a.update_primary_region, KeyId=lonely, PrimaryRegion=B)
    expect_error("UnsupportedOperationException", a.create_key, MultiRegion=True, Origin="EXTERNAL")
    # The unserved region is refused by SigV4.
    expect_error("InvalidSignatureException", two_region_client(a, "ap-south-1").list_keys)


def two_region_client(client, region):
    import boto3

    creds = client._request_signer._credentials
    return boto3.client(
        "kms",
        endpoint_url=client.meta.endpoint_url,
        region_name=region,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
    )


@pytest.mark.skipif(
    os.environ.get("KEYWARDEN_RELEASE_BIN") == "1", reason="the test clock needs a debug build"
)
def test_replica_deletion_executes_and_starts_the_primary_window(tmp_path, isolated_aws_env):
    srv = start(tmp_path)
    try:
        account = srv.create_account()
        a, b = srv.client(account, region=A), srv.client(account, region=B)
        key = mrk(a)["KeyId"]
        a.replicate_key(KeyId=key, ReplicaRegion=B)
        name = "alias/replica-only"
        b.create_alias(AliasName=name, TargetKeyId=key)
        a.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
        b.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    finally:
        assert srv.stop() == 0
    # Eight days later (the test clock; SigV4 checks that clock too, so the
    # server only runs its deletion sweep then) the replica is gone.
    srv.extra_env["KEYWARDEN_TEST_CLOCK_OFFSET_DAYS"] = "8"
    srv.extra_args.append("--deletion-sweep-secs=1")
    srv.start()
    time.sleep(4)
    assert srv.stop() == 0
    del srv.extra_env["KEYWARDEN_TEST_CLOCK_OFFSET_DAYS"]
    srv.start()
    try:
        a, b = srv.client(account, region=A), srv.client(account, region=B)
        meta = a.describe_key(KeyId=key)["KeyMetadata"]
        # The primary's own window began when its last replica went.
        assert meta["KeyState"] == "PendingDeletion", meta
        assert "DeletionDate" in meta
        assert meta["MultiRegionConfiguration"]["ReplicaKeys"] == []
        expect_error("NotFoundException", b.describe_key, KeyId=key)
        assert name not in {x["AliasName"] for x in b.list_aliases()["Aliases"]}
    finally:
        assert srv.stop() == 0
