"""Key policies and identity policies are enforced (issue 18): boto3's
`iam` and `kms` clients at one endpoint. A user is allowed what the key
policy and its identity policies allow, as AWS KMS decides; an explicit
deny wins; grants allow users; the policy lockout safety check holds."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from kw_helpers import REGION, no_retry_config


def client(service, server, key_id, secret):
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=no_retry_config(),
    )


def user_with(server, account, name, *policies):
    """A user of `account` with these inline policies; its KMS client and ARN."""
    iam = client("iam", server, account.access_key_id, account.secret_access_key)
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    for i, doc in enumerate(policies):
        iam.put_user_policy(UserName=name, PolicyName=f"p{i}", PolicyDocument=json.dumps(doc))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return client("kms", server, key["AccessKeyId"], key["SecretAccessKey"]), arn


def allow(actions, resource="*", condition=None, effect="Allow"):
    st = {"Effect": effect, "Action": actions, "Resource": resource}
    if condition:
        st["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [st]}


def denied(call, *args, **kwargs):
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    err = info.value.response["Error"]
    assert err["Code"] == "AccessDeniedException", err
    return err["Message"]


def test_a_user_without_policies_is_denied_everything(server, account, kms):
    key = kms.create_key()["KeyMetadata"]
    user, arn = user_with(server, account, "nobody")
    msg = denied(user.encrypt, KeyId=key["KeyId"], Plaintext=b"x")
    assert msg == (
        f"User: {arn} is not authorized to perform: kms:Encrypt on resource: {key['Arn']} "
        "because no identity-based policy allows the kms:Encrypt action"
    )
    denied(user.describe_key, KeyId=key["KeyId"])
    denied(user.create_key)
    denied(user.list_keys)
    denied(user.schedule_key_deletion, KeyId=key["KeyId"], PendingWindowInDays=7)
    denied(user.generate_random, NumberOfBytes=16)
    # Nothing changed.
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"


def test_a_decrypt_only_user_can_only_decrypt(server, account, kms):
    key = kms.create_key()["KeyMetadata"]
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"secret")["CiphertextBlob"]
    user, _ = user_with(server, account, "reader", allow("kms:Decrypt"))
    assert user.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret"
    denied(user.encrypt, KeyId=key["KeyId"], Plaintext=b"x")
    denied(user.schedule_key_deletion, KeyId=key["KeyId"], PendingWindowInDays=7)
    denied(user.put_key_policy, KeyId=key["KeyId"], PolicyName="default", Policy=json.dumps(allow("kms:*")))
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"


def test_an_encryption_context_condition(server, account, kms):
    key = kms.create_key()["KeyMetadata"]
    policy = allow(
        ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"],
        key["Arn"],
        {"StringEquals": {"kms:EncryptionContext:app": "billing"}},
    )
    user, _ = user_with(server, account, "billing-app", policy)
    ok = user.encrypt(KeyId=key["KeyId"], Plaintext=b"a", EncryptionContext={"app": "billing"})
    assert user.decrypt(CiphertextBlob=ok["CiphertextBlob"], EncryptionContext={"app": "billing"})["Plaintext"] == b"a"
    user.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256", EncryptionContext={"app": "billing"})
    denied(user.encrypt, KeyId=key["KeyId"], Plaintext=b"a", EncryptionContext={"app": "hr"})
    denied(user.encrypt, KeyId=key["KeyId"], Plaintext=b"a")
    # The policy names one key: another key is refused.
    other = kms.create_key()["KeyMetadata"]
    denied(user.encrypt, KeyId=other["KeyId"], Plaintext=b"a", EncryptionContext={"app": "billing"})


def test_an_explicit_deny_wins(server, account, kms):
    key = kms.create_key()["KeyMetadata"]
    user, arn = user_with(
        server, account, "almost-admin", allow("kms:*"), allow("kms:ScheduleKeyDeletion", effect="Deny")
    )
    user.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    msg = denied(user.schedule_key_deletion, KeyId=key["KeyId"], PendingWindowInDays=7)
    assert msg.endswith("with an explicit deny in an identity-based policy"), msg
    # A deny in the key policy wins over the user's allow, and over root's.
    account_root = f"arn:aws:iam::{account.account_id}:root"
    key_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": account_root}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "no-encrypt", "Effect": "Deny", "Principal": {"AWS": arn}, "Action": "kms:Encrypt",
             "Resource": "*"},
        ],
    }
    kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=json.dumps(key_policy))
    msg = denied(user.encrypt, KeyId=key["KeyId"], Plaintext=b"x")
    assert msg.endswith("with an explicit deny in a resource-based policy"), msg
    user.decrypt(CiphertextBlob=kms.encrypt(KeyId=key["KeyId"], Plaintext=b"y")["CiphertextBlob"])


def test_a_key_policy_can_name_a_user_directly(server, account, kms):
    user, arn = user_with(server, account, "named")
    account_root = f"arn:aws:iam::{account.account_id}:root"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": account_root}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": arn}, "Action": ["kms:Encrypt", "kms:DescribeKey"],
             "Resource": "*"},
        ],
    }
    key = kms.create_key(Policy=json.dumps(policy))["KeyMetadata"]
    user.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    user.describe_key(KeyId=key["KeyId"])
    msg = denied(user.decrypt, CiphertextBlob=kms.encrypt(KeyId=key["KeyId"], Plaintext=b"y")["CiphertextBlob"])
    assert "no identity-based policy allows the kms:Decrypt action" in msg


def test_a_key_policy_without_the_account_shuts_out_identity_policies(server, account, kms):
    user, arn = user_with(server, account, "admin", allow("kms:*"))
    account_root = f"arn:aws:iam::{account.account_id}:root"
    # Only the root may manage this key; the user's kms:* does not help.
    key = kms.create_key(Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*",
                       "Condition": {"StringEquals": {"aws:PrincipalArn": account_root}}}],
    }))["KeyMetadata"]
    msg = denied(user.encrypt, KeyId=key["KeyId"], Plaintext=b"x")
    assert "because no resource-based policy allows the kms:Encrypt action" in msg
    kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")


def test_the_policy_lockout_safety_check(server, account, kms):
    key = kms.create_key()["KeyMetadata"]
    lockout = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account.account_id}:root"},
                       "Action": "kms:Encrypt", "Resource": "*"}],
    }
    with pytest.raises(ClientError) as info:
        kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=json.dumps(lockout))
    assert info.value.response["Error"]["Code"] == "MalformedPolicyDocumentException"
    with pytest.raises(ClientError) as info:
        kms.create_key(Policy=json.dumps(lockout))
    assert info.value.response["Error"]["Code"] == "MalformedPolicyDocumentException"
    # The refused policy was not stored.
    assert "kms:*" in kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"]
    # Bypassed, it is stored, and then even the root cannot change it.
    kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=json.dumps(lockout),
                       BypassPolicyLockoutSafetyCheck=True)
    kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    denied(kms.put_key_policy, KeyId=key["KeyId"], PolicyName="default", Policy=json.dumps(lockout),
           BypassPolicyLockoutSafetyCheck=True)
    denied(kms.describe_key, KeyId=key["KeyId"])


def test_grants_allow_users(server, account, kms):
    key = kms.create_key()["KeyMetadata"]
    user, arn = user_with(server, account, "grantee")
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"g")["CiphertextBlob"]
    denied(user.decrypt, CiphertextBlob=blob)
    grant = kms.create_grant(KeyId=key["KeyId"], GranteePrincipal=arn, Operations=["Decrypt"])
    assert user.decrypt(CiphertextBlob=blob)["Plaintext"] == b"g"
    denied(user.encrypt, KeyId=key["KeyId"], Plaintext=b"x")
    kms.revoke_grant(KeyId=key["KeyId"], GrantId=grant["GrantId"])
    denied(user.decrypt, CiphertextBlob=blob)


def test_managed_policies_and_policy_changes_take_effect_at_once(server, account, kms):
    iam = client("iam", server, account.access_key_id, account.secret_access_key)
    key = kms.create_key()["KeyMetadata"]
    user, _ = user_with(server, account, "ops")
    denied(user.describe_key, KeyId=key["KeyId"])
    arn = iam.create_policy(PolicyName="describe", PolicyDocument=json.dumps(allow("kms:DescribeKey")))["Policy"]["Arn"]
    iam.attach_user_policy(UserName="ops", PolicyArn=arn)
    assert user.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyId"] == key["KeyId"]
    iam.detach_user_policy(UserName="ops", PolicyArn=arn)
    denied(user.describe_key, KeyId=key["KeyId"])


def test_a_time_condition_in_a_key_policy(server, account, kms):
    root_arn = f"arn:aws:iam::{account.account_id}:root"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": root_arn}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": root_arn}, "Action": "kms:Encrypt", "Resource": "*",
             "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2001-01-01T00:00:00Z"}}},
            {"Effect": "Deny", "Principal": {"AWS": root_arn}, "Action": "kms:GenerateDataKey", "Resource": "*",
             "Condition": {"NumericLessThan": {"aws:EpochTime": "978307200"}}},
        ],
    }
    key = kms.create_key(Policy=json.dumps(policy))["KeyMetadata"]
    msg = denied(kms.encrypt, KeyId=key["KeyId"], Plaintext=b"x")
    assert msg.endswith("with an explicit deny in a resource-based policy"), msg
    # The clock is past 2001: the second deny does not apply.
    kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")
