"""The condition keys of issue 18, point 4, end to end with boto3: for each
key, a policy conditioned on it allows one request and refuses another.

- `aws:SourceIp`, `aws:SecureTransport` (the session server listens on
  127.0.0.1 without TLS);
- `kms:RequestAlias`, `kms:ResourceAliases`;
- `kms:GrantOperations`, `kms:GranteePrincipal`, `kms:RetiringPrincipal`,
  `kms:GrantIsForAWSResource` (CreateGrant);
- `aws:RequestTag/<key>`, `aws:TagKeys` (CreateKey, TagResource,
  UntagResource, IAM CreateUser);
- `kms:ViaService` (a database product using a granted customer key; the
  key policy's Deny statements hold for it).

Condition keys: https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html
and https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from kw_helpers import REGION, Account, no_retry_config
from test_tls import client as tls_client
from test_tls import tls_server  # noqa: F401 (a fixture)

MYSQL = "arn:aws:iam::000000000000:role/keywarden-product/mysql"


def client(service, server, key_id, secret):
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=no_retry_config(),
    )


def iam_of(server, account):
    return client("iam", server, account.access_key_id, account.secret_access_key)


def user_with(server, account, name, *policies):
    """A user of `account` with these inline policies; its KMS client and ARN."""
    iam = iam_of(server, account)
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    for i, doc in enumerate(policies):
        iam.put_user_policy(UserName=name, PolicyName=f"p{i}", PolicyDocument=json.dumps(doc))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return client("kms", server, key["AccessKeyId"], key["SecretAccessKey"]), arn, key


def statement(actions, condition=None, effect="Allow", resource="*"):
    st = {"Effect": effect, "Action": actions, "Resource": resource}
    if condition:
        st["Condition"] = condition
    return st


def policy(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def key_policy(account, *statements):
    """A key policy: the account's root may do everything, plus `statements`."""
    root = {
        "Sid": "root",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{account.account_id}:root"},
        "Action": "kms:*",
        "Resource": "*",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [root, *statements]})


def denied(call, *args, code="AccessDeniedException", **kwargs):
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    err = info.value.response["Error"]
    assert err["Code"] == code, err
    return err["Message"]


# ---- aws:SourceIp, aws:SecureTransport ----


def test_source_ip_is_the_peer_address(server, account, kms):
    key = kms.create_key()["KeyMetadata"]
    local = statement(["kms:Encrypt", "kms:ListKeys"], {"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}})
    near, _, _ = user_with(server, account, "near", policy(local))
    far_st = statement(["kms:Encrypt", "kms:ListKeys"], {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})
    far, _, _ = user_with(server, account, "far", policy(far_st))
    # A key request.
    near.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    denied(far.encrypt, KeyId=key["KeyId"], Plaintext=b"x")
    # A request that names no key.
    near.list_keys()
    denied(far.list_keys)
    # An X-Forwarded-For header is not the source address.
    def forged(request, **_):
        request.headers["X-Forwarded-For"] = "10.1.2.3"

    far.meta.events.register("before-sign.kms.*", forged)
    denied(far.encrypt, KeyId=key["KeyId"], Plaintext=b"x")


def test_source_ip_in_a_key_policy_binds_the_root(server, account, kms):
    key = kms.create_key()["KeyMetadata"]
    outside = {
        "Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
        "Condition": {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    }
    kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=key_policy(account, outside))
    msg = denied(kms.encrypt, KeyId=key["KeyId"], Plaintext=b"x")
    assert msg.endswith("with an explicit deny in a resource-based policy"), msg
    inside = dict(outside, Condition={"NotIpAddress": {"aws:SourceIp": "127.0.0.0/8"}})
    kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=key_policy(account, inside))
    kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")


def test_source_ip_on_iam_actions(server, account):
    _, _, near_key = user_with(
        server, account, "iam-near",
        policy(statement("iam:ListUsers", {"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}})),
    )
    _, _, far_key = user_with(
        server, account, "iam-far",
        policy(statement("iam:ListUsers", {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})),
    )
    client("iam", server, near_key["AccessKeyId"], near_key["SecretAccessKey"]).list_users()
    far = client("iam", server, far_key["AccessKeyId"], far_key["SecretAccessKey"])
    denied(far.list_users, code="AccessDenied")


def test_secure_transport_is_false_without_tls(server, account, kms):
    key = kms.create_key()["KeyMetadata"]
    plain = statement("kms:Encrypt", {"Bool": {"aws:SecureTransport": "false"}})
    ok, _, _ = user_with(server, account, "plain-ok", policy(plain))
    ok.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    strict = policy(
        statement("kms:*"),
        statement("kms:*", {"Bool": {"aws:SecureTransport": "false"}}, effect="Deny"),
    )
    refused, _, _ = user_with(server, account, "tls-only", strict)
    msg = denied(refused.encrypt, KeyId=key["KeyId"], Plaintext=b"x")
    assert msg.endswith("with an explicit deny in an identity-based policy"), msg
    msg = denied(refused.create_key)
    assert msg.endswith("with an explicit deny in an identity-based policy"), msg


def test_secure_transport_is_true_on_a_tls_listener(tls_server):  # noqa: F811
    kms = tls_client(tls_server, str(tls_server["cert"]))
    account = tls_server["acct"]["AccountId"]
    key = kms.create_key()["KeyMetadata"]

    def deny_when(value):
        return json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
             "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
             "Condition": {"Bool": {"aws:SecureTransport": value}}},
        ]})

    kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=deny_when("false"))
    kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=deny_when("true"))
    msg = denied(kms.encrypt, KeyId=key["KeyId"], Plaintext=b"x")
    assert msg.endswith("with an explicit deny in a resource-based policy"), msg


def test_source_ip_in_a_trust_policy(server, account):
    iam = iam_of(server, account)
    root_arn = f"arn:aws:iam::{account.account_id}:root"

    def role(name, cidr):
        doc = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": root_arn}, "Action": "sts:AssumeRole",
            "Condition": {"IpAddress": {"aws:SourceIp": cidr}},
        }]}
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(doc))["Role"]["Arn"]

    near, far = role("near-role", "127.0.0.0/8"), role("far-role", "10.0.0.0/8")
    sts = client("sts", server, account.access_key_id, account.secret_access_key)
    sts.assume_role(RoleArn=near, RoleSessionName="s1")
    denied(sts.assume_role, RoleArn=far, RoleSessionName="s1", code="AccessDenied")


# ---- kms:RequestAlias, kms:ResourceAliases ----


def test_request_alias(server, account, kms):
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/app", TargetKeyId=key["KeyId"])
    kms.create_alias(AliasName="alias/other", TargetKeyId=key["KeyId"])
    by_alias = statement(["kms:Encrypt", "kms:Decrypt"], {"StringEquals": {"kms:RequestAlias": "alias/app"}})
    user, _, _ = user_with(server, account, "by-alias", policy(by_alias))
    blob = user.encrypt(KeyId="alias/app", Plaintext=b"x")["CiphertextBlob"]
    alias_arn = f"arn:aws:kms:{REGION}:{account.account_id}:alias/app"
    user.encrypt(KeyId=alias_arn, Plaintext=b"x")
    assert user.decrypt(KeyId="alias/app", CiphertextBlob=blob)["Plaintext"] == b"x"
    denied(user.encrypt, KeyId=key["KeyId"], Plaintext=b"x")
    denied(user.encrypt, KeyId=key["Arn"], Plaintext=b"x")
    denied(user.encrypt, KeyId="alias/other", Plaintext=b"x")
    denied(user.decrypt, CiphertextBlob=blob)


def test_resource_aliases(server, account, kms):
    tagged = kms.create_key()["KeyMetadata"]
    plain = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/team-a/db", TargetKeyId=tagged["KeyId"])
    cond = {"ForAnyValue:StringLike": {"kms:ResourceAliases": "alias/team-a/*"}}
    user, _, _ = user_with(server, account, "team-a", policy(statement("kms:Encrypt", cond)))
    user.encrypt(KeyId=tagged["KeyId"], Plaintext=b"x")
    denied(user.encrypt, KeyId=plain["KeyId"], Plaintext=b"x")
    # The aliases are read when the request is decided.
    kms.delete_alias(AliasName="alias/team-a/db")
    denied(user.encrypt, KeyId=tagged["KeyId"], Plaintext=b"x")
    kms.create_alias(AliasName="alias/team-a/cache", TargetKeyId=plain["KeyId"])
    user.encrypt(KeyId=plain["KeyId"], Plaintext=b"x")
    # Moving the alias moves the permission (both keys' lists were read).
    denied(user.encrypt, KeyId=tagged["KeyId"], Plaintext=b"x")
    kms.update_alias(AliasName="alias/team-a/cache", TargetKeyId=tagged["KeyId"])
    user.encrypt(KeyId=tagged["KeyId"], Plaintext=b"x")
    denied(user.encrypt, KeyId=plain["KeyId"], Plaintext=b"x")


def test_resource_aliases_in_a_key_policy_binds_the_root(server, account, kms):
    key = kms.create_key()["KeyMetadata"]
    frozen = {
        "Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
        "Condition": {"ForAnyValue:StringLike": {"kms:ResourceAliases": "alias/frozen-*"}},
    }
    kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=key_policy(account, frozen))
    kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    kms.create_alias(AliasName="alias/frozen-2024", TargetKeyId=key["KeyId"])
    denied(kms.encrypt, KeyId=key["KeyId"], Plaintext=b"x")


# ---- CreateGrant: kms:GrantOperations, kms:GranteePrincipal, kms:RetiringPrincipal, kms:GrantIsForAWSResource ----


def test_grant_operations(server, account, kms):
    key = kms.create_key()["KeyMetadata"]
    grantee = f"arn:aws:iam::{account.account_id}:user/someone"
    cond = {"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt", "DescribeKey"]}}
    user, _, _ = user_with(server, account, "granter", policy(statement("kms:CreateGrant", cond)))
    user.create_grant(KeyId=key["KeyId"], GranteePrincipal=grantee, Operations=["Decrypt"])
    denied(user.create_grant, KeyId=key["KeyId"], GranteePrincipal=grantee, Operations=["Decrypt", "Encrypt"])
    assert len(kms.list_grants(KeyId=key["KeyId"])["Grants"]) == 1


def test_grantee_and_retiring_principal(server, account, kms):
    key = kms.create_key()["KeyMetadata"]
    alice = f"arn:aws:iam::{account.account_id}:user/alice"
    bob = f"arn:aws:iam::{account.account_id}:user/bob"
    cond = {"StringEquals": {"kms:GranteePrincipal": alice, "kms:RetiringPrincipal": bob}}
    user, _, _ = user_with(server, account, "granter2", policy(statement("kms:CreateGrant", cond)))
    user.create_grant(KeyId=key["KeyId"], GranteePrincipal=alice, RetiringPrincipal=bob, Operations=["Decrypt"])
    denied(user.create_grant, KeyId=key["KeyId"], GranteePrincipal=bob, RetiringPrincipal=bob,
           Operations=["Decrypt"])
    # No retiring principal: the key is missing, so StringEquals fails.
    denied(user.create_grant, KeyId=key["KeyId"], GranteePrincipal=alice, Operations=["Decrypt"])


def test_grant_is_for_aws_resource_means_a_cloud_product(server, account, kms):
    key = kms.create_key()["KeyMetadata"]
    cond = {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    user, _, _ = user_with(server, account, "dba", policy(statement("kms:CreateGrant", cond)))
    user.create_grant(KeyId=key["KeyId"], GranteePrincipal=MYSQL, Operations=["Decrypt", "GenerateDataKey"])
    someone = f"arn:aws:iam::{account.account_id}:user/someone"
    denied(user.create_grant, KeyId=key["KeyId"], GranteePrincipal=someone, Operations=["Decrypt"])
    # Not any ARN under the products' account: only a product's principal.
    lookalike = "arn:aws:iam::000000000000:role/other/mysql"
    denied(user.create_grant, KeyId=key["KeyId"], GranteePrincipal=lookalike, Operations=["Decrypt"])


# ---- aws:RequestTag/<key>, aws:TagKeys ----


def test_request_tag_on_create_key(server, account, kms):
    cond = {"StringEquals": {"aws:RequestTag/env": "prod"}}
    user, _, _ = user_with(server, account, "maker", policy(statement("kms:CreateKey", cond)))
    made = user.create_key(Tags=[{"TagKey": "env", "TagValue": "prod"}])["KeyMetadata"]
    assert made["KeyState"] == "Enabled"
    denied(user.create_key, Tags=[{"TagKey": "env", "TagValue": "dev"}])
    denied(user.create_key)
    before = len(kms.list_keys()["Keys"])
    denied(user.create_key, Tags=[{"TagKey": "env", "TagValue": "test"}])
    assert len(kms.list_keys()["Keys"]) == before


def test_tag_keys_on_tag_and_untag_resource(server, account, kms):
    key = kms.create_key(Tags=[{"TagKey": "owner", "TagValue": "ops"}])["KeyMetadata"]
    only_env = {"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}}
    user, _, _ = user_with(
        server, account, "tagger",
        policy(statement(["kms:TagResource", "kms:UntagResource"], only_env)),
    )
    user.tag_resource(KeyId=key["KeyId"], Tags=[{"TagKey": "env", "TagValue": "prod"}])
    denied(user.tag_resource, KeyId=key["KeyId"], Tags=[{"TagKey": "owner", "TagValue": "me"}])
    denied(user.untag_resource, KeyId=key["KeyId"], TagKeys=["owner"])
    user.untag_resource(KeyId=key["KeyId"], TagKeys=["env"])
    tags = kms.list_resource_tags(KeyId=key["KeyId"])["Tags"]
    assert tags == [{"TagKey": "owner", "TagValue": "ops"}]


def test_request_tag_on_iam_create_user(server, account):
    cond = {"StringEquals": {"aws:RequestTag/team": "blue"}}
    _, _, creds = user_with(server, account, "hr", policy(statement("iam:CreateUser", cond)))
    iam = client("iam", server, creds["AccessKeyId"], creds["SecretAccessKey"])
    iam.create_user(UserName="blue-1", Tags=[{"Key": "team", "Value": "blue"}])
    denied(iam.create_user, UserName="red-1", Tags=[{"Key": "team", "Value": "red"}], code="AccessDenied")
    denied(iam.create_user, UserName="none-1", code="AccessDenied")


# ---- kms:ViaService: products ----


def product_client(server, code):
    issued = server.admin("product", "credentials", "create", "--code", code)
    return server.client(
        Account(account_id="", access_key_id=issued["AccessKeyId"],
                secret_access_key=issued["SecretAccessKey"])
    )


def test_via_service_deny_holds_for_a_database_product(server, account, kms):
    mysql = product_client(server, "mysql")
    key = kms.create_key()["KeyMetadata"]
    arn = key["Arn"]
    kms.create_grant(KeyId=arn, GranteePrincipal=MYSQL, Operations=["GenerateDataKey", "Decrypt"])
    dk = mysql.generate_data_key(KeyId=arn, KeySpec="AES_256")
    # A Deny naming another service leaves the product alone.
    other = {
        "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
        "Condition": {"StringEquals": {"kms:ViaService": f"rds.{REGION}.amazonaws.com"}},
    }
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=key_policy(account, other))
    mysql.generate_data_key(KeyId=arn, KeySpec="AES_256")
    # A Deny naming the product's service, for the account's callers, holds.
    mine = {
        "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
        "Condition": {"StringEquals": {
            "kms:ViaService": f"mysql.{REGION}.amazonaws.com",
            "kms:CallerAccount": account.account_id,
        }},
    }
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=key_policy(account, mine))
    msg = denied(mysql.decrypt, KeyId=arn, CiphertextBlob=dk["CiphertextBlob"])
    assert msg.startswith(f"User: {MYSQL} is not authorized to perform: kms:Decrypt"), msg
    assert msg.endswith("with an explicit deny in a resource-based policy"), msg
    # Only Decrypt was denied; the account's own root is not a product.
    mysql.generate_data_key(KeyId=arn, KeySpec="AES_256")
    assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]


def test_a_key_policy_allow_does_not_widen_the_product_rules(server, account, kms):
    mysql = product_client(server, "mysql")
    key = kms.create_key()["KeyMetadata"]
    everyone = {
        "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*",
        "Condition": {"StringEquals": {"kms:ViaService": f"mysql.{REGION}.amazonaws.com"}},
    }
    kms.put_key_policy(KeyId=key["Arn"], PolicyName="default", Policy=key_policy(account, everyone))
    # No grant: the product rules refuse, whatever the key policy allows.
    denied(mysql.generate_data_key, KeyId=key["Arn"], KeySpec="AES_256")


# -- algorithm condition keys of keys of other specs (docs/key-specs.md) ------


def test_algorithm_condition_keys(server, account, kms):
    """`kms:SigningAlgorithm`, `kms:MessageType`, `kms:MacAlgorithm`,
    `kms:EncryptionAlgorithm`, `kms:DataKeyPairSpec`, `kms:KeySpec` and
    `kms:KeyUsage` (CreateKey): an identity policy conditioned on each
    allows one request and refuses another."""
    signer = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    mac_key = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    rsa_enc = kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    sym = kms.create_key()["KeyMetadata"]["KeyId"]
    user, _, _ = user_with(
        server,
        account,
        "algorithms",
        policy(
            statement(["kms:Sign"], {"StringEquals": {"kms:SigningAlgorithm": "RSASSA_PSS_SHA_256", "kms:MessageType": "RAW"}}),
            statement(["kms:GenerateMac"], {"StringEquals": {"kms:MacAlgorithm": "HMAC_SHA_256"}}),
            statement(["kms:Encrypt"], {"StringEquals": {"kms:EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}}),
            statement(["kms:GenerateDataKeyPair"], {"StringEquals": {"kms:DataKeyPairSpec": "ECC_NIST_P256"}}),
            statement(["kms:CreateKey"], {"StringEquals": {"kms:KeySpec": "ECC_NIST_P256", "kms:KeyUsage": "SIGN_VERIFY"}}),
        ),
    )
    digest = b"\x01" * 32

    def denied(fn, **kw):
        with pytest.raises(ClientError) as info:
            fn(**kw)
        assert info.value.response["Error"]["Code"] == "AccessDeniedException", info.value.response

    user.sign(KeyId=signer, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")
    denied(user.sign, KeyId=signer, Message=b"m", SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256")
    denied(user.sign, KeyId=signer, Message=digest, MessageType="DIGEST", SigningAlgorithm="RSASSA_PSS_SHA_256")
    user.generate_mac(KeyId=mac_key, Message=b"m", MacAlgorithm="HMAC_SHA_256")
    user.encrypt(KeyId=rsa_enc, Plaintext=b"m", EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    denied(user.encrypt, KeyId=rsa_enc, Plaintext=b"m", EncryptionAlgorithm="RSAES_OAEP_SHA_1")
    user.generate_data_key_pair(KeyId=sym, KeyPairSpec="ECC_NIST_P256")
    denied(user.generate_data_key_pair, KeyId=sym, KeyPairSpec="RSA_2048")
    user.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    denied(user.create_key, KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")
    denied(user.create_key)
