"""IAM on Keywarden's endpoint (issue 18): boto3's `iam` client and the AWS
CLI manage users, access keys, roles and policies at the same endpoint URL
as KMS; errors carry IAM's codes; a user's access keys authenticate as the
user, and stop when deactivated or deleted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import botocore.auth
import pytest
import requests
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from kw_helpers import REGION, no_retry_config

DECRYPT_ONLY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}],
}

TRUST_ROOT = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def client(service, server, access_key_id, secret_access_key):
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=no_retry_config(),
    )


def iam_client(server, account):
    return client("iam", server, account.access_key_id, account.secret_access_key)


def code_of(call, *args, **kwargs):
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    return info.value.response["Error"]["Code"], info.value.response["ResponseMetadata"]["HTTPStatusCode"]


def signed_iam_post(server, account, body: str, content_type="application/x-www-form-urlencoded"):
    url = server.url.rstrip("/") + "/"
    req = AWSRequest(method="POST", url=url, data=body.encode(), headers={"Content-Type": content_type})
    botocore.auth.SigV4Auth(
        Credentials(account.access_key_id, account.secret_access_key), "iam", REGION
    ).add_auth(req)
    return requests.post(url, data=body.encode(), headers=dict(req.headers.items()), timeout=30)


def test_users_are_created_listed_tagged_and_deleted(server, account):
    iam = iam_client(server, account)
    made = iam.create_user(UserName="alice", Path="/apps/", Tags=[{"Key": "team", "Value": "pay"}])["User"]
    assert made["UserName"] == "alice"
    assert made["Arn"] == f"arn:aws:iam::{account.account_id}:user/apps/alice"
    assert made["UserId"].startswith("AIDA") and len(made["UserId"]) == 21
    got = iam.get_user(UserName="alice")["User"]
    assert got["UserId"] == made["UserId"]
    assert got["Tags"] == [{"Key": "team", "Value": "pay"}]
    iam.create_user(UserName="bob")
    names = [u["UserName"] for u in iam.list_users()["Users"]]
    assert names == ["alice", "bob"]
    assert [u["UserName"] for u in iam.list_users(PathPrefix="/apps/")["Users"]] == ["alice"]
    page = iam.list_users(MaxItems=1)
    assert page["IsTruncated"] and len(page["Users"]) == 1
    rest = iam.list_users(Marker=page["Marker"])
    assert [u["UserName"] for u in rest["Users"]] == ["bob"]
    iam.tag_user(UserName="alice", Tags=[{"Key": "env", "Value": "prod"}, {"Key": "TEAM", "Value": "ops"}])
    tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName="alice")["Tags"]}
    assert tags == {"team": "ops", "env": "prod"}
    iam.untag_user(UserName="alice", TagKeys=["env"])
    assert [t["Key"] for t in iam.list_user_tags(UserName="alice")["Tags"]] == ["team"]
    assert iam.list_groups_for_user(UserName="alice")["Groups"] == []
    iam.delete_user(UserName="bob")
    assert code_of(iam.get_user, UserName="bob") == ("NoSuchEntity", 404)
    # Names are unique ignoring case, as in IAM.
    assert code_of(iam.create_user, UserName="ALICE") == ("EntityAlreadyExists", 409)
    # Another account sees none of them.
    other = server.create_account()
    assert iam_client(server, other).list_users()["Users"] == []
    assert code_of(iam_client(server, other).get_user, UserName="alice") == ("NoSuchEntity", 404)


def test_bad_names_paths_and_tags_are_refused(server, account):
    iam = iam_client(server, account)
    assert code_of(iam.create_user, UserName="a b")[0] == "ValidationError"
    assert code_of(iam.create_user, UserName="x" * 65)[0] == "ValidationError"
    assert code_of(iam.create_user, UserName="u", Path="nopath")[0] == "ValidationError"
    assert (
        code_of(iam.create_user, UserName="u", Tags=[{"Key": "k", "Value": "1"}, {"Key": "K", "Value": "2"}])[0]
        == "InvalidInput"
    )
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    assert code_of(iam.create_user, UserName="u", Tags=tags)[0] == "LimitExceeded"
    # Nothing was created by the refusals.
    assert iam.list_users()["Users"] == []


def test_access_keys_authenticate_as_the_user_until_deactivated(server, account):
    iam = iam_client(server, account)
    iam.create_user(UserName="app")
    key = iam.create_access_key(UserName="app")["AccessKey"]
    assert key["Status"] == "Active" and key["AccessKeyId"].startswith("AKIA")
    who = client("sts", server, key["AccessKeyId"], key["SecretAccessKey"]).get_caller_identity()
    assert who["Arn"] == f"arn:aws:iam::{account.account_id}:user/app"
    assert who["Account"] == account.account_id
    listed = iam.list_access_keys(UserName="app")["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in listed] == [key["AccessKeyId"]]
    assert "SecretAccessKey" not in listed[0]
    second = iam.create_access_key(UserName="app")["AccessKey"]
    assert code_of(iam.create_access_key, UserName="app") == ("LimitExceeded", 409)
    # Deactivated: refused at once; active again: accepted again.
    iam.update_access_key(UserName="app", AccessKeyId=key["AccessKeyId"], Status="Inactive")
    sts = client("sts", server, key["AccessKeyId"], key["SecretAccessKey"])
    assert code_of(sts.get_caller_identity)[0] == "InvalidClientTokenId"
    statuses = {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName="app")["AccessKeyMetadata"]}
    assert statuses[key["AccessKeyId"]] == "Inactive"
    iam.update_access_key(UserName="app", AccessKeyId=key["AccessKeyId"], Status="Active")
    assert sts.get_caller_identity()["Arn"].endswith(":user/app")
    assert code_of(iam.update_access_key, UserName="app", AccessKeyId=key["AccessKeyId"], Status="Off")[0] == (
        "ValidationError"
    )
    # A user with keys cannot be deleted; deleted keys stop at once.
    assert code_of(iam.delete_user, UserName="app") == ("DeleteConflict", 409)
    for k in (key, second):
        iam.delete_access_key(UserName="app", AccessKeyId=k["AccessKeyId"])
    assert code_of(sts.get_caller_identity)[0] == "InvalidClientTokenId"
    assert code_of(iam.delete_access_key, UserName="app", AccessKeyId=key["AccessKeyId"]) == ("NoSuchEntity", 404)
    iam.delete_user(UserName="app")
    # Another user's key id is not this user's.
    iam.create_user(UserName="u1")
    iam.create_user(UserName="u2")
    k1 = iam.create_access_key(UserName="u1")["AccessKey"]
    assert code_of(iam.delete_access_key, UserName="u2", AccessKeyId=k1["AccessKeyId"]) == ("NoSuchEntity", 404)


def test_inline_policies_of_users_round_trip(server, account):
    iam = iam_client(server, account)
    iam.create_user(UserName="reader")
    iam.put_user_policy(UserName="reader", PolicyName="decrypt", PolicyDocument=json.dumps(DECRYPT_ONLY))
    got = iam.get_user_policy(UserName="reader", PolicyName="decrypt")
    assert got["PolicyDocument"] == DECRYPT_ONLY
    assert iam.list_user_policies(UserName="reader")["PolicyNames"] == ["decrypt"]
    assert code_of(iam.delete_user, UserName="reader") == ("DeleteConflict", 409)
    # Malformed documents, and documents too large, change nothing.
    for bad in ["{", "[]", json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Maybe"}]}),
                json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
                                                                     "Action": "kms:*", "Resource": "*"}]}),
                '{"Version": "2012-10-17", "Version": "2012-10-17", "Statement": []}']:
        assert code_of(iam.put_user_policy, UserName="reader", PolicyName="bad", PolicyDocument=bad)[0] == (
            "MalformedPolicyDocument"
        ), bad
    huge = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": f"arn:aws:kms:{REGION}:{account.account_id}:key/{i:036d}"}
        for i in range(40)]}
    assert code_of(iam.put_user_policy, UserName="reader", PolicyName="big", PolicyDocument=json.dumps(huge))[0] == (
        "LimitExceeded"
    )
    assert iam.list_user_policies(UserName="reader")["PolicyNames"] == ["decrypt"]
    iam.delete_user_policy(UserName="reader", PolicyName="decrypt")
    assert code_of(iam.get_user_policy, UserName="reader", PolicyName="decrypt") == ("NoSuchEntity", 404)
    assert code_of(iam.put_user_policy, UserName="ghost", PolicyName="p", PolicyDocument=json.dumps(DECRYPT_ONLY)) == (
        "NoSuchEntity", 404
    )
    iam.delete_user(UserName="reader")


def test_roles_and_their_policies(server, account):
    iam = iam_client(server, account)
    trust = dict(TRUST_ROOT)
    trust["Statement"] = [dict(TRUST_ROOT["Statement"][0], Principal={"AWS": f"arn:aws:iam::{account.account_id}:root"})]
    role = iam.create_role(RoleName="deployer", AssumeRolePolicyDocument=json.dumps(trust), MaxSessionDuration=7200,
                           Description="deploys")["Role"]
    assert role["Arn"] == f"arn:aws:iam::{account.account_id}:role/deployer"
    assert role["RoleId"].startswith("AROA")
    got = iam.get_role(RoleName="deployer")["Role"]
    assert got["AssumeRolePolicyDocument"] == trust
    assert got["MaxSessionDuration"] == 7200 and got["Description"] == "deploys"
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == ["deployer"]
    assert iam.list_instance_profiles_for_role(RoleName="deployer")["InstanceProfiles"] == []
    iam.put_role_policy(RoleName="deployer", PolicyName="p", PolicyDocument=json.dumps(DECRYPT_ONLY))
    assert iam.get_role_policy(RoleName="deployer", PolicyName="p")["PolicyDocument"] == DECRYPT_ONLY
    assert iam.list_role_policies(RoleName="deployer")["PolicyNames"] == ["p"]
    assert code_of(iam.delete_role, RoleName="deployer") == ("DeleteConflict", 409)
    iam.delete_role_policy(RoleName="deployer", PolicyName="p")
    trust2 = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole"}]}
    iam.update_assume_role_policy(RoleName="deployer", PolicyDocument=json.dumps(trust2))
    assert iam.get_role(RoleName="deployer")["Role"]["AssumeRolePolicyDocument"] == trust2
    assert code_of(iam.update_assume_role_policy, RoleName="deployer", PolicyDocument="{")[0] == "MalformedPolicyDocument"
    # botocore refuses a MaxSessionDuration below 3600 itself; the server must too.
    from urllib.parse import urlencode
    body = urlencode({"Action": "CreateRole", "Version": "2010-05-08", "RoleName": "r2",
                      "AssumeRolePolicyDocument": json.dumps(trust), "MaxSessionDuration": "60"})
    r = signed_iam_post(server, account, body)
    assert r.status_code == 400 and "<Code>ValidationError</Code>" in r.text, r.text
    assert code_of(iam.get_role, RoleName="r2")[0] == "NoSuchEntity"
    iam.delete_role(RoleName="deployer")
    assert code_of(iam.get_role, RoleName="deployer") == ("NoSuchEntity", 404)


def test_managed_policies_attach_and_detach(server, account):
    iam = iam_client(server, account)
    iam.create_user(UserName="ops")
    iam.create_role(RoleName="svc", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": account.account_id},
                                                 "Action": "sts:AssumeRole"}]}))
    pol = iam.create_policy(PolicyName="kms-decrypt", Path="/kw/", PolicyDocument=json.dumps(DECRYPT_ONLY),
                            Description="decrypt anything")["Policy"]
    arn = pol["Arn"]
    assert arn == f"arn:aws:iam::{account.account_id}:policy/kw/kms-decrypt"
    assert pol["DefaultVersionId"] == "v1" and pol["AttachmentCount"] == 0
    assert code_of(iam.create_policy, PolicyName="KMS-decrypt", PolicyDocument=json.dumps(DECRYPT_ONLY)) == (
        "EntityAlreadyExists", 409
    )
    version = iam.get_policy_version(PolicyArn=arn, VersionId="v1")["PolicyVersion"]
    assert version["Document"] == DECRYPT_ONLY and version["IsDefaultVersion"]
    assert code_of(iam.get_policy_version, PolicyArn=arn, VersionId="v2")[0] == "NoSuchEntity"
    iam.attach_user_policy(UserName="ops", PolicyArn=arn)
    iam.attach_role_policy(RoleName="svc", PolicyArn=arn)
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 2
    attached = iam.list_attached_user_policies(UserName="ops")["AttachedPolicies"]
    assert attached == [{"PolicyName": "kms-decrypt", "PolicyArn": arn}]
    assert iam.list_attached_role_policies(RoleName="svc")["AttachedPolicies"] == attached
    assert code_of(iam.delete_policy, PolicyArn=arn) == ("DeleteConflict", 409)
    assert code_of(iam.delete_user, UserName="ops") == ("DeleteConflict", 409)
    missing = f"arn:aws:iam::{account.account_id}:policy/nope"
    assert code_of(iam.attach_user_policy, UserName="ops", PolicyArn=missing) == ("NoSuchEntity", 404)
    assert code_of(iam.attach_user_policy, UserName="ops", PolicyArn="not-an-arn-but-long-enough")[0] in ("InvalidInput", "ValidationError")
    iam.detach_user_policy(UserName="ops", PolicyArn=arn)
    iam.detach_role_policy(RoleName="svc", PolicyArn=arn)
    assert code_of(iam.detach_user_policy, UserName="ops", PolicyArn=arn) == ("NoSuchEntity", 404)
    iam.delete_policy(PolicyArn=arn)
    assert code_of(iam.get_policy, PolicyArn=arn) == ("NoSuchEntity", 404)
    iam.delete_user(UserName="ops")
    iam.delete_role(RoleName="svc")


def test_bad_query_requests_get_iam_error_codes(server, account):
    cases = [
        ("Version=2010-05-08", "MissingAction", 400),
        ("Action=CreateGroup&Version=2010-05-08", "InvalidAction", 400),
        ("Action=ListUsers&Version=1999-01-01", "InvalidAction", 400),
        ("Action=ListUsers&Action=ListUsers", "InvalidParameterValue", 400),
        ("Action=CreateUser&Version=2010-05-08", "ValidationError", 400),
        ("Action=ListUsers&Version=2010-05-08&MaxItems=0", "ValidationError", 400),
        ("Action=ListUsers&Version=2010-05-08&MaxItems=abc", "ValidationError", 400),
    ]
    for body, code, status in cases:
        r = signed_iam_post(server, account, body)
        assert r.status_code == status, (body, r.text)
        assert f"<Code>{code}</Code>" in r.text, (body, r.text)
        assert "iam.amazonaws.com/doc/2010-05-08" in r.text
    r = signed_iam_post(server, account, '{"Action": "ListUsers"}', content_type="application/json")
    assert r.status_code == 400 and "<Code>InvalidParameterValue</Code>" in r.text


def test_iam_calls_of_users_are_decided_by_their_policies(server, account):
    iam = iam_client(server, account)
    iam.create_user(UserName="intern")
    key = iam.create_access_key(UserName="intern")["AccessKey"]
    as_user = client("iam", server, key["AccessKeyId"], key["SecretAccessKey"])
    code, status = code_of(as_user.create_user, UserName="escalated")
    assert (code, status) == ("AccessDenied", 403)
    assert code_of(iam.get_user, UserName="escalated")[0] == "NoSuchEntity"
    # A policy allowing some IAM actions on some users.
    users = f"arn:aws:iam::{account.account_id}:user/app-*"
    iam.put_user_policy(UserName="intern", PolicyName="iam", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["iam:CreateUser", "iam:GetUser", "iam:DeleteUser"], "Resource": users},
            {"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"},
        ],
    }))
    assert as_user.create_user(UserName="app-1")["User"]["UserName"] == "app-1"
    assert as_user.get_user(UserName="app-1")["User"]["UserName"] == "app-1"
    assert "app-1" in [u["UserName"] for u in as_user.list_users()["Users"]]
    # Not on other users, and not other actions, and not itself upward.
    assert code_of(as_user.create_user, UserName="admin")[0] == "AccessDenied"
    assert code_of(as_user.create_access_key, UserName="app-1")[0] == "AccessDenied"
    assert code_of(as_user.put_user_policy, UserName="intern", PolicyName="more",
                   PolicyDocument=json.dumps(DECRYPT_ONLY))[0] == "AccessDenied"
    assert iam.list_user_policies(UserName="intern")["PolicyNames"] == ["iam"]
    msg = None
    try:
        as_user.create_role(RoleName="r", AssumeRolePolicyDocument=json.dumps(TRUST_ROOT))
    except ClientError as e:
        msg = e.response["Error"]["Message"]
    assert msg == (
        f"User: arn:aws:iam::{account.account_id}:user/intern is not authorized to perform: iam:CreateRole "
        f"on resource: arn:aws:iam::{account.account_id}:role/r because no identity-based policy allows the "
        "iam:CreateRole action"
    )
    as_user.delete_user(UserName="app-1")


def test_the_aws_cli_manages_users(server, account, tmp_path: Path):
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID=account.access_key_id,
        AWS_SECRET_ACCESS_KEY=account.secret_access_key,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(tmp_path / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
    )
    aws = [sys.executable, "-m", "awscli", "--endpoint-url", server.url, "--output", "json"]
    out = subprocess.run(aws + ["iam", "create-user", "--user-name", "cli-user"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["User"]["UserName"] == "cli-user"
    out = subprocess.run(aws + ["iam", "put-user-policy", "--user-name", "cli-user", "--policy-name", "d",
                                "--policy-document", json.dumps(DECRYPT_ONLY)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    out = subprocess.run(aws + ["iam", "get-user-policy", "--user-name", "cli-user", "--policy-name", "d"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["PolicyDocument"] == DECRYPT_ONLY
    out = subprocess.run(aws + ["iam", "get-user", "--user-name", "nobody"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "NoSuchEntity" in out.stderr


def test_credentials_a_user_cannot_have_are_listed_empty(server, account):
    """Terraform deletes a user with `force_destroy` by listing every kind of
    credential IAM has; Keywarden's users have only access keys, so the
    others answer as IAM does for a user without any."""
    iam = iam_client(server, account)
    iam.create_user(UserName="forced")
    assert iam.list_ssh_public_keys(UserName="forced")["SSHPublicKeys"] == []
    assert iam.list_service_specific_credentials(UserName="forced")["ServiceSpecificCredentials"] == []
    assert iam.list_signing_certificates(UserName="forced")["Certificates"] == []
    mfa = iam.list_mfa_devices(UserName="forced")
    assert mfa["MFADevices"] == [] and mfa["IsTruncated"] is False
    assert iam.list_virtual_mfa_devices(AssignmentStatus="Assigned")["VirtualMFADevices"] == []
    # No console password: NoSuchEntity, which Terraform takes as "nothing to delete".
    for call in (iam.get_login_profile, iam.delete_login_profile):
        with pytest.raises(ClientError) as info:
            call(UserName="forced")
        error = info.value.response["Error"]
        assert (error["Code"], info.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("NoSuchEntity", 404)
        assert error["Message"] == "Login Profile for User forced cannot be found."
    # A user that does not exist is NoSuchEntity for each of them.
    for call in (iam.list_ssh_public_keys, iam.list_service_specific_credentials, iam.list_signing_certificates,
                 iam.list_mfa_devices, iam.get_login_profile):
        assert code_of(call, UserName="nobody") == ("NoSuchEntity", 404), call
    assert code_of(iam.list_virtual_mfa_devices, AssignmentStatus="Some")[0] == "ValidationError"
    iam.delete_user(UserName="forced")


def test_access_key_last_used_names_the_user(server, account):
    iam = iam_client(server, account)
    iam.create_user(UserName="keyed")
    key = iam.create_access_key(UserName="keyed")["AccessKey"]
    got = iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"])
    assert got["UserName"] == "keyed"
    # Keywarden does not record last use: the answer for a key never used.
    assert got["AccessKeyLastUsed"] == {"ServiceName": "N/A", "Region": "N/A"}
    # The root's own key has no user.
    root = iam.get_access_key_last_used(AccessKeyId=account.access_key_id)
    assert "UserName" not in root and root["AccessKeyLastUsed"]["ServiceName"] == "N/A"
    # Another account's key, a deleted key, or no key at all: refused.
    other = server.create_account()
    assert code_of(iam.get_access_key_last_used, AccessKeyId=other.access_key_id) == ("AccessDenied", 403)
    assert code_of(iam.get_access_key_last_used, AccessKeyId="AKIAEXAMPLEEXAMPLE00") == ("AccessDenied", 403)
    iam.delete_access_key(UserName="keyed", AccessKeyId=key["AccessKeyId"])
    assert code_of(iam.get_access_key_last_used, AccessKeyId=key["AccessKeyId"]) == ("AccessDenied", 403)
    iam.delete_user(UserName="keyed")


def test_managed_policies_are_listed(server, account):
    iam = iam_client(server, account)
    doc = json.dumps(DECRYPT_ONLY)
    a = iam.create_policy(PolicyName="alpha", Path="/kms/", PolicyDocument=doc, Description="first")["Policy"]
    b = iam.create_policy(PolicyName="beta", PolicyDocument=doc)["Policy"]
    iam.create_user(UserName="lister")
    iam.attach_user_policy(UserName="lister", PolicyArn=a["Arn"])
    listed = iam.list_policies(Scope="Local")
    assert [p["PolicyName"] for p in listed["Policies"]] == ["alpha", "beta"]
    assert listed["IsTruncated"] is False
    alpha = listed["Policies"][0]
    assert alpha["Arn"] == a["Arn"] and alpha["AttachmentCount"] == 1 and alpha["DefaultVersionId"] == "v1"
    # As IAM's, the listing leaves descriptions out; GetPolicy has them.
    assert "Description" not in alpha
    assert iam.get_policy(PolicyArn=a["Arn"])["Policy"]["Description"] == "first"
    assert listed["Policies"][1]["AttachmentCount"] == 0
    assert [p["PolicyName"] for p in iam.list_policies()["Policies"]] == ["alpha", "beta"]
    assert [p["PolicyName"] for p in iam.list_policies(OnlyAttached=True)["Policies"]] == ["alpha"]
    assert [p["PolicyName"] for p in iam.list_policies(PathPrefix="/kms/")["Policies"]] == ["alpha"]
    # There are no AWS managed policies and no permissions boundaries.
    assert iam.list_policies(Scope="AWS")["Policies"] == []
    assert iam.list_policies(PolicyUsageFilter="PermissionsBoundary")["Policies"] == []
    page = iam.list_policies(MaxItems=1)
    assert page["IsTruncated"] and [p["PolicyName"] for p in page["Policies"]] == ["alpha"]
    assert [p["PolicyName"] for p in iam.list_policies(Marker=page["Marker"])["Policies"]] == ["beta"]
    assert code_of(iam.list_policies, Scope="Mine")[0] == "ValidationError"
    # Another account sees none of them.
    assert iam_client(server, server.create_account()).list_policies()["Policies"] == []
    iam.detach_user_policy(UserName="lister", PolicyArn=a["Arn"])
    iam.delete_user(UserName="lister")
    iam.delete_policy(PolicyArn=a["Arn"])
    iam.delete_policy(PolicyArn=b["Arn"])
