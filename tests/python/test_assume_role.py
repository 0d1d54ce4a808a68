"""STS AssumeRole on Keywarden's endpoint (issue 18): a role's trust policy
decides who may assume it; the session's temporary credentials (with their
session token) act with the role's policies; forged, mismatched and
orphaned tokens are refused."""

from __future__ import annotations

import base64
import datetime
import json
from urllib.parse import urlencode

import boto3
import botocore.auth
import pytest
import requests
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from kw_helpers import REGION, no_retry_config


def client(service, server, key_id, secret, token=None):
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=no_retry_config(),
    )


def root(service, server, account):
    return client(service, server, account.access_key_id, account.secret_access_key)


def trust(principal):
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}],
    })


def allow(actions, resource="*"):
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}]})


def error_of(call, *args, **kwargs):
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    return info.value.response["Error"]["Code"]


def session_clients(server, creds):
    c = creds["Credentials"]
    return (
        client("kms", server, c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]),
        client("sts", server, c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]),
    )


def test_the_root_assumes_a_role_and_acts_with_its_policies(server, account):
    iam, sts, kms = (root(s, server, account) for s in ("iam", "sts", "kms"))
    role = iam.create_role(RoleName="decrypter", AssumeRolePolicyDocument=trust(account.account_id))["Role"]
    iam.put_role_policy(RoleName="decrypter", PolicyName="d", PolicyDocument=allow("kms:Decrypt"))
    key = kms.create_key()["KeyMetadata"]
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"role data")["CiphertextBlob"]
    creds = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="batch-1", DurationSeconds=900)
    c = creds["Credentials"]
    assert c["AccessKeyId"].startswith("ASIA") and c["SessionToken"]
    assumed = f"arn:aws:sts::{account.account_id}:assumed-role/decrypter/batch-1"
    assert creds["AssumedRoleUser"]["Arn"] == assumed
    assert creds["AssumedRoleUser"]["AssumedRoleId"] == f"{role['RoleId']}:batch-1"
    left = (c["Expiration"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert 850 < left <= 900, left
    s_kms, s_sts = session_clients(server, creds)
    who = s_sts.get_caller_identity()
    assert who["Arn"] == assumed and who["Account"] == account.account_id
    assert who["UserId"] == f"{role['RoleId']}:batch-1"
    assert s_kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"role data"
    with pytest.raises(ClientError) as info:
        s_kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    assert info.value.response["Error"]["Code"] == "AccessDeniedException"
    assert info.value.response["Error"]["Message"].startswith(f"User: {assumed} is not authorized")
    # Sessions may not manage IAM.
    s_iam = client("iam", server, c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
    assert error_of(s_iam.create_user, UserName="x") == "AccessDenied"


def test_who_may_assume_a_role(server, account):
    iam, sts = root("iam", server, account), root("sts", server, account)
    iam.create_user(UserName="dev")
    key = iam.create_access_key(UserName="dev")["AccessKey"]
    dev_sts = client("sts", server, key["AccessKeyId"], key["SecretAccessKey"])
    dev_arn = f"arn:aws:iam::{account.account_id}:user/dev"
    # Trusting the account: a user also needs an identity policy allowing sts:AssumeRole.
    by_account = iam.create_role(RoleName="by-account", AssumeRolePolicyDocument=trust(
        f"arn:aws:iam::{account.account_id}:root"))["Role"]["Arn"]
    assert error_of(dev_sts.assume_role, RoleArn=by_account, RoleSessionName="s1") == "AccessDenied"
    iam.put_user_policy(UserName="dev", PolicyName="assume", PolicyDocument=allow("sts:AssumeRole", by_account))
    assert dev_sts.assume_role(RoleArn=by_account, RoleSessionName="s1")["AssumedRoleUser"]["Arn"].endswith(
        "assumed-role/by-account/s1")
    # Trusting the user by name is enough on its own.
    by_name = iam.create_role(RoleName="by-name", AssumeRolePolicyDocument=trust(dev_arn))["Role"]["Arn"]
    dev_sts.assume_role(RoleArn=by_name, RoleSessionName="s2")
    # A role trusting someone else: refused, and so is an unknown role, the same way.
    other = iam.create_role(RoleName="other", AssumeRolePolicyDocument=trust("arn:aws:iam::999999999999:root"))
    assert error_of(sts.assume_role, RoleArn=other["Role"]["Arn"], RoleSessionName="s0") == "AccessDenied"
    assert error_of(sts.assume_role, RoleArn=f"arn:aws:iam::{account.account_id}:role/nope",
                    RoleSessionName="s0") == "AccessDenied"
    # Another account cannot assume a role that trusts only this one.
    stranger = server.create_account()
    assert error_of(root("sts", server, stranger).assume_role, RoleArn=by_account,
                    RoleSessionName="s0") == "AccessDenied"
    # A role trusting the other account: its root may assume it (its identity
    # permissions are all), and the session acts in the role's account.
    shared = iam.create_role(RoleName="shared", AssumeRolePolicyDocument=trust(stranger.account_id))["Role"]["Arn"]
    got = root("sts", server, stranger).assume_role(RoleArn=shared, RoleSessionName="visit")
    _, visit_sts = session_clients(server, got)
    assert visit_sts.get_caller_identity()["Arn"] == (
        f"arn:aws:sts::{account.account_id}:assumed-role/shared/visit")


def test_durations_and_parameters(server, account):
    iam, sts = root("iam", server, account), root("sts", server, account)
    arn = iam.create_role(RoleName="short", AssumeRolePolicyDocument=trust(account.account_id))["Role"]["Arn"]
    # The role's MaxSessionDuration (default 3600) caps DurationSeconds.
    assert error_of(sts.assume_role, RoleArn=arn, RoleSessionName="s0", DurationSeconds=7200) == "ValidationError"
    sts.assume_role(RoleArn=arn, RoleSessionName="s0", DurationSeconds=3600)
    assert error_of(sts.assume_role, RoleArn=arn, RoleSessionName="bad name") == "ValidationError"
    # Session policies are refused rather than ignored.
    assert error_of(sts.assume_role, RoleArn=arn, RoleSessionName="s0", Policy=allow("kms:*")) == (
        "InvalidParameterValue")
    # Below 900 seconds (botocore refuses it itself; the server too).
    body = urlencode({"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": arn, "RoleSessionName": "s0",
                      "DurationSeconds": "60"})
    url = server.url.rstrip("/") + "/"
    req = AWSRequest(method="POST", url=url, data=body.encode(),
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    botocore.auth.SigV4Auth(Credentials(account.access_key_id, account.secret_access_key), "sts",
                            REGION).add_auth(req)
    r = requests.post(url, data=body.encode(), headers=dict(req.headers.items()), timeout=30)
    assert r.status_code == 400 and "<Code>ValidationError</Code>" in r.text, r.text
    # A role session assuming another role (role chaining) is limited to an hour.
    creds = sts.assume_role(RoleArn=arn, RoleSessionName="first")
    _, s_sts = session_clients(server, creds)
    iam.put_role_policy(RoleName="short", PolicyName="chain", PolicyDocument=allow("sts:AssumeRole"))
    long_arn = iam.create_role(RoleName="long", MaxSessionDuration=43200, AssumeRolePolicyDocument=trust(
        account.account_id))["Role"]["Arn"]
    assert error_of(s_sts.assume_role, RoleArn=long_arn, RoleSessionName="second",
                    DurationSeconds=7200) == "ValidationError"
    s_sts.assume_role(RoleArn=long_arn, RoleSessionName="second", DurationSeconds=3600)


def test_forged_mismatched_and_orphaned_tokens_are_refused(server, account):
    iam, sts = root("iam", server, account), root("sts", server, account)
    arn = iam.create_role(RoleName="r", AssumeRolePolicyDocument=trust(account.account_id))["Role"]["Arn"]
    iam.put_role_policy(RoleName="r", PolicyName="p", PolicyDocument=allow("kms:*"))
    a = sts.assume_role(RoleArn=arn, RoleSessionName="sa")["Credentials"]
    b = sts.assume_role(RoleArn=arn, RoleSessionName="sb")["Credentials"]
    token = bytearray(base64.b64decode(a["SessionToken"]))
    token[len(token) // 2] ^= 1
    forged = base64.b64encode(bytes(token)).decode()
    cases = [
        (a["AccessKeyId"], a["SecretAccessKey"], forged),            # a flipped bit
        (a["AccessKeyId"], a["SecretAccessKey"], b["SessionToken"]),  # another session's token
        (a["AccessKeyId"], a["SecretAccessKey"], "not base64 !"),
        (a["AccessKeyId"], a["SecretAccessKey"], None),               # no token at all
    ]
    for key_id, secret, tok in cases:
        assert error_of(client("sts", server, key_id, secret, tok).get_caller_identity) == "InvalidClientTokenId"
        assert error_of(client("kms", server, key_id, secret, tok).list_keys) == "UnrecognizedClientException"
    # The right secret is still needed with a genuine token.
    assert error_of(client("kms", server, a["AccessKeyId"], b["SecretAccessKey"], a["SessionToken"]).list_keys) == (
        "InvalidSignatureException")
    # Deleting the role ends its sessions.
    s_kms = client("kms", server, a["AccessKeyId"], a["SecretAccessKey"], a["SessionToken"])
    s_kms.list_keys()
    iam.delete_role_policy(RoleName="r", PolicyName="p")
    iam.delete_role(RoleName="r")
    assert error_of(s_kms.list_keys) == "UnrecognizedClientException"
    # A role made again under the same name does not revive them.
    iam.create_role(RoleName="r", AssumeRolePolicyDocument=trust(account.account_id))
    assert error_of(s_kms.list_keys) == "UnrecognizedClientException"


def test_products_cannot_assume_roles(server, account):
    iam = root("iam", server, account)
    arn = iam.create_role(RoleName="r", AssumeRolePolicyDocument=trust("*"))["Role"]["Arn"]
    issued = server.admin("product", "credentials", "create", "--code", "mysql")
    p_sts = client("sts", server, issued["AccessKeyId"], issued["SecretAccessKey"])
    assert error_of(p_sts.assume_role, RoleArn=arn, RoleSessionName="s0") == "AccessDenied"
