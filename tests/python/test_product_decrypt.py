"""A cloud product's Decrypt without a KeyId (docs/products.md, "Decrypt
without a KeyId"): the request acts for the account holding the blob's key,
and the product rules apply to that key exactly as if the product had named
its ARN. Object stores such as SeaweedFS decrypt this way."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from kw_helpers import REGION, Account, eventually_error


def product(server, cls="storage"):
    """A new product of this class and a KMS client with its credential."""
    code = "p" + uuid.uuid4().hex[:10]
    server.admin("product", "add", "--code", code, "--class", cls)
    issued = server.admin("product", "credentials", "create", "--code", code)
    client = server.client(Account(account_id="", access_key_id=issued["AccessKeyId"],
                                   secret_access_key=issued["SecretAccessKey"]))
    return code, client, issued["AccessKeyId"]


def default_key(account_id, code):
    return f"arn:aws:kms:{REGION}:{account_id}:alias_{code}"


def error_of(call, **kwargs):
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    err = info.value.response["Error"]
    return err["Code"], err["Message"]


def test_a_product_decrypts_each_tenants_blobs_without_naming_the_key(server):
    code, store, _ = product(server)
    tenants = [server.create_account() for _ in range(3)]
    blobs = {}
    for t in tenants:
        out = store.generate_data_key(KeyId=default_key(t.account_id, code), KeySpec="AES_256",
                                      EncryptionContext={"bucket": t.account_id})
        blobs[t.account_id] = (out["KeyId"], out["CiphertextBlob"], out["Plaintext"])
    for account_id, (key_arn, blob, plaintext) in blobs.items():
        out = store.decrypt(CiphertextBlob=blob, EncryptionContext={"bucket": account_id})
        # The answer names the tenant's key, as the product stored it.
        assert out["KeyId"] == key_arn and f":{account_id}:key/" in key_arn
        assert out["Plaintext"] == plaintext
        # The context still binds the blob.
        assert error_of(store.decrypt, CiphertextBlob=blob,
                        EncryptionContext={"bucket": "other"})[0] == "InvalidCiphertextException"
    # Naming one tenant's key for another tenant's blob is refused.
    a, b = tenants[0].account_id, tenants[1].account_id
    code_, _ = error_of(store.decrypt, CiphertextBlob=blobs[b][1], KeyId=default_key(a, code),
                        EncryptionContext={"bucket": b})
    assert code_ == "IncorrectKeyException"


def test_a_product_cannot_decrypt_what_its_rules_forbid_by_this_path(server):
    code, store, _ = product(server)
    other_code, other_store, _ = product(server)
    db_code, db, _ = product(server, "database")
    tenant = server.create_account()
    kms = server.client(tenant)
    # Another product's default key.
    theirs = other_store.encrypt(KeyId=default_key(tenant.account_id, other_code),
                                 Plaintext=b"other product")["CiphertextBlob"]
    c, msg = error_of(store.decrypt, CiphertextBlob=theirs)
    assert c == "AccessDeniedException" and "can only use its own default key" in msg, msg
    # The tenant's CMK: storage products never, database products only through a grant.
    cmk = kms.create_key()["KeyMetadata"]
    cmk_blob = kms.encrypt(KeyId=cmk["KeyId"], Plaintext=b"tenant secret")["CiphertextBlob"]
    c, msg = error_of(store.decrypt, CiphertextBlob=cmk_blob)
    assert c == "AccessDeniedException" and "storage products can only use their default key" in msg, msg
    assert error_of(db.decrypt, CiphertextBlob=cmk_blob)[0] == "AccessDeniedException"
    kms.create_grant(KeyId=cmk["KeyId"], Operations=["Decrypt"],
                     GranteePrincipal=f"arn:aws:iam::000000000000:role/keywarden-product/{db_code}")
    assert db.decrypt(CiphertextBlob=cmk_blob)["Plaintext"] == b"tenant secret"
    # A blob whose key does not exist, a malformed blob, a blob whose key id
    # was altered (the header is authenticated): InvalidCiphertext.
    mine = store.encrypt(KeyId=default_key(tenant.account_id, code), Plaintext=b"x")["CiphertextBlob"]
    unknown = mine[:1] + uuid.uuid4().bytes + mine[17:]
    assert error_of(store.decrypt, CiphertextBlob=unknown)[0] == "InvalidCiphertextException"
    assert error_of(store.decrypt, CiphertextBlob=b"\x01" + b"\x00" * 60)[0] == "InvalidCiphertextException"
    swapped = mine[:1] + cmk_blob[1:17] + mine[17:]
    c, _ = error_of(store.decrypt, CiphertextBlob=swapped)
    assert c == "AccessDeniedException"  # the swapped id names the CMK, which the rules refuse
    db_swapped = cmk_blob[:1] + mine[1:17] + cmk_blob[17:]
    c, _ = error_of(db.decrypt, CiphertextBlob=db_swapped)
    assert c == "AccessDeniedException"  # another product's default key
    tenant_swapped = mine[:1] + cmk_blob[1:17] + mine[17:]
    assert error_of(db.decrypt, CiphertextBlob=tenant_swapped)[0] == "InvalidCiphertextException"
    assert error_of(store.decrypt, CiphertextBlob=b"short")[0] == "InvalidCiphertextException"


def test_a_disabled_product_or_revoked_credential_stops_decrypting(server):
    code, store, access_key_id = product(server)
    tenant = server.create_account()
    blob = store.encrypt(KeyId=default_key(tenant.account_id, code), Plaintext=b"x")["CiphertextBlob"]
    assert store.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    server.admin("product", "disable", "--code", code)
    eventually_error("AccessDeniedException", store.decrypt, CiphertextBlob=blob)
    server.admin("product", "enable", "--code", code)
    server.revoke_credential(access_key_id)
    eventually_error("UnrecognizedClientException", store.decrypt, CiphertextBlob=blob)
