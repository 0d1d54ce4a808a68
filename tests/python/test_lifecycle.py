"""Key lifecycle: rotation through boto3 (as an AWS KMS client sees it), and
deletion protection, a Keywarden extension that boto3 does not know, through
raw SigV4-signed requests (`KeywardenService.<Operation>`).

Automatic rotation needs at least 90 days to pass; it is tested with an
injected clock in crates/keywarden/tests/clock/rotation.rs. Here: the API.
"""

from __future__ import annotations

import datetime
import json
import struct
import uuid

import pytest

from kw_helpers import RawResponse, expect_error, raw_post

DAY = datetime.timedelta(days=1)
SLACK = datetime.timedelta(minutes=5)


def new_key(kms) -> dict:
    return kms.create_key()["KeyMetadata"]


def version_of(blob: bytes) -> int:
    """The key version in a ciphertext blob's header (docs/ciphertext-format.md)."""
    assert blob[0] == 1, blob[:1]
    return struct.unpack(">I", blob[17:21])[0]


def unvalidated(server, account):
    """A boto3 client that sends what it is given: botocore otherwise refuses
    out-of-range minimums and wrong types before sending."""
    return server.client(account, parameter_validation=False)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


# -- rotation through boto3 -----------------------------------------------------


def test_rotation_status_enable_disable(kms):
    meta = new_key(kms)
    key, arn = meta["KeyId"], meta["Arn"]

    st = kms.get_key_rotation_status(KeyId=key)
    assert st["KeyRotationEnabled"] is False
    assert st["KeyId"] == arn
    for absent in ("RotationPeriodInDays", "NextRotationDate", "OnDemandRotationStartDate"):
        assert absent not in st, absent

    enabled_at = now()
    assert kms.enable_key_rotation(KeyId=key)["ResponseMetadata"]["HTTPStatusCode"] == 200
    st = kms.get_key_rotation_status(KeyId=arn)
    assert st["KeyRotationEnabled"] is True
    assert st["KeyId"] == arn
    assert st["RotationPeriodInDays"] == 365
    assert abs(st["NextRotationDate"] - (enabled_at + 365 * DAY)) < SLACK
    assert "OnDemandRotationStartDate" not in st

    # Re-enabling with a new period updates it (the running interval ends at
    # its start plus the new period).
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    st = kms.get_key_rotation_status(KeyId=key)
    assert st["RotationPeriodInDays"] == 90
    assert abs(st["NextRotationDate"] - (enabled_at + 90 * DAY)) < SLACK

    kms.disable_key_rotation(KeyId=key)
    st = kms.get_key_rotation_status(KeyId=key)
    assert st == {**st, "KeyRotationEnabled": False, "KeyId": arn}
    assert "RotationPeriodInDays" not in st and "NextRotationDate" not in st
    # Disabling twice is fine.
    kms.disable_key_rotation(KeyId=key)


@pytest.mark.parametrize("days", [90, 2560])
def test_rotation_period_bounds_accepted(kms, days):
    key = new_key(kms)["KeyId"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=days)
    assert kms.get_key_rotation_status(KeyId=key)["RotationPeriodInDays"] == days


@pytest.mark.parametrize("days", [89, 2561, 0, -365])
def test_rotation_period_out_of_range(server, account, kms, days):
    key = new_key(kms)["KeyId"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=180)
    raw = unvalidated(server, account)
    err = expect_error("ValidationException", raw.enable_key_rotation, KeyId=key, RotationPeriodInDays=days, status=400)
    assert "rotationPeriodInDays" in err.response["Error"]["Message"]
    assert kms.get_key_rotation_status(KeyId=key)["RotationPeriodInDays"] == 180


def test_botocore_checks_the_minimum_period_itself(kms):
    # What a user with the default client sees for 89: botocore refuses it
    # before sending (it checks minimums, not maximums).
    from botocore.exceptions import ParamValidationError

    key = new_key(kms)["KeyId"]
    with pytest.raises(ParamValidationError):
        kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=89)
    expect_error("ValidationException", kms.enable_key_rotation, KeyId=key, RotationPeriodInDays=2561)


@pytest.mark.parametrize(
    "op, kwargs",
    [
        ("enable_key_rotation", {"RotationPeriodInDays": "365"}),
        ("enable_key_rotation", {"RotationPeriodInDays": 365.5}),
        ("enable_key_rotation", {"KeyId": 5}),
        ("disable_key_rotation", {"KeyId": ["a"]}),
        ("get_key_rotation_status", {"KeyId": True}),
        ("rotate_key_on_demand", {"KeyId": {"id": "x"}}),
        ("list_key_rotations", {"Limit": "2"}),
        ("list_key_rotations", {"Marker": 7}),
        ("list_key_rotations", {"IncludeKeyMaterial": 1}),
    ],
)
def test_rotation_wrong_types_are_serialization_errors(server, account, kms, op, kwargs):
    key = new_key(kms)["KeyId"]
    raw = unvalidated(server, account)
    expect_error("SerializationException", getattr(raw, op), **{"KeyId": key, **kwargs}, status=400)
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is False
    assert kms.list_key_rotations(KeyId=key)["Rotations"] == []


def test_rotate_on_demand_old_ciphertexts_and_limit(kms):
    meta = new_key(kms)
    key, arn = meta["KeyId"], meta["Arn"]
    made: list[tuple[bytes, bytes]] = []
    started = now()
    for i in range(11):
        plaintext = f"made with version {i + 1}".encode()
        ct = kms.encrypt(KeyId=key, Plaintext=plaintext, EncryptionContext={"i": str(i)})["CiphertextBlob"]
        assert version_of(ct) == i + 1, "new ciphertexts use the newest version"
        made.append((ct, plaintext))
        if i < 10:
            resp = kms.rotate_key_on_demand(KeyId=key if i % 2 else arn)
            assert resp["KeyId"] == key
    err = expect_error("LimitExceededException", kms.rotate_key_on_demand, KeyId=key, status=400)
    assert "10" in err.response["Error"]["Message"]

    # Every version still decrypts.
    for i, (ct, plaintext) in enumerate(made):
        out = kms.decrypt(CiphertextBlob=ct, EncryptionContext={"i": str(i)})
        assert out["Plaintext"] == plaintext and out["KeyId"] == arn

    # Data keys use the newest version; ReEncrypt moves an old ciphertext to it.
    dk = kms.generate_data_key(KeyId=key, KeySpec="AES_256")
    assert version_of(dk["CiphertextBlob"]) == 11
    oldest, plaintext = made[0]
    moved = kms.re_encrypt(
        CiphertextBlob=oldest,
        SourceEncryptionContext={"i": "0"},
        DestinationKeyId=key,
        DestinationEncryptionContext={"i": "0"},
    )["CiphertextBlob"]
    assert moved != oldest
    assert (version_of(oldest), version_of(moved)) == (1, 11)
    assert kms.decrypt(CiphertextBlob=moved, EncryptionContext={"i": "0"})["Plaintext"] == plaintext

    # The rotations are listed, oldest first.
    rotations = kms.list_key_rotations(KeyId=key)["Rotations"]
    assert len(rotations) == 10
    for r in rotations:
        assert r["KeyId"] == arn
        assert r["RotationType"] == "ON_DEMAND"
        assert started - SLACK <= r["RotationDate"] <= now() + SLACK
    assert [r["RotationDate"] for r in rotations] == sorted(r["RotationDate"] for r in rotations)
    assert rotations[-1]["KeyMaterialState"] == "CURRENT"
    assert {r["KeyMaterialState"] for r in rotations[:-1]} == {"NON_CURRENT"}
    # On-demand rotations leave automatic rotation off.
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is False


def test_list_key_rotations_pagination_and_markers(server, account, kms):
    meta = new_key(kms)
    key = meta["KeyId"]
    other = new_key(kms)["KeyId"]
    for _ in range(5):
        kms.rotate_key_on_demand(KeyId=key)
        kms.rotate_key_on_demand(KeyId=other)

    first = kms.list_key_rotations(KeyId=key)
    assert first["Truncated"] is False and "NextMarker" not in first
    everything = first["Rotations"]
    assert len(everything) == 5

    paged, marker, pages = [], None, 0
    while True:
        kwargs = {"KeyId": key, "Limit": 2}
        if marker:
            kwargs["Marker"] = marker
        page = kms.list_key_rotations(**kwargs)
        pages += 1
        assert len(page["Rotations"]) <= 2
        paged += page["Rotations"]
        if not page["Truncated"]:
            assert "NextMarker" not in page
            break
        marker = page["NextMarker"]
    assert (paged, pages) == (everything, 3)

    # The paginator botocore ships for the operation works too.
    got = [r for p in kms.get_paginator("list_key_rotations").paginate(KeyId=key, PaginationConfig={"PageSize": 2}) for r in p["Rotations"]]
    assert got == everything

    # Markers we did not issue for this key's listing.
    marker_of_this_key = kms.list_key_rotations(KeyId=key, Limit=1)["NextMarker"]
    other_marker = kms.list_key_rotations(KeyId=other, Limit=1)["NextMarker"]
    for bad in ("garbage", str(uuid.uuid4()), other_marker, f"{key}/99", f"{key}/-1", f"{key}/+2", "1"):
        expect_error("InvalidMarkerException", kms.list_key_rotations, KeyId=key, Marker=bad, status=400)
    expect_error("InvalidMarkerException", kms.list_key_rotations, KeyId=other, Marker=marker_of_this_key)
    # A ListKeys marker is not a ListKeyRotations marker.
    new_key(kms)
    keys_marker = kms.list_keys(Limit=1)["NextMarker"]
    expect_error("InvalidMarkerException", kms.list_key_rotations, KeyId=key, Marker=keys_marker)

    raw = unvalidated(server, account)
    for limit in (0, 1001):
        expect_error("ValidationException", raw.list_key_rotations, KeyId=key, Limit=limit, status=400)


def test_include_key_material(server, account, kms):
    meta = new_key(kms)
    key = meta["KeyId"]
    kms.rotate_key_on_demand(KeyId=key)
    only = kms.list_key_rotations(KeyId=key, IncludeKeyMaterial="ROTATIONS_ONLY")["Rotations"]
    assert [r["RotationType"] for r in only] == ["ON_DEMAND"]
    assert kms.list_key_rotations(KeyId=key)["Rotations"] == only
    everything = kms.list_key_rotations(KeyId=key, IncludeKeyMaterial="ALL_KEY_MATERIAL")["Rotations"]
    assert len(everything) == 2
    initial, rotated = everything
    assert initial["KeyId"] == meta["Arn"]
    assert "RotationType" not in initial and "RotationDate" not in initial
    assert initial["KeyMaterialState"] == "NON_CURRENT"
    assert rotated == only[0] and rotated["KeyMaterialState"] == "CURRENT"
    err = expect_error(
        "ValidationException",
        unvalidated(server, account).list_key_rotations,
        KeyId=key,
        IncludeKeyMaterial="SOME_KEY_MATERIAL",
        status=400,
    )
    assert "includeKeyMaterial" in err.response["Error"]["Message"]


def test_rotation_state_rules(kms):
    key = new_key(kms)["KeyId"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=180)

    # Disabled: DisabledException, as AWS; the status is still readable.
    kms.disable_key(KeyId=key)
    expect_error("DisabledException", kms.enable_key_rotation, KeyId=key)
    expect_error("DisabledException", kms.disable_key_rotation, KeyId=key)
    expect_error("DisabledException", kms.rotate_key_on_demand, KeyId=key)
    st = kms.get_key_rotation_status(KeyId=key)
    assert st["KeyRotationEnabled"] is True and st["RotationPeriodInDays"] == 180
    assert kms.list_key_rotations(KeyId=key)["Rotations"] == []
    kms.enable_key(KeyId=key)

    # Pending deletion: KMSInvalidStateException; the status reads "off"
    # and comes back when the deletion is cancelled.
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    expect_error("KMSInvalidStateException", kms.enable_key_rotation, KeyId=key)
    expect_error("KMSInvalidStateException", kms.disable_key_rotation, KeyId=key)
    expect_error("KMSInvalidStateException", kms.rotate_key_on_demand, KeyId=key)
    st = kms.get_key_rotation_status(KeyId=key)
    assert st["KeyRotationEnabled"] is False and "RotationPeriodInDays" not in st
    assert kms.list_key_rotations(KeyId=key)["Rotations"] == []
    kms.cancel_key_deletion(KeyId=key)
    st = kms.get_key_rotation_status(KeyId=key)
    assert st["KeyRotationEnabled"] is True and st["RotationPeriodInDays"] == 180


def test_rotation_by_alias_and_unknown_keys(kms, new_client):
    meta = new_key(kms)
    alias = f"alias/rot-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
    kms.enable_key_rotation(KeyId=alias)
    assert kms.get_key_rotation_status(KeyId=meta["KeyId"])["KeyRotationEnabled"] is True

    missing = str(uuid.uuid4())
    for op in ("enable_key_rotation", "disable_key_rotation", "get_key_rotation_status", "rotate_key_on_demand", "list_key_rotations"):
        expect_error("NotFoundException", getattr(kms, op), KeyId=missing)
        # Another tenant's key is not found either.
        expect_error("NotFoundException", getattr(new_client(), op), KeyId=meta["Arn"])
    expect_error("InvalidArnException", kms.rotate_key_on_demand, KeyId="arn:aws:s3:::bucket")


# -- deletion protection (extension, raw requests) ------------------------------


def ext(name: str) -> str:
    return f"KeywardenService.{name}"


def aws(name: str) -> str:
    return f"TrentService.{name}"


def call(server, account, target: str, body) -> RawResponse:
    if not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    return raw_post(server.url, body, target=target, account=account)


def protection_of(server, account, key_id: str) -> bool:
    resp = call(server, account, aws("DescribeKey"), {"KeyId": key_id})
    assert resp.status == 200, resp.describe()
    value = resp.json()["KeyMetadata"]["DeletionProtectionEnabled"]
    assert isinstance(value, bool)
    return value


def test_deletion_protection(server, account, kms):
    meta = new_key(kms)
    key = meta["KeyId"]
    assert protection_of(server, account, key) is False

    resp = call(server, account, ext("EnableKeyDeletionProtection"), {"KeyId": key})
    assert resp.status == 200, resp.describe()
    assert resp.json() == {}
    assert resp.headers.get("x-amzn-RequestId")
    assert protection_of(server, account, key) is True
    # Idempotent, and any key id form works.
    assert call(server, account, ext("EnableKeyDeletionProtection"), {"KeyId": meta["Arn"]}).status == 200

    err = expect_error("DeletionProtectionEnabledException", kms.schedule_key_deletion, KeyId=key, PendingWindowInDays=7, status=400)
    message = err.response["Error"]["Message"]
    assert "Deletion protection is enabled" in message, message
    assert "KeywardenService.DisableKeyDeletionProtection" in message, message
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"

    # Protection does not get in the way of anything else.
    kms.disable_key(KeyId=key)
    kms.enable_key(KeyId=key)
    kms.rotate_key_on_demand(KeyId=key)

    resp = call(server, account, ext("DisableKeyDeletionProtection"), {"KeyId": key})
    assert (resp.status, resp.json()) == (200, {}), resp.describe()
    assert protection_of(server, account, key) is False
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)

    # Pending deletion: neither can be changed.
    for op in ("EnableKeyDeletionProtection", "DisableKeyDeletionProtection"):
        resp = call(server, account, ext(op), {"KeyId": key})
        assert (resp.status, resp.error_type) == (400, "KMSInvalidStateException"), resp.describe()
    kms.cancel_key_deletion(KeyId=key)
    # A disabled key (as cancelling leaves it) can be protected.
    assert call(server, account, ext("EnableKeyDeletionProtection"), {"KeyId": key}).status == 200
    assert protection_of(server, account, key) is True


def test_aws_clients_ignore_the_extension_field(server, account, kms):
    key = new_key(kms)["KeyId"]
    call(server, account, ext("EnableKeyDeletionProtection"), {"KeyId": key})
    assert protection_of(server, account, key) is True
    # botocore parses only the fields of its model: DescribeKey works and
    # simply has no such key.
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyId"] == key and "DeletionProtectionEnabled" not in meta


def test_deletion_protection_is_per_tenant(server, account, kms):
    key = new_key(kms)["KeyId"]
    stranger = server.create_account()
    for op in ("EnableKeyDeletionProtection", "DisableKeyDeletionProtection"):
        resp = call(server, stranger, ext(op), {"KeyId": key})
        assert (resp.status, resp.error_type) == (400, "NotFoundException"), resp.describe()
    assert protection_of(server, account, key) is False


def test_extension_namespaces_do_not_mix(server, account, kms):
    key = new_key(kms)["KeyId"]
    for target in (
        aws("EnableKeyDeletionProtection"),
        aws("DisableKeyDeletionProtection"),
        ext("DescribeKey"),
        ext("ScheduleKeyDeletion"),
        ext("ListKeys"),
        ext("enablekeydeletionprotection"),
        ext(""),
        "KeywardenService",
        "Keywarden.EnableKeyDeletionProtection",
    ):
        resp = call(server, account, target, {"KeyId": key})
        assert (resp.status, resp.error_type) == (400, "UnknownOperationException"), f"{target}: {resp.describe()}"
    assert protection_of(server, account, key) is False
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"


# -- bad input to every new operation changes nothing ----------------------------


@pytest.fixture(scope="module")
def target(server):
    """A key with automatic rotation (400 days) and deletion protection on,
    shared by the bad-input cases below and checked by the last test."""
    account = server.create_account()
    kms = server.client(account)
    meta = kms.create_key(Description="lifecycle bad-input target")["KeyMetadata"]
    kms.enable_key_rotation(KeyId=meta["KeyId"], RotationPeriodInDays=400)
    resp = call(server, account, ext("EnableKeyDeletionProtection"), {"KeyId": meta["KeyId"]})
    assert resp.status == 200, resp.describe()
    ct = kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"before")["CiphertextBlob"]
    status = kms.get_key_rotation_status(KeyId=meta["KeyId"])
    return {"account": account, "kms": kms, "key_id": meta["KeyId"], "arn": meta["Arn"], "ciphertext": ct, "status": status}


K = "{key}"  # replaced by the target key id


def _bad_cases():
    missing = str(uuid.uuid4())
    foreign_arn = f"arn:aws:kms:us-east-1:000000000000:key/{missing}"
    other_region = "arn:aws:kms:eu-west-1:{account}:key/{key}"
    cases = [
        # (id, target, body, status, __type or None)
        ("enable-no-keyid", aws("EnableKeyRotation"), "{}", 400, "ValidationException"),
        ("enable-empty-keyid", aws("EnableKeyRotation"), '{"KeyId": ""}', 400, "ValidationException"),
        ("enable-keyid-number", aws("EnableKeyRotation"), '{"KeyId": 5}', 400, "SerializationException"),
        ("enable-period-89", aws("EnableKeyRotation"), '{"KeyId": "{key}", "RotationPeriodInDays": 89}', 400, "ValidationException"),
        ("enable-period-2561", aws("EnableKeyRotation"), '{"KeyId": "{key}", "RotationPeriodInDays": 2561}', 400, "ValidationException"),
        ("enable-period-negative", aws("EnableKeyRotation"), '{"KeyId": "{key}", "RotationPeriodInDays": -90}', 400, "ValidationException"),
        ("enable-period-string", aws("EnableKeyRotation"), '{"KeyId": "{key}", "RotationPeriodInDays": "365"}', 400, "SerializationException"),
        ("enable-period-float", aws("EnableKeyRotation"), '{"KeyId": "{key}", "RotationPeriodInDays": 365.0}', 400, "SerializationException"),
        ("enable-period-null-keyid", aws("EnableKeyRotation"), '{"KeyId": null, "RotationPeriodInDays": 365}', 400, "ValidationException"),
        ("enable-period-huge", aws("EnableKeyRotation"), '{"KeyId": "{key}", "RotationPeriodInDays": 9223372036854775808}', 400, None),
        ("enable-unknown-key", aws("EnableKeyRotation"), json.dumps({"KeyId": missing}), 400, "NotFoundException"),
        ("enable-foreign-arn", aws("EnableKeyRotation"), json.dumps({"KeyId": foreign_arn}), 400, "NotFoundException"),
        ("enable-other-region", aws("EnableKeyRotation"), json.dumps({"KeyId": other_region}), 400, "NotFoundException"),
        ("enable-malformed", aws("EnableKeyRotation"), '{"KeyId": "{key}"', 400, "SerializationException"),
        ("enable-array", aws("EnableKeyRotation"), '[{"KeyId": "{key}"}]', 400, "SerializationException"),
        ("disable-no-keyid", aws("DisableKeyRotation"), "{}", 400, "ValidationException"),
        ("disable-keyid-array", aws("DisableKeyRotation"), '{"KeyId": ["{key}"]}', 400, "SerializationException"),
        ("disable-bad-arn", aws("DisableKeyRotation"), '{"KeyId": "arn:aws:kms:us-east-1:1:key/nope"}', 400, "InvalidArnException"),
        ("disable-malformed", aws("DisableKeyRotation"), "{{", 400, "SerializationException"),
        ("status-no-keyid", aws("GetKeyRotationStatus"), "{}", 400, "ValidationException"),
        ("status-keyid-bool", aws("GetKeyRotationStatus"), '{"KeyId": true}', 400, "SerializationException"),
        ("rotate-no-keyid", aws("RotateKeyOnDemand"), "", 400, "ValidationException"),
        ("rotate-keyid-object", aws("RotateKeyOnDemand"), '{"KeyId": {"id": "{key}"}}', 400, "SerializationException"),
        ("rotate-unknown-key", aws("RotateKeyOnDemand"), json.dumps({"KeyId": missing}), 400, "NotFoundException"),
        ("rotate-long-keyid", aws("RotateKeyOnDemand"), json.dumps({"KeyId": "k" * 3000}), 400, "ValidationException"),
        ("rotate-malformed", aws("RotateKeyOnDemand"), '{"KeyId": "{key}",}', 400, "SerializationException"),
        ("list-no-keyid", aws("ListKeyRotations"), "{}", 400, "ValidationException"),
        ("list-limit-0", aws("ListKeyRotations"), '{"KeyId": "{key}", "Limit": 0}', 400, "ValidationException"),
        ("list-limit-1001", aws("ListKeyRotations"), '{"KeyId": "{key}", "Limit": 1001}', 400, "ValidationException"),
        ("list-limit-string", aws("ListKeyRotations"), '{"KeyId": "{key}", "Limit": "5"}', 400, "SerializationException"),
        ("list-empty-marker", aws("ListKeyRotations"), '{"KeyId": "{key}", "Marker": ""}', 400, "ValidationException"),
        ("list-foreign-marker", aws("ListKeyRotations"), '{"KeyId": "{key}", "Marker": "garbage"}', 400, "InvalidMarkerException"),
        ("list-marker-number", aws("ListKeyRotations"), '{"KeyId": "{key}", "Marker": 1}', 400, "SerializationException"),
        ("list-bad-include", aws("ListKeyRotations"), '{"KeyId": "{key}", "IncludeKeyMaterial": "NONE"}', 400, "ValidationException"),
        ("list-include-number", aws("ListKeyRotations"), '{"KeyId": "{key}", "IncludeKeyMaterial": 1}', 400, "SerializationException"),
    ]
    for op in ("EnableKeyDeletionProtection", "DisableKeyDeletionProtection"):
        short = "protect" if op.startswith("Enable") else "unprotect"
        cases += [
            (f"{short}-no-keyid", ext(op), "{}", 400, "ValidationException"),
            (f"{short}-empty-body", ext(op), "", 400, "ValidationException"),
            (f"{short}-empty-keyid", ext(op), '{"KeyId": ""}', 400, "ValidationException"),
            (f"{short}-keyid-number", ext(op), '{"KeyId": 1}', 400, "SerializationException"),
            (f"{short}-malformed", ext(op), '{"KeyId": "{key}"', 400, "SerializationException"),
            (f"{short}-null-body", ext(op), "null", 400, "SerializationException"),
            (f"{short}-unknown-key", ext(op), json.dumps({"KeyId": missing}), 400, "NotFoundException"),
            (f"{short}-foreign-arn", ext(op), json.dumps({"KeyId": foreign_arn}), 400, "NotFoundException"),
            (f"{short}-bad-arn", ext(op), '{"KeyId": "arn:nope"}', 400, "InvalidArnException"),
            (f"{short}-under-aws-prefix", aws(op), '{"KeyId": "{key}"}', 400, "UnknownOperationException"),
        ]
    return cases


BAD = _bad_cases()


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_refused(server, target, case):
    name, op, body, status, error_type = case
    body = body.replace("{key}", target["key_id"]).replace("{account}", target["account"].account_id)
    resp = raw_post(server.url, body, target=op, account=target["account"])
    assert 400 <= resp.status < 500, f"{name}: {resp.describe()}"
    assert resp.status == status, f"{name}: {resp.describe()}"
    doc = resp.json()
    assert isinstance(doc.get("message"), str), f"{name}: {resp.describe()}"
    if error_type is not None:
        assert resp.error_type == error_type, f"{name}: {resp.describe()}"
    assert resp.headers.get("x-amzn-RequestId")


def test_zz_target_unchanged(server, target):
    """Runs after the cases above: none of them changed the key."""
    kms, key = target["kms"], target["key_id"]
    st = kms.get_key_rotation_status(KeyId=key)
    assert st["KeyRotationEnabled"] is True and st["RotationPeriodInDays"] == 400
    assert st["NextRotationDate"] == target["status"]["NextRotationDate"]
    assert kms.list_key_rotations(KeyId=key)["Rotations"] == []
    assert protection_of(server, target["account"], key) is True
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "Enabled" and "DeletionDate" not in meta
    assert meta["Description"] == "lifecycle bad-input target"
    assert kms.decrypt(CiphertextBlob=target["ciphertext"])["Plaintext"] == b"before"
    assert version_of(kms.encrypt(KeyId=key, Plaintext=b"after")["CiphertextBlob"]) == 1


# -- last usage (GetKeyLastUsage) -------------------------------------------------


def test_last_usage_through_boto3(server, account):
    kms = server.client(account)
    meta = new_key(kms)
    key, arn = meta["KeyId"], meta["Arn"]

    fresh = kms.get_key_last_usage(KeyId=key)
    assert fresh["KeyId"] == arn
    assert fresh.get("KeyLastUsage", {}) == {}, "never used: an empty KeyLastUsage"
    assert fresh["KeyCreationDate"] == meta["CreationDate"]
    assert fresh["TrackingStartDate"] == meta["CreationDate"]

    started = now()
    blob = kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    dec = kms.decrypt(CiphertextBlob=blob)
    request_id = dec["ResponseMetadata"]["RequestId"]

    # The node that served the request answers at once (before its flush).
    got = kms.get_key_last_usage(KeyId=arn)["KeyLastUsage"]
    assert got["Operation"] == "Decrypt"
    assert got["KmsRequestId"] == request_id
    assert started - SLACK <= got["Timestamp"] <= now() + SLACK
    assert "CloudTrailEventId" not in got
    # botocore drops fields its model lacks: the principal is not shown ...
    assert "Principal" not in got
    # ... but a raw request sees the extension field.
    raw = raw_post(
        server.url, json.dumps({"KeyId": key}), target="TrentService.GetKeyLastUsage", account=account
    )
    assert raw.status == 200, raw.describe()
    assert raw.json()["KeyLastUsage"]["Principal"] == account.access_key_id
    assert raw.json()["KeyLastUsage"]["Operation"] == "Decrypt"


def test_last_usage_records_both_keys_of_reencrypt(kms):
    src, dst = new_key(kms)["KeyId"], new_key(kms)["KeyId"]
    blob = kms.encrypt(KeyId=src, Plaintext=b"x")["CiphertextBlob"]
    kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=dst)
    for key in (src, dst):
        assert kms.get_key_last_usage(KeyId=key)["KeyLastUsage"]["Operation"] == "ReEncrypt"
    other = new_key(kms)["KeyId"]
    kms.generate_data_key_without_plaintext(KeyId=other, KeySpec="AES_256")
    got = kms.get_key_last_usage(KeyId=other)["KeyLastUsage"]
    assert got["Operation"] == "GenerateDataKeyWithoutPlaintext"


def test_last_usage_bad_input(server, account, new_client):
    kms = server.client(account)
    lax = unvalidated(server, account)
    expect_error("ValidationException", lax.get_key_last_usage, status=400)
    expect_error("ValidationException", lax.get_key_last_usage, KeyId="", status=400)
    expect_error(
        "NotFoundException", kms.get_key_last_usage, KeyId=str(uuid.uuid4()), status=400
    )
    expect_error(
        "InvalidArnException",
        kms.get_key_last_usage,
        KeyId="arn:aws:s3:::bucket",
        status=400,
    )
    # Another tenant's key is not found.
    key = new_key(kms)["KeyId"]
    expect_error("NotFoundException", new_client().get_key_last_usage, KeyId=key, status=400)
