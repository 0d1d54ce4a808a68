"""Raw HTTP requests the SDKs would never send, signed with botocore's own
SigV4 signer so that they get past authentication (or deliberately not).

Every answer must be a 4xx with an AWS error body ({"__type", "message"})
and an x-amzn-RequestId header; nothing may produce a 5xx. After all of it,
the key the requests aimed at must be exactly as it was.
"""

from __future__ import annotations

import datetime
import json
import uuid

import pytest
import requests

from kw_helpers import JSON_CT, RawResponse, b64, eventually_error, expect_error, raw_get, raw_post, sign_headers

# Tests in this module share one target key (made once, by the fixture
# below), so that the last test can check that none of the bad input
# changed it. Each test still works on its own.


@pytest.fixture(scope="module")
def target(server):
    account = server.create_account()
    kms = server.client(account)
    meta = kms.create_key(Description="bad-input target")["KeyMetadata"]
    alias = f"alias/bad-input-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
    kms.tag_resource(KeyId=meta["KeyId"], Tags=[{"TagKey": "t", "TagValue": "v"}])
    ct = kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"made before", EncryptionContext={"c": "1"})["CiphertextBlob"]
    return {
        "account": account,
        "kms": kms,
        "key_id": meta["KeyId"],
        "arn": meta["Arn"],
        "alias": alias,
        "ciphertext": ct,
    }


def assert_error(resp: RawResponse, status: int | None, error_type: str | None, what: str) -> None:
    assert resp.status < 500, f"{what}: server error {resp.describe()}"
    assert 400 <= resp.status < 500, f"{what}: expected a 4xx, got {resp.describe()}"
    try:
        doc = resp.json()
    except ValueError:
        pytest.fail(f"{what}: error body is not JSON: {resp.describe()}")
    assert isinstance(doc, dict), f"{what}: error body is not an object: {resp.describe()}"
    assert isinstance(doc.get("__type"), str) and doc["__type"], f"{what}: no __type: {resp.describe()}"
    assert isinstance(doc.get("message"), str), f"{what}: no message: {resp.describe()}"
    assert resp.headers.get("x-amzn-RequestId"), f"{what}: no x-amzn-RequestId header"
    if error_type is not None:
        # AWS sometimes prefixes __type with a namespace ("com.amazonaws.kms#").
        got = doc["__type"].rsplit("#", 1)[-1]
        assert got == error_type, f"{what}: expected {error_type}, got {resp.describe()}"
    if status is not None:
        assert resp.status == status, f"{what}: expected HTTP {status}, got {resp.describe()}"


def op(name: str) -> str:
    return f"TrentService.{name}"


# Cases: (id, operation, body (str, or a function of the target giving str),
#         expected HTTP status, expected __type)
def _cases():
    K = lambda t: t["key_id"]  # noqa: E731
    return [
        # Malformed JSON
        ("truncated-json", "DescribeKey", lambda t: '{"KeyId": "' + K(t), 400, "SerializationException"),
        ("not-json", "ListKeys", "this is not json", 400, "SerializationException"),
        ("trailing-garbage", "DescribeKey", lambda t: json.dumps({"KeyId": K(t)}) + "}}", 400, "SerializationException"),
        ("bare-string", "ListKeys", '"ListKeys"', 400, "SerializationException"),
        ("invalid-utf8", "UpdateKeyDescription", b'{"KeyId": "x", "Description": "\xff\xfe"}', 400, "SerializationException"),
        ("json-array", "ListKeys", "[]", 400, "SerializationException"),
        ("json-array-of-object", "DescribeKey", lambda t: json.dumps([{"KeyId": K(t)}]), 400, "SerializationException"),
        ("json-null", "DescribeKey", "null", 400, "SerializationException"),
        ("json-number", "ListKeys", "42", 400, "SerializationException"),
        ("deep-arrays", "ListKeys", "[" * 10000 + "]" * 10000, 400, "SerializationException"),
        ("deep-objects", "DescribeKey", '{"KeyId":' * 5000 + "1" + "}" * 5000, 400, "SerializationException"),
        ("deep-in-field", "Encrypt", lambda t: '{"KeyId": "%s", "EncryptionContext": %s}' % (K(t), "[" * 10000 + "]" * 10000), 400, "SerializationException"),
        # Wrong types
        ("limit-string", "ListKeys", '{"Limit": "10"}', 400, "SerializationException"),
        ("limit-float", "ListKeys", '{"Limit": 1.5}', 400, "SerializationException"),
        ("limit-huge", "ListKeys", '{"Limit": 1e400}', 400, None),
        ("keyid-number", "DescribeKey", '{"KeyId": 123}', 400, "SerializationException"),
        ("keyid-object", "DisableKey", '{"KeyId": {"id": "x"}}', 400, "SerializationException"),
        ("description-number", "UpdateKeyDescription", lambda t: json.dumps({"KeyId": K(t), "Description": 5}), 400, "SerializationException"),
        ("window-string", "ScheduleKeyDeletion", lambda t: json.dumps({"KeyId": K(t), "PendingWindowInDays": "7"}), 400, "SerializationException"),
        ("context-not-map", "Encrypt", lambda t: json.dumps({"KeyId": K(t), "Plaintext": b64(b"x"), "EncryptionContext": ["a", "b"]}), 400, "SerializationException"),
        ("context-value-number", "Encrypt", lambda t: json.dumps({"KeyId": K(t), "Plaintext": b64(b"x"), "EncryptionContext": {"a": 1}}), 400, "SerializationException"),
        ("tags-not-list", "TagResource", lambda t: json.dumps({"KeyId": K(t), "Tags": {"TagKey": "a", "TagValue": "b"}}), 400, "SerializationException"),
        ("plaintext-number", "Encrypt", lambda t: json.dumps({"KeyId": K(t), "Plaintext": 1234}), 400, "SerializationException"),
        ("dryrun-string", "Encrypt", lambda t: json.dumps({"KeyId": K(t), "Plaintext": b64(b"x"), "DryRun": "yes"}), 400, "SerializationException"),
        # Invalid base64
        ("plaintext-bad-b64", "Encrypt", lambda t: json.dumps({"KeyId": K(t), "Plaintext": "!!!not base64!!!"}), 400, "SerializationException"),
        ("ciphertext-bad-b64", "Decrypt", '{"CiphertextBlob": "%%%%"}', 400, "SerializationException"),
        # Missing required fields
        ("describe-no-keyid", "DescribeKey", "{}", 400, "ValidationException"),
        ("describe-empty-body", "DescribeKey", "", 400, "ValidationException"),
        ("encrypt-no-plaintext", "Encrypt", lambda t: json.dumps({"KeyId": K(t)}), 400, "ValidationException"),
        ("encrypt-no-keyid", "Encrypt", json.dumps({"Plaintext": b64(b"x")}), 400, "ValidationException"),
        ("decrypt-no-blob", "Decrypt", "{}", 400, "ValidationException"),
        ("gdk-no-keyid", "GenerateDataKey", '{"KeySpec": "AES_256"}', 400, "ValidationException"),
        ("reencrypt-no-destination", "ReEncrypt", lambda t: json.dumps({"CiphertextBlob": b64(t["ciphertext"])}), 400, "ValidationException"),
        ("create-alias-no-target", "CreateAlias", '{"AliasName": "alias/x"}', 400, "ValidationException"),
        ("tag-no-tags", "TagResource", lambda t: json.dumps({"KeyId": K(t)}), 400, "ValidationException"),
        ("tag-no-value", "TagResource", lambda t: json.dumps({"KeyId": K(t), "Tags": [{"TagKey": "a"}]}), 400, "ValidationException"),
        ("update-description-missing", "UpdateKeyDescription", lambda t: json.dumps({"KeyId": K(t)}), 400, "ValidationException"),
        ("empty-keyid", "DescribeKey", '{"KeyId": ""}', 400, "ValidationException"),
        # Out of range
        ("random-0", "GenerateRandom", '{"NumberOfBytes": 0}', 400, "ValidationException"),
        ("random-1025", "GenerateRandom", '{"NumberOfBytes": 1025}', 400, "ValidationException"),
        ("random-negative", "GenerateRandom", '{"NumberOfBytes": -1}', 400, "ValidationException"),
        ("gdk-bytes-0", "GenerateDataKey", lambda t: json.dumps({"KeyId": K(t), "NumberOfBytes": 0}), 400, "ValidationException"),
        ("gdk-bytes-1025", "GenerateDataKey", lambda t: json.dumps({"KeyId": K(t), "NumberOfBytes": 1025}), 400, "ValidationException"),
        ("gdkwp-bytes-1025", "GenerateDataKeyWithoutPlaintext", lambda t: json.dumps({"KeyId": K(t), "NumberOfBytes": 1025}), 400, "ValidationException"),
        ("gdk-both", "GenerateDataKey", lambda t: json.dumps({"KeyId": K(t), "NumberOfBytes": 32, "KeySpec": "AES_256"}), 400, "ValidationException"),
        ("list-keys-limit-0", "ListKeys", '{"Limit": 0}', 400, "ValidationException"),
        ("list-keys-limit-1001", "ListKeys", '{"Limit": 1001}', 400, "ValidationException"),
        ("list-aliases-limit-0", "ListAliases", '{"Limit": 0}', 400, "ValidationException"),
        ("list-aliases-limit-1001", "ListAliases", '{"Limit": 1001}', 400, "ValidationException"),
        ("list-tags-limit-0", "ListResourceTags", lambda t: json.dumps({"KeyId": K(t), "Limit": 0}), 400, "ValidationException"),
        ("list-tags-limit-1001", "ListResourceTags", lambda t: json.dumps({"KeyId": K(t), "Limit": 1001}), 400, "ValidationException"),
        ("plaintext-4097", "Encrypt", lambda t: json.dumps({"KeyId": K(t), "Plaintext": b64(b"\x00" * 4097)}), 400, "ValidationException"),
        ("plaintext-empty", "Encrypt", lambda t: json.dumps({"KeyId": K(t), "Plaintext": ""}), 400, "ValidationException"),
        ("window-6", "ScheduleKeyDeletion", lambda t: json.dumps({"KeyId": K(t), "PendingWindowInDays": 6}), 400, "ValidationException"),
        ("window-31", "ScheduleKeyDeletion", lambda t: json.dumps({"KeyId": K(t), "PendingWindowInDays": 31}), 400, "ValidationException"),
        ("window-negative", "ScheduleKeyDeletion", lambda t: json.dumps({"KeyId": K(t), "PendingWindowInDays": -30}), 400, "ValidationException"),
        ("window-huge", "ScheduleKeyDeletion", lambda t: json.dumps({"KeyId": K(t), "PendingWindowInDays": 2**63 - 1}), 400, None),
        ("description-too-long", "UpdateKeyDescription", lambda t: json.dumps({"KeyId": K(t), "Description": "d" * 8193}), 400, "ValidationException"),
        ("gdk-bad-keyspec", "GenerateDataKey", lambda t: json.dumps({"KeyId": K(t), "KeySpec": "AES_1024"}), 400, "ValidationException"),
        ("reserved-alias", "UpdateAlias", lambda t: json.dumps({"AliasName": "alias/aws/kms", "TargetKeyId": K(t)}), 400, None),
        ("aws-tag", "TagResource", lambda t: json.dumps({"KeyId": K(t), "Tags": [{"TagKey": "aws:x", "TagValue": "v"}]}), 400, "TagException"),
        ("too-many-tags", "TagResource", lambda t: json.dumps({"KeyId": K(t), "Tags": [{"TagKey": f"k{i}", "TagValue": "v"} for i in range(60)]}), 400, "LimitExceededException"),
        ("bad-marker", "ListKeys", '{"Limit": 1, "Marker": "\\u0000garbage"}', 400, None),
        ("long-keyid", "DescribeKey", json.dumps({"KeyId": "k" * 100000}), 400, None),
        ("wrong-context-decrypt", "Decrypt", lambda t: json.dumps({"CiphertextBlob": b64(t["ciphertext"]), "EncryptionContext": {"c": "2"}}), 400, "InvalidCiphertextException"),
        ("altered-ciphertext", "Decrypt", lambda t: json.dumps({"CiphertextBlob": b64(t["ciphertext"][:-1] + bytes([t["ciphertext"][-1] ^ 1])), "EncryptionContext": {"c": "1"}}), 400, "InvalidCiphertextException"),
        ("unknown-field-type-in-create", "CreateKey", '{"Tags": "none"}', 400, "SerializationException"),
        # Unknown operations
        ("unknown-operation", "NoSuchOperation", "{}", 400, "UnknownOperationException"),
        ("lowercase-operation", "describekey", "{}", 400, "UnknownOperationException"),
    ]


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_body(server, target, case):
    name, operation, body, status, error_type = case
    if callable(body):
        body = body(target)
    resp = raw_post(server.url, body, target=op(operation), account=target["account"])
    assert_error(resp, status, error_type, f"{name} ({operation})")


def test_wrong_target_prefix(server, target):
    for t in ("Nope.ListKeys", "TrentService.", "TrentServiceListKeys", "", "TrentService.ListKeys.Extra"):
        resp = raw_post(server.url, "{}", target=t, account=target["account"])
        assert_error(resp, 400, "UnknownOperationException", f"X-Amz-Target {t!r}")


def test_missing_target(server, target):
    resp = raw_post(server.url, "{}", target=None, account=target["account"])
    assert_error(resp, 400, "UnknownOperationException", "no X-Amz-Target")


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded", None])
def test_wrong_content_type(server, target, content_type):
    resp = raw_post(server.url, "{}", target=op("ListKeys"), account=target["account"], content_type=content_type)
    assert_error(resp, 400, "SerializationException", f"Content-Type {content_type!r}")


def test_json_content_type_variants_accepted(server, target):
    for ct in (JSON_CT, JSON_CT + "; charset=utf-8"):
        resp = raw_post(server.url, "{}", target=op("ListKeys"), account=target["account"], content_type=ct)
        assert resp.status == 200, f"Content-Type {ct!r}: {resp.describe()}"
        assert "Keys" in resp.json()
        assert resp.headers.get("x-amzn-RequestId")


def test_body_too_large(server, target):
    big = json.dumps({"KeyId": target["key_id"], "Description": "x" * (300 * 1024)})
    resp = raw_post(server.url, big, target=op("UpdateKeyDescription"), account=target["account"])
    assert_error(resp, 413, "ValidationException", "300 KB body")
    # Unsigned, too: the limit comes first.
    resp = raw_post(server.url, big, target=op("UpdateKeyDescription"), sign=False)
    assert resp.status in (403, 413), resp.describe()
    assert_error(resp, None, None, "300 KB unsigned body")


def test_body_at_limit_is_not_too_large(server, target):
    # 262144 bytes exactly: over no limit, so it is judged on its content.
    base = {"KeyId": target["key_id"], "Description": ""}
    filler = 262144 - len(json.dumps(base))
    body = json.dumps({**base, "Description": "x" * filler})
    assert len(body) == 262144
    resp = raw_post(server.url, body, target=op("UpdateKeyDescription"), account=target["account"])
    assert_error(resp, 400, "ValidationException", "262144-byte body with an over-long description")


def test_valid_raw_request_works(server, target):
    resp = raw_post(
        server.url,
        json.dumps({"KeyId": target["alias"], "Plaintext": b64(b"raw")}),
        target=op("Encrypt"),
        account=target["account"],
    )
    assert resp.status == 200, resp.describe()
    assert resp.headers.get("x-amzn-RequestId")
    assert resp.json()["KeyId"] == target["arn"]


# -- authentication -----------------------------------------------------------


def test_missing_authorization(server, target):
    resp = raw_post(server.url, json.dumps({"KeyId": target["key_id"]}), target=op("DisableKey"), sign=False)
    assert_error(resp, 403, "MissingAuthenticationTokenException", "no Authorization")


@pytest.mark.parametrize(
    "authorization",
    [
        "garbage",
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/kms/aws4_request, SignedHeaders=host",
        "Bearer abc.def.ghi",
    ],
)
def test_garbage_authorization(server, target, authorization):
    resp = raw_post(
        server.url,
        json.dumps({"KeyId": target["key_id"]}),
        target=op("DisableKey"),
        sign=False,
        extra_headers={"Authorization": authorization, "X-Amz-Date": "20240101T000000Z"},
    )
    assert_error(resp, 400, "IncompleteSignatureException", f"Authorization {authorization!r}")


def test_wrong_secret(server, target):
    resp = raw_post(
        server.url,
        json.dumps({"KeyId": target["key_id"]}),
        target=op("DisableKey"),
        access_key_id=target["account"].access_key_id,
        secret_access_key=target["account"].secret_access_key[:-1] + ("A" if target["account"].secret_access_key[-1] != "A" else "B"),
    )
    assert_error(resp, 400, "InvalidSignatureException", "wrong secret")


def test_unknown_access_key(server, target):
    resp = raw_post(
        server.url,
        json.dumps({"KeyId": target["key_id"]}),
        target=op("DisableKey"),
        access_key_id="AKIA" + uuid.uuid4().hex[:16].upper(),
        secret_access_key=target["account"].secret_access_key,
    )
    assert_error(resp, 400, "UnrecognizedClientException", "unknown access key")


def test_body_altered_after_signing(server, target):
    url = server.url + "/"
    signed_body = json.dumps({"KeyId": target["key_id"]}).encode()
    headers = sign_headers(
        url,
        signed_body,
        {"Content-Type": JSON_CT, "X-Amz-Target": op("DescribeKey")},
        target["account"].access_key_id,
        target["account"].secret_access_key,
    )
    sent = json.dumps({"KeyId": target["arn"]}).encode()
    r = requests.post(url, data=sent, headers=headers, timeout=30)
    assert_error(RawResponse(r.status_code, r.headers, r.content), 400, "InvalidSignatureException", "altered body")
    # Same for a swapped X-Amz-Target.
    headers["X-Amz-Target"] = op("DisableKey")
    r = requests.post(url, data=signed_body, headers=headers, timeout=30)
    assert_error(RawResponse(r.status_code, r.headers, r.content), 400, "InvalidSignatureException", "altered target")


def test_wrong_region_or_service_scope(server, target):
    url = server.url + "/"
    body = json.dumps({"KeyId": target["key_id"]}).encode()
    headers = sign_headers(
        url,
        body,
        {"Content-Type": JSON_CT, "X-Amz-Target": op("DescribeKey")},
        target["account"].access_key_id,
        target["account"].secret_access_key,
        region="eu-west-1",
    )
    r = requests.post(url, data=body, headers=headers, timeout=30)
    resp = RawResponse(r.status_code, r.headers, r.content)
    assert_error(resp, 400, None, "signed for eu-west-1")
    assert resp.error_type in ("InvalidSignatureException", "IncompleteSignatureException"), resp.describe()


@pytest.mark.parametrize("minutes", [-20, 20])
def test_stale_signature(server, target, minutes):
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)
    resp = raw_post(
        server.url,
        json.dumps({"KeyId": target["key_id"]}),
        target=op("DisableKey"),
        account=target["account"],
        when=when,
    )
    assert_error(resp, 400, "InvalidSignatureException", f"signed {minutes} minutes off")


def test_slightly_skewed_signature_accepted(server, target):
    when = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=4)
    resp = raw_post(
        server.url,
        json.dumps({"KeyId": target["key_id"]}),
        target=op("DescribeKey"),
        account=target["account"],
        when=when,
    )
    assert resp.status == 200, resp.describe()


def test_revoked_credential(server):
    account = server.create_account()
    extra = server.create_credential(account.account_id)
    client = server.client(extra)
    key = client.create_key()["KeyMetadata"]["KeyId"]
    listed = server.admin("credentials", "list", "--account", account.account_id)
    assert extra.access_key_id in json.dumps(listed)
    assert extra.secret_access_key not in json.dumps(listed)

    server.revoke_credential(extra.access_key_id)
    eventually_error("UnrecognizedClientException", client.describe_key, KeyId=key)
    resp = raw_post(server.url, "{}", target=op("ListKeys"), account=extra)
    assert_error(resp, 400, "UnrecognizedClientException", "revoked credential")
    # The account's other credential still works, and so does the key.
    assert server.client(account).describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"


def test_security_token_rejected(server, target):
    resp = raw_post(
        server.url,
        "{}",
        target=op("ListKeys"),
        account=target["account"],
        extra_headers={"X-Amz-Security-Token": "FQoGZXIvYXdzE"},
    )
    assert_error(resp, 400, "UnrecognizedClientException", "session token")


# -- other paths --------------------------------------------------------------


def test_healthz(server):
    resp = raw_get(server.url, "/healthz")
    assert resp.status == 200, resp.describe()


@pytest.mark.parametrize("method, path", [("GET", "/"), ("POST", "/nope"), ("GET", "/nope"), ("PUT", "/"), ("DELETE", "/")])
def test_other_paths_are_json_errors(server, method, path):
    r = requests.request(method, server.url + path, data=b"{}", timeout=30)
    assert_error(RawResponse(r.status_code, r.headers, r.content), None, None, f"{method} {path}")


def test_signed_post_to_other_path(server, target):
    resp = raw_post(server.url, "{}", target=op("ListKeys"), account=target["account"], path="/nope")
    assert_error(resp, None, None, "signed POST /nope")


# -- afterwards ---------------------------------------------------------------


def test_zz_target_key_unchanged(server, target):
    """Runs last in this module: none of the above changed the key."""
    kms = target["kms"]
    meta = kms.describe_key(KeyId=target["key_id"])["KeyMetadata"]
    assert meta["KeyState"] == "Enabled"
    assert meta["Enabled"] is True
    assert meta["Description"] == "bad-input target"
    assert "DeletionDate" not in meta
    assert kms.decrypt(CiphertextBlob=target["ciphertext"], EncryptionContext={"c": "1"})["Plaintext"] == b"made before"
    tags = kms.list_resource_tags(KeyId=target["key_id"])["Tags"]
    assert tags == [{"TagKey": "t", "TagValue": "v"}]
    aliases = kms.list_aliases(KeyId=target["key_id"])["Aliases"]
    assert [a["AliasName"] for a in aliases] == [target["alias"]]
    assert kms.encrypt(KeyId=target["alias"], Plaintext=b"still")["KeyId"] == target["arn"]
    # And the server is still healthy.
    assert raw_get(server.url, "/healthz").status == 200
