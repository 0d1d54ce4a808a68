"""Cross-account use of keys (issue 18): a key of account A is usable by a
principal of account B only when A's key policy allows it (naming B's
account or the principal) and, for B's users and role sessions, an
identity policy in B allows it too; or when A granted it to the
principal. A key that is not shared with B is `NotFoundException` to B,
as if it did not exist. Written from docs/access-control.md."""

from __future__ import annotations

import json

import boto3
import pytest
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


def user_of(server, account, name, *policies):
    """A user of `account` with these inline policies: its KMS client and ARN."""
    iam = root("iam", server, account)
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    for i, doc in enumerate(policies):
        iam.put_user_policy(UserName=name, PolicyName=f"p{i}", PolicyDocument=json.dumps(doc))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return client("kms", server, key["AccessKeyId"], key["SecretAccessKey"]), arn


def identity(actions, resource="*", effect="Allow"):
    return {"Version": "2012-10-17", "Statement": [{"Effect": effect, "Action": actions, "Resource": resource}]}


def key_policy(owner, *statements):
    """The default statement for the owner's root, plus `statements`."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
             "Principal": {"AWS": f"arn:aws:iam::{owner}:root"}, "Action": "kms:*", "Resource": "*"},
            *statements,
        ],
    })


def share(principal, actions, effect="Allow"):
    return {"Effect": effect, "Principal": {"AWS": principal}, "Action": actions, "Resource": "*"}


USE = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey", "kms:ReEncrypt*"]


def code_of(call, *args, **kwargs):
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    err = info.value.response["Error"]
    return err["Code"], err["Message"]


@pytest.fixture
def two(server):
    """Accounts A (the key's owner) and B, with their root KMS clients."""
    a, b = server.create_account(), server.create_account()
    return a, b, root("kms", server, a), root("kms", server, b)


def test_a_key_not_shared_is_not_found_to_another_account(two):
    a, b, kms_a, kms_b = two
    key = kms_a.create_key()["KeyMetadata"]
    blob = kms_a.encrypt(KeyId=key["Arn"], Plaintext=b"only A")["CiphertextBlob"]
    unknown = key["Arn"].rsplit("/", 1)[0] + "/00000000-0000-4000-8000-000000000000"
    for arn in (key["Arn"], unknown):
        code, msg = code_of(kms_b.describe_key, KeyId=arn)
        assert code == "NotFoundException", msg
        assert code_of(kms_b.encrypt, KeyId=arn, Plaintext=b"x")[0] == "NotFoundException"
    # The same answer for a real key and an unknown one: the message names
    # only what the caller sent.
    assert code_of(kms_b.describe_key, KeyId=key["Arn"])[1] == f"Key '{key['Arn']}' does not exist"
    assert code_of(kms_b.decrypt, CiphertextBlob=blob)[0] == "InvalidCiphertextException"
    assert code_of(kms_b.decrypt, CiphertextBlob=blob, KeyId=key["Arn"])[0] == "NotFoundException"
    # A bare key id always means the caller's own account.
    assert code_of(kms_b.describe_key, KeyId=key["KeyId"])[0] == "NotFoundException"


def test_a_key_shared_with_an_account_serves_its_root(two):
    a, b, kms_a, kms_b = two
    key = kms_a.create_key(Policy=key_policy(
        a.account_id, share(f"arn:aws:iam::{b.account_id}:root", USE)))["KeyMetadata"]
    meta = kms_b.describe_key(KeyId=key["Arn"])["KeyMetadata"]
    assert meta["AWSAccountId"] == a.account_id and meta["Arn"] == key["Arn"]
    blob = kms_b.encrypt(KeyId=key["Arn"], Plaintext=b"from B")["CiphertextBlob"]
    # Decrypt finds the key from the blob, also without a KeyId.
    out = kms_b.decrypt(CiphertextBlob=blob)
    assert out["Plaintext"] == b"from B" and out["KeyId"] == key["Arn"]
    assert kms_b.decrypt(CiphertextBlob=blob, KeyId=key["Arn"])["Plaintext"] == b"from B"
    assert kms_a.decrypt(CiphertextBlob=blob)["Plaintext"] == b"from B"
    dk = kms_b.generate_data_key(KeyId=key["Arn"], KeySpec="AES_256")
    assert kms_a.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]
    # ReEncrypt from B's own key to A's shared key and back.
    own = kms_b.create_key()["KeyMetadata"]
    mine = kms_b.encrypt(KeyId=own["KeyId"], Plaintext=b"moved")["CiphertextBlob"]
    moved = kms_b.re_encrypt(CiphertextBlob=mine, DestinationKeyId=key["Arn"])
    assert moved["KeyId"] == key["Arn"]
    back = kms_b.re_encrypt(CiphertextBlob=moved["CiphertextBlob"], DestinationKeyId=own["KeyId"])
    assert kms_b.decrypt(CiphertextBlob=back["CiphertextBlob"])["Plaintext"] == b"moved"
    # Actions the key policy does not give B are refused by it.
    code, msg = code_of(kms_b.generate_data_key_without_plaintext, KeyId=key["Arn"], KeySpec="AES_256")
    assert code == "AccessDeniedException"
    assert msg == (f"User: arn:aws:iam::{b.account_id}:root is not authorized to perform: "
                   f"kms:GenerateDataKeyWithoutPlaintext on resource: {key['Arn']} "
                   "because no resource-based policy allows the kms:GenerateDataKeyWithoutPlaintext action")


def test_operations_aws_keeps_in_the_owner_account_refuse_another_account(two):
    a, b, kms_a, kms_b = two
    key = kms_a.create_key(Policy=key_policy(
        a.account_id, share(f"arn:aws:iam::{b.account_id}:root", "kms:*")))["KeyMetadata"]
    for call, kwargs in [
        (kms_b.schedule_key_deletion, {"PendingWindowInDays": 7}),
        (kms_b.disable_key, {}),
        (kms_b.put_key_policy, {"PolicyName": "default", "Policy": key_policy(b.account_id)}),
        (kms_b.get_key_policy, {"PolicyName": "default"}),
        (kms_b.tag_resource, {"Tags": [{"TagKey": "owner", "TagValue": "b"}]}),
        (kms_b.enable_key_rotation, {}),
        (kms_b.update_key_description, {"Description": "taken"}),
    ]:
        code, msg = code_of(call, KeyId=key["Arn"], **kwargs)
        assert code == "NotFoundException", (call.__name__, msg)
        assert "cannot use a key of another account" in msg, msg
    # Aliases name keys of the caller's account only.
    kms_a.create_alias(AliasName="alias/shared", TargetKeyId=key["KeyId"])
    alias_arn = f"arn:aws:kms:{REGION}:{a.account_id}:alias/shared"
    assert code_of(kms_b.encrypt, KeyId=alias_arn, Plaintext=b"x")[0] == "NotFoundException"
    # Nothing changed.
    meta = kms_a.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert meta["KeyState"] == "Enabled" and meta["Description"] == ""
    assert kms_a.list_resource_tags(KeyId=key["KeyId"])["Tags"] == []
    assert "Enable IAM User Permissions" in kms_a.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"]
    # The rotation status may be read across accounts (AWS allows it).
    assert kms_b.get_key_rotation_status(KeyId=key["Arn"])["KeyRotationEnabled"] is False


def test_a_user_of_the_other_account_needs_both_sides(server, two):
    a, b, kms_a, kms_b = two
    key = kms_a.create_key(Policy=key_policy(
        a.account_id, share(f"arn:aws:iam::{b.account_id}:root", USE)))["KeyMetadata"]
    blob = kms_a.encrypt(KeyId=key["KeyId"], Plaintext=b"both sides")["CiphertextBlob"]
    # Key policy yes, identity policy no.
    nobody, nobody_arn = user_of(server, b, "nobody")
    code, msg = code_of(nobody.decrypt, CiphertextBlob=blob)
    assert code == "AccessDeniedException"
    assert msg == (f"User: {nobody_arn} is not authorized to perform: kms:Decrypt on resource: "
                   f"{key['Arn']} because no identity-based policy allows the kms:Decrypt action")
    # Both: the identity policy allows Decrypt on A's key.
    reader, _ = user_of(server, b, "reader", identity("kms:Decrypt", key["Arn"]))
    assert reader.decrypt(CiphertextBlob=blob)["Plaintext"] == b"both sides"
    assert code_of(reader.encrypt, KeyId=key["Arn"], Plaintext=b"x")[0] == "AccessDeniedException"
    # Identity policy yes, key policy no: another key of A, not shared, is
    # not found, whatever B's identity policies say.
    private = kms_a.create_key()["KeyMetadata"]
    greedy, _ = user_of(server, b, "greedy", identity("kms:*"))
    assert code_of(greedy.describe_key, KeyId=private["Arn"])[0] == "NotFoundException"
    private_blob = kms_a.encrypt(KeyId=private["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    assert code_of(greedy.decrypt, CiphertextBlob=private_blob)[0] == "InvalidCiphertextException"
    # A user of A itself is not helped by B's sharing.
    a_user, _ = user_of(server, a, "a-nobody")
    assert code_of(a_user.decrypt, CiphertextBlob=blob)[0] == "AccessDeniedException"


def test_a_key_policy_naming_one_user_of_the_other_account(server, two):
    a, b, kms_a, kms_b = two
    alice, alice_arn = user_of(server, b, "alice", identity(["kms:Encrypt", "kms:Decrypt"]))
    bob, _ = user_of(server, b, "bob", identity(["kms:Encrypt", "kms:Decrypt"]))
    key = kms_a.create_key(Policy=key_policy(a.account_id, share(alice_arn, USE)))["KeyMetadata"]
    blob = alice.encrypt(KeyId=key["Arn"], Plaintext=b"alice")["CiphertextBlob"]
    assert alice.decrypt(CiphertextBlob=blob)["Plaintext"] == b"alice"
    # Bob and B's root are not named: the key does not exist for them.
    assert code_of(bob.encrypt, KeyId=key["Arn"], Plaintext=b"x")[0] == "NotFoundException"
    assert code_of(kms_b.encrypt, KeyId=key["Arn"], Plaintext=b"x")[0] == "NotFoundException"
    # An explicit deny in the key policy wins over both allows.
    kms_a.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=key_policy(
        a.account_id, share(alice_arn, USE), share(alice_arn, "kms:Decrypt", effect="Deny")))
    code, msg = code_of(alice.decrypt, CiphertextBlob=blob)
    assert code == "AccessDeniedException" and msg.endswith("with an explicit deny in a resource-based policy"), msg
    assert alice.encrypt(KeyId=key["Arn"], Plaintext=b"still")["KeyId"] == key["Arn"]
    # An explicit deny in B's identity policy wins too.
    iam_b = root("iam", server, b)
    iam_b.put_user_policy(UserName="alice", PolicyName="no-encrypt",
                          PolicyDocument=json.dumps(identity("kms:Encrypt", effect="Deny")))
    code, msg = code_of(alice.encrypt, KeyId=key["Arn"], Plaintext=b"x")
    assert code == "AccessDeniedException" and msg.endswith("with an explicit deny in an identity-based policy"), msg


def test_a_grant_to_a_principal_of_another_account(server, two):
    a, b, kms_a, kms_b = two
    key = kms_a.create_key()["KeyMetadata"]  # the default key policy: not shared
    carol, carol_arn = user_of(server, b, "carol")  # no identity policies
    assert code_of(carol.encrypt, KeyId=key["Arn"], Plaintext=b"x")[0] == "NotFoundException"
    grant = kms_a.create_grant(KeyId=key["KeyId"], GranteePrincipal=carol_arn,
                               RetiringPrincipal=carol_arn, Operations=["Encrypt", "Decrypt"])
    blob = carol.encrypt(KeyId=key["Arn"], Plaintext=b"granted")["CiphertextBlob"]
    assert carol.decrypt(CiphertextBlob=blob)["Plaintext"] == b"granted"
    # Only what the grant lists.
    assert code_of(carol.describe_key, KeyId=key["Arn"])[0] == "AccessDeniedException"
    assert code_of(carol.generate_data_key, KeyId=key["Arn"], KeySpec="AES_256")[0] == "AccessDeniedException"
    # B's root has no grant and is not named: not found.
    assert code_of(kms_b.encrypt, KeyId=key["Arn"], Plaintext=b"x")[0] == "NotFoundException"
    # The retiring principal retires it with the grant token, across accounts.
    carol.retire_grant(GrantToken=grant["GrantToken"])
    assert code_of(carol.encrypt, KeyId=key["Arn"], Plaintext=b"x")[0] == "NotFoundException"
    assert kms_a.list_grants(KeyId=key["KeyId"])["Grants"] == []


def test_a_grant_to_a_role_serves_its_sessions(server, two):
    a, b, kms_a, kms_b = two
    iam_b = root("iam", server, b)
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{b.account_id}:root"}, "Action": "sts:AssumeRole"}]}
    role = iam_b.create_role(RoleName="batch", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    key = kms_a.create_key()["KeyMetadata"]
    kms_a.create_grant(KeyId=key["KeyId"], GranteePrincipal=role["Arn"], Operations=["Encrypt", "Decrypt"])
    creds = root("sts", server, b).assume_role(RoleArn=role["Arn"], RoleSessionName="job-1")["Credentials"]
    session = client("kms", server, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    blob = session.encrypt(KeyId=key["Arn"], Plaintext=b"role")["CiphertextBlob"]
    assert session.decrypt(CiphertextBlob=blob)["Plaintext"] == b"role"
    # In the key's own account a grant to a role serves its sessions too.
    iam_a = root("iam", server, a)
    trust["Statement"][0]["Principal"]["AWS"] = f"arn:aws:iam::{a.account_id}:root"
    own_role = iam_a.create_role(RoleName="own", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    own = kms_a.create_key()["KeyMetadata"]
    creds = root("sts", server, a).assume_role(RoleArn=own_role["Arn"], RoleSessionName="s-1")["Credentials"]
    own_session = client("kms", server, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    assert code_of(own_session.encrypt, KeyId=own["KeyId"], Plaintext=b"x")[0] == "AccessDeniedException"
    kms_a.create_grant(KeyId=own["KeyId"], GranteePrincipal=own_role["Arn"], Operations=["Encrypt"])
    assert own_session.encrypt(KeyId=own["KeyId"], Plaintext=b"x")["KeyId"] == own["Arn"]


def test_the_other_account_can_create_and_list_grants_when_the_key_policy_allows(server, two):
    a, b, kms_a, kms_b = two
    key = kms_a.create_key(Policy=key_policy(a.account_id, share(
        f"arn:aws:iam::{b.account_id}:root",
        ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant", "kms:DescribeKey"])))["KeyMetadata"]
    app, app_arn = user_of(server, b, "app")
    grant = kms_b.create_grant(KeyId=key["Arn"], GranteePrincipal=app_arn, Operations=["Encrypt"])
    assert app.encrypt(KeyId=key["Arn"], Plaintext=b"x")["KeyId"] == key["Arn"]
    listed = kms_b.list_grants(KeyId=key["Arn"])["Grants"]
    assert [g["GrantId"] for g in listed] == [grant["GrantId"]]
    # The owner sees it too, and the other account may revoke it.
    assert [g["GrantId"] for g in kms_a.list_grants(KeyId=key["KeyId"])["Grants"]] == [grant["GrantId"]]
    kms_b.revoke_grant(KeyId=key["Arn"], GrantId=grant["GrantId"])
    # The key stays visible to B's users (its policy names B), but no
    # longer usable by the app.
    assert code_of(app.encrypt, KeyId=key["Arn"], Plaintext=b"x")[0] == "AccessDeniedException"
