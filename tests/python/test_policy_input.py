"""Hostile policy documents at every API entry point that takes one (issue 18):
kms CreateKey (Policy) and PutKeyPolicy; iam PutUserPolicy, PutRolePolicy,
CreateRole (AssumeRolePolicyDocument), UpdateAssumeRolePolicy and
CreatePolicy, through boto3 at the one endpoint, and as raw signed requests
for the bytes boto3 cannot send.

Deeply nested JSON (within and beyond the size limits, and just under and
over the parser's nesting bound, `MAX_NESTING_DEPTH` = 32 in
crates/keywarden-core/src/policy/mod.rs), oversized documents, duplicate keys,
NUL bytes, invalid UTF-8, characters outside printable Latin-1 and documents
that are not JSON objects must each get AWS's error kind (KMS:
MalformedPolicyDocumentException, LimitExceededException for a key policy over
32 KB; IAM: MalformedPolicyDocument, LimitExceeded over IAM's quota), leave
the server answering, and change nothing: the previous document is still
the stored one, and no key, role or policy was made. A valid policy built to
be costly to evaluate is bounded per decision and denies. Malformed Query
bodies on the IAM endpoint, and control characters in IAM tags and
descriptions, are refused the same way.

Limits: key policies 32,768 bytes
(https://docs.aws.amazon.com/kms/latest/developerguide/resource-limits.html);
IAM counts characters without white space: user inline policies 2,048, role
inline policies 10,240, managed policies 6,144, trust policies 2,048
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import quote

import boto3
import botocore.auth
import pytest
import requests
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from kw_helpers import REGION, no_retry_config, raw_post

NESTING_LIMIT = 32
KMS_MALFORMED = "MalformedPolicyDocumentException"
KMS_TOO_LARGE = "LimitExceededException"
IAM_MALFORMED = "MalformedPolicyDocument"
IAM_TOO_LARGE = "LimitExceeded"


def client(service: str, server, account):
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=account.access_key_id,
        aws_secret_access_key=account.secret_access_key,
        config=no_retry_config(),
    )


def signed_iam_post(server, account, body: bytes, content_type: str = "application/x-www-form-urlencoded"):
    """POSTs `body` as-is, SigV4-signed for service iam with botocore's signer."""
    url = server.url.rstrip("/") + "/"
    req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": content_type})
    botocore.auth.SigV4Auth(Credentials(account.access_key_id, account.secret_access_key), "iam", REGION).add_auth(req)
    return requests.post(url, data=body, headers=dict(req.headers.items()), timeout=60)


def form(**params: str) -> bytes:
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items()).encode()


# -- policy documents ----------------------------------------------------------


def statement(kind: str, account_id: str) -> dict[str, Any]:
    """A valid statement of a key policy, trust policy or identity policy."""
    root = f"arn:aws:iam::{account_id}:root"
    if kind == "key":
        return {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:*", "Resource": "*"}
    if kind == "trust":
        return {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": root}, "Action": "sts:AssumeRole"}
    return {"Sid": "Decrypt", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}


def valid(kind: str, account_id: str, sid: str = "Original") -> str:
    st = statement(kind, account_id)
    st["Sid"] = sid
    # ensure_ascii=False: characters go in as themselves, not as \u escapes.
    return json.dumps({"Version": "2012-10-17", "Statement": [st]}, ensure_ascii=False)


def nested_condition(kind: str, account_id: str, depth: int) -> str:
    """A document whose deepest array is at nesting level `depth`: the
    document (1), Statement (2), the statement (3), Condition (4), the
    operator (5) and then `depth - 5` arrays around the condition value."""
    assert depth > 5
    st = statement(kind, account_id)
    value: Any = "x"
    for _ in range(depth - 5):
        value = [value]
    st["Condition"] = {"StringEquals": {"aws:PrincipalTag/team": value}}
    text = json.dumps({"Version": "2012-10-17", "Statement": [st]}, separators=(",", ":"))
    assert max_depth(text) == depth
    return text


def max_depth(text: str) -> int:
    depth = best = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth -= 1
    return best


def size_of(entry_point: str, doc: str) -> int:
    """What an entry point counts against its limit: bytes for key policies,
    characters other than white space for IAM."""
    if entry_point.startswith("kms:"):
        return len(doc.encode())
    return sum(1 for c in doc if not c.isspace())


def sized(kind: str, account_id: str, entry_point: str, size: int) -> str:
    """A valid document of exactly `size` (as the entry point counts), its
    Sid padded."""
    doc = valid(kind, account_id, sid="")
    doc = valid(kind, account_id, sid="A" * (size - size_of(entry_point, doc)))
    assert size_of(entry_point, doc) == size
    return doc


def hostile_documents(kind: str, account_id: str, entry_point: str, size_limit: int) -> list[tuple[str, str, str]]:
    """(label, document, which error: "malformed" or "too large") for one
    entry point; `size_limit` is what the entry point counts (bytes for key
    policies, characters without white space for IAM)."""
    fits = size_limit - 8  # room for the closing brackets of the balanced forms
    # Over every size limit; through boto3, IAM's form encoding triples each
    # bracket (%5B), so 80,000 of them stay under the 256 KiB body limit
    # (100,000 literal ones go raw: test_100000_literal_brackets_...).
    deep = 100_000 if entry_point.startswith("kms:") else 80_000
    st = statement(kind, account_id)
    st_text = json.dumps(st)
    docs: list[tuple[str, str, str]] = [
        # Nesting within the size limit: the parser's bound refuses it.
        (f"{fits} unclosed [", "[" * fits, "malformed"),
        (f"{fits // 2} balanced []", "[" * (fits // 2) + "]" * (fits // 2), "malformed"),
        (f"{fits // 6} nested objects", '{"a":' * (fits // 6) + "1" + "}" * (fits // 6), "malformed"),
        (
            "nesting inside Statement",
            '{"Version":"2012-10-17","Statement":' + "[" * (fits // 2 - 40) + "]" * (fits // 2 - 40) + "}",
            "malformed",
        ),
        # Just over and just at the bound: both refused, the first for its depth.
        (f"depth {NESTING_LIMIT + 1}", nested_condition(kind, account_id, NESTING_LIMIT + 1), "malformed"),
        (f"depth {NESTING_LIMIT}", nested_condition(kind, account_id, NESTING_LIMIT), "malformed"),
        # Beyond every size limit here, so the size is what is refused.
        (f"{deep} unclosed [", "[" * deep, "too large"),
        (f"{deep // 5} unclosed {{", '{"a":' * (deep // 5), "too large"),
        # One character past the size limit, otherwise valid.
        ("one past the size limit", sized(kind, account_id, entry_point, size_limit + 1), "too large"),
        # Duplicate keys, at the top, in a statement, in a condition.
        ("duplicate Version", '{"Version":"2012-10-17","Version":"2012-10-17","Statement":[' + st_text + "]}", "malformed"),
        ("duplicate Statement", '{"Version":"2012-10-17","Statement":[' + st_text + '],"Statement":[]}', "malformed"),
        ("duplicate Effect", '{"Version":"2012-10-17","Statement":[' + st_text[:-1] + ',"Effect":"Deny"}]}', "malformed"),
        (
            "duplicate condition key",
            '{"Version":"2012-10-17","Statement":['
            + st_text[:-1]
            + ',"Condition":{"StringEquals":{"aws:username":"a","aws:username":"b"}}}]}',
            "malformed",
        ),
        # Not a JSON object.
        ("a JSON string", json.dumps(valid(kind, account_id)), "malformed"),
        ("a JSON array", "[" + valid(kind, account_id) + "]", "malformed"),
        ("a number", "42", "malformed"),
        ("null", "null", "malformed"),
        ("true", "true", "malformed"),
        # NUL and other characters a policy may not contain.
        ("NUL in a string", valid(kind, account_id, sid="NulSid").replace("NulSid", "Nul\x00Sid"), "malformed"),
        ("NUL between tokens", valid(kind, account_id).replace(",", ",\x00", 1), "malformed"),
        ("U+FFFD (what invalid UTF-8 decodes to)", valid(kind, account_id, sid="Bad\ufffd"), "malformed"),
        ("a line separator", valid(kind, account_id, sid="Line\u2028Sep"), "malformed"),
        ("trailing garbage", valid(kind, account_id) + "}", "malformed"),
        ("two documents", valid(kind, account_id) + valid(kind, account_id), "malformed"),
    ]
    if kind == "identity":
        # IAM allows only letters and digits in a Sid; the refusal quotes the
        # Sid, whose escaped NUL must not break the XML answer.
        docs.append(("escaped NUL in a Sid", valid(kind, account_id, sid="Nul\x00Sid"), "malformed"))
    return docs


# -- entry points --------------------------------------------------------------


@dataclass
class EntryPoint:
    name: str
    kind: str  # "key", "trust" or "identity"
    size_limit: int
    malformed: str
    too_large: str
    call: Callable[[str], Any]  # sends one document
    snapshot: Callable[[], Any]  # what must not change


def entry_points(server, account) -> list[EntryPoint]:
    kms = client("kms", server, account)
    iam = client("iam", server, account)
    aid = account.account_id

    key_id = kms.create_key(Policy=valid("key", aid))["KeyMetadata"]["KeyId"]
    iam.create_user(UserName="holder")
    iam.put_user_policy(UserName="holder", PolicyName="p", PolicyDocument=valid("identity", aid))
    iam.create_role(RoleName="holder", AssumeRolePolicyDocument=valid("trust", aid))
    iam.put_role_policy(RoleName="holder", PolicyName="p", PolicyDocument=valid("identity", aid))
    iam.create_policy(PolicyName="holder", PolicyDocument=valid("identity", aid))

    def keys():
        return sorted(k["KeyId"] for k in kms.list_keys()["Keys"])

    def roles():
        return sorted((r["RoleName"], json.dumps(r["AssumeRolePolicyDocument"], sort_keys=True))
                      for r in iam.list_roles()["Roles"])

    def policies():
        return sorted((p["PolicyName"], p["DefaultVersionId"]) for p in iam.list_policies(Scope="Local")["Policies"])

    return [
        EntryPoint("kms:CreateKey", "key", 32_768, KMS_MALFORMED, KMS_TOO_LARGE,
                   lambda doc: kms.create_key(Policy=doc), keys),
        EntryPoint("kms:PutKeyPolicy", "key", 32_768, KMS_MALFORMED, KMS_TOO_LARGE,
                   lambda doc: kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=doc),
                   lambda: kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]),
        EntryPoint("iam:PutUserPolicy", "identity", 2_048, IAM_MALFORMED, IAM_TOO_LARGE,
                   lambda doc: iam.put_user_policy(UserName="holder", PolicyName="p", PolicyDocument=doc),
                   lambda: (iam.list_user_policies(UserName="holder")["PolicyNames"],
                            iam.get_user_policy(UserName="holder", PolicyName="p")["PolicyDocument"])),
        EntryPoint("iam:PutRolePolicy", "identity", 10_240, IAM_MALFORMED, IAM_TOO_LARGE,
                   lambda doc: iam.put_role_policy(RoleName="holder", PolicyName="p", PolicyDocument=doc),
                   lambda: (iam.list_role_policies(RoleName="holder")["PolicyNames"],
                            iam.get_role_policy(RoleName="holder", PolicyName="p")["PolicyDocument"])),
        EntryPoint("iam:CreateRole", "trust", 2_048, IAM_MALFORMED, IAM_TOO_LARGE,
                   lambda doc: iam.create_role(RoleName="made", AssumeRolePolicyDocument=doc), roles),
        EntryPoint("iam:UpdateAssumeRolePolicy", "trust", 2_048, IAM_MALFORMED, IAM_TOO_LARGE,
                   lambda doc: iam.update_assume_role_policy(RoleName="holder", PolicyDocument=doc), roles),
        EntryPoint("iam:CreatePolicy", "identity", 6_144, IAM_MALFORMED, IAM_TOO_LARGE,
                   lambda doc: iam.create_policy(PolicyName="made", PolicyDocument=doc), policies),
    ]


ENTRY_POINTS = [
    "kms:CreateKey",
    "kms:PutKeyPolicy",
    "iam:PutUserPolicy",
    "iam:PutRolePolicy",
    "iam:CreateRole",
    "iam:UpdateAssumeRolePolicy",
    "iam:CreatePolicy",
]


def error_of(call: Callable[[], Any]) -> tuple[str, int, str] | None:
    """The (code, status, message) a call fails with; None if it succeeds."""
    try:
        call()
    except ClientError as e:
        return (
            e.response["Error"]["Code"],
            e.response["ResponseMetadata"]["HTTPStatusCode"],
            e.response["Error"].get("Message", ""),
        )
    return None


def assert_alive(server) -> None:
    assert server.process is not None and server.process.poll() is None, (
        f"the server exited; log tail:\n{server.log_text()[-4000:]}"
    )


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_hostile_documents_are_refused_and_change_nothing(server, account, name):
    ep = next(e for e in entry_points(server, account) if e.name == name)
    before = ep.snapshot()
    problems = []
    for label, doc, expect in hostile_documents(ep.kind, account.account_id, ep.name, ep.size_limit):
        want = ep.malformed if expect == "malformed" else ep.too_large
        got = error_of(lambda: ep.call(doc))
        assert_alive(server)
        after = ep.snapshot()  # also: the server still answers
        if got is None:
            problems.append(f"{label}: accepted")
        elif got[0] != want or not 400 <= got[1] < 500:
            problems.append(f"{label}: expected {want}, got {got[0]} (HTTP {got[1]}): {got[2][:200]!r}")
        elif label == f"depth {NESTING_LIMIT + 1}" and "levels deep" not in got[2]:
            problems.append(f"{label}: refused, but not for its depth: {got[2][:200]!r}")
        elif label == f"depth {NESTING_LIMIT}" and "levels deep" in got[2]:
            problems.append(f"{label}: refused for its depth, though within the bound: {got[2][:200]!r}")
        if after != before:
            problems.append(f"{label}: the state changed: {before!r} -> {after!r}")
            before = after
    assert not problems, f"{name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_a_document_exactly_at_the_size_limit_is_accepted(server, account, name):
    """The size refusals above are for the size: a valid document exactly at
    the limit goes through the same entry point."""
    ep = next(e for e in entry_points(server, account) if e.name == name)
    before = ep.snapshot()
    doc = sized(ep.kind, account.account_id, ep.name, ep.size_limit)
    assert error_of(lambda: ep.call(doc)) is None, ep.name
    assert_alive(server)
    assert ep.snapshot() != before, f"{ep.name}: the document at the limit was not stored"


# -- bytes boto3 cannot send -----------------------------------------------------


def test_invalid_utf8_in_a_key_policy_is_refused(server, account):
    kms = client("kms", server, account)
    key_id = kms.create_key(Policy=valid("key", account.account_id))["KeyMetadata"]["KeyId"]
    before = kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]
    keys_before = kms.list_keys()["Keys"]
    doc = valid("key", account.account_id, sid="BADSID").encode()
    for bad in (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00"):
        broken = doc.replace(b"BADSID", b"Bad" + bad + b"Sid")
        for target, extra in (("TrentService.PutKeyPolicy", {"KeyId": key_id, "PolicyName": "default"}),
                              ("TrentService.CreateKey", {})):
            head = json.dumps(extra)[:-1] + (", " if extra else "")
            body = head.encode() + b'"Policy": "' + broken.replace(b'"', b'\\"') + b'"}'
            r = raw_post(server.url, body, target=target, account=account)
            assert 400 <= r.status < 500, (target, bad, r.describe())
            assert r.error_type in ("SerializationException", KMS_MALFORMED), (target, bad, r.describe())
    # A lone surrogate written as a JSON escape is not a character either.
    body = json.dumps({"KeyId": key_id, "PolicyName": "default"})[:-1].encode() + b', "Policy": "{\\ud800}"}'
    r = raw_post(server.url, body, target="TrentService.PutKeyPolicy", account=account)
    assert 400 <= r.status < 500 and r.error_type in ("SerializationException", KMS_MALFORMED), r.describe()
    # The policy arrives as JSON instead of a string holding JSON.
    for policy in (json.loads(valid("key", account.account_id)), ["[" * 10_000], "[" * 50_000):
        body = json.dumps({"KeyId": key_id, "PolicyName": "default", "Policy": policy}).encode()
        r = raw_post(server.url, body, target="TrentService.PutKeyPolicy", account=account)
        assert 400 <= r.status < 500, r.describe()
    deep = b'{"KeyId": "' + key_id.encode() + b'", "Policy": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = raw_post(server.url, deep, target="TrentService.PutKeyPolicy", account=account)
    assert r.status == 400 and r.error_type == "SerializationException", r.describe()
    assert_alive(server)
    assert kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"] == before
    assert kms.list_keys()["Keys"] == keys_before


def test_invalid_utf8_and_nul_in_iam_policy_parameters_are_refused(server, account):
    iam = client("iam", server, account)
    aid = account.account_id
    iam.create_user(UserName="holder")
    original = valid("identity", aid)
    iam.put_user_policy(UserName="holder", PolicyName="p", PolicyDocument=original)
    iam.create_role(RoleName="holder", AssumeRolePolicyDocument=valid("trust", aid))
    role_before = iam.get_role(RoleName="holder")["Role"]["AssumeRolePolicyDocument"]
    doc = quote(valid("identity", aid, sid="BADSID"), safe="")
    trust = quote(valid("trust", aid, sid="BADSID"), safe="")
    for bad in ("%FF", "%C3%28", "%ED%A0%80", "%00", "\xff"):
        cases = [
            f"Action=PutUserPolicy&Version=2010-05-08&UserName=holder&PolicyName=p&PolicyDocument={doc.replace('BADSID', 'Bad' + bad)}",
            f"Action=CreatePolicy&Version=2010-05-08&PolicyName=made&PolicyDocument={doc.replace('BADSID', 'Bad' + bad)}",
            f"Action=UpdateAssumeRolePolicy&Version=2010-05-08&RoleName=holder&PolicyDocument={trust.replace('BADSID', 'Bad' + bad)}",
        ]
        for body in cases:
            raw = body.encode("latin-1")  # "\xff" goes out as the raw byte 0xFF
            r = signed_iam_post(server, account, raw)
            assert r.status_code == 400, (body[:80], r.text)
            assert f"<Code>{IAM_MALFORMED}</Code>" in r.text or "<Code>ValidationError</Code>" in r.text, (
                body[:80], r.text)
    assert_alive(server)
    assert iam.get_user_policy(UserName="holder", PolicyName="p")["PolicyDocument"] == json.loads(original)
    assert iam.get_role(RoleName="holder")["Role"]["AssumeRolePolicyDocument"] == role_before
    assert iam.list_policies(Scope="Local")["Policies"] == []


def test_100000_literal_brackets_reach_every_iam_entry_point(server, account):
    """Brackets need no percent-encoding in a form body, so 100,000 nested
    levels fit in one request (boto3 would send 300 KB): each IAM entry point
    refuses them by its quota, and nothing changes."""
    iam = client("iam", server, account)
    aid = account.account_id
    iam.create_user(UserName="holder")
    iam.put_user_policy(UserName="holder", PolicyName="p", PolicyDocument=valid("identity", aid))
    iam.create_role(RoleName="holder", AssumeRolePolicyDocument=valid("trust", aid))
    iam.put_role_policy(RoleName="holder", PolicyName="p", PolicyDocument=valid("identity", aid))

    def state():
        return (
            iam.get_user_policy(UserName="holder", PolicyName="p")["PolicyDocument"],
            iam.get_role_policy(RoleName="holder", PolicyName="p")["PolicyDocument"],
            iam.list_roles()["Roles"],
            iam.list_policies(Scope="Local")["Policies"],
        )

    before = state()
    actions = [
        "Action=PutUserPolicy&UserName=holder&PolicyName=p&PolicyDocument=",
        "Action=PutRolePolicy&RoleName=holder&PolicyName=p&PolicyDocument=",
        "Action=CreateRole&RoleName=made&AssumeRolePolicyDocument=",
        "Action=UpdateAssumeRolePolicy&RoleName=holder&PolicyDocument=",
        "Action=CreatePolicy&PolicyName=made&PolicyDocument=",
    ]
    for action in actions:
        for deep in (b"[" * 100_000, b'{"a":' * 20_000, b"[" * 50_000 + b"]" * 50_000):
            body = b"Version=2010-05-08&" + action.encode() + deep
            r = signed_iam_post(server, account, body)
            assert r.status_code == 409 and f"<Code>{IAM_TOO_LARGE}</Code>" in r.text, (action, r.text)
            assert_alive(server)
    assert state() == before


def test_white_space_is_not_counted_but_is_bounded(server, account):
    """IAM does not count white space against a policy's quota
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html),
    so a small policy with 10,000 spaces goes in; the text is still bounded
    (Keywarden's parser takes at most 32 KiB of any policy; AWS's
    PolicyDocument parameter is at most 131,072 characters), so one padded
    with 140,000 spaces is refused and nothing is stored."""
    iam = client("iam", server, account)
    aid = account.account_id
    iam.create_user(UserName="holder")
    original = valid("identity", aid)
    iam.put_user_policy(UserName="holder", PolicyName="p", PolicyDocument=original)
    padded_ok = original.replace("{", "{" + " " * 10_000, 1)
    iam.put_user_policy(UserName="holder", PolicyName="p2", PolicyDocument=padded_ok)
    iam.delete_user_policy(UserName="holder", PolicyName="p2")
    padded = original.replace("{", "{" + " " * 140_000, 1)
    for call in (
        lambda: iam.put_user_policy(UserName="holder", PolicyName="p", PolicyDocument=padded),
        lambda: iam.create_policy(PolicyName="made", PolicyDocument=padded),
        lambda: iam.create_role(RoleName="made", AssumeRolePolicyDocument=valid("trust", aid).replace(
            "{", "{" + " " * 140_000, 1)),
    ):
        got = error_of(call)
        assert got is not None and got[0] in ("ValidationError", IAM_MALFORMED) and got[1] == 400, got
    assert_alive(server)
    assert iam.get_user_policy(UserName="holder", PolicyName="p")["PolicyDocument"] == json.loads(original)
    assert iam.list_user_policies(UserName="holder")["PolicyNames"] == ["p"]
    assert iam.list_policies(Scope="Local")["Policies"] == []
    assert iam.list_roles()["Roles"] == []


# -- malformed Query bodies (test_iam.py covers unknown, repeated and missing
# -- Action, a wrong Version, a missing parameter and a JSON body) -------------


def test_malformed_query_bodies_on_the_iam_endpoint(server, account):
    iam = client("iam", server, account)
    iam.create_user(UserName="holder")
    users_before = iam.list_users()["Users"]
    # Without Version: the Query protocol's Version is optional here (query.rs,
    # Params::check_version), so the action runs.
    r = signed_iam_post(server, account, b"Action=ListUsers")
    assert r.status_code == 200 and "<UserName>holder</UserName>" in r.text, r.text
    cases = [
        # Not form-encoded: binary, a bare word, only separators, broken escapes.
        (b"\x00\x01\x02\xff\xfe", "MissingAction"),
        (b"hello", "MissingAction"),
        (b"&&&===&", "MissingAction"),
        (b"Action=Create%ZZUser&Version=2010-05-08&UserName=x", "InvalidAction"),
        (b"Action=CreateUser&Version=2010-05-08&UserName=ma%", "ValidationError"),
        (b"Action=CreateUser&Version=2010-05-08&UserName=" + b"%00" * 10, "ValidationError"),
        (b"Action=CreateUser&Version=2010-05-08&UserName=%FF%FE", "ValidationError"),
        # Many parameters (query.rs allows 512).
        (b"Action=ListUsers&Version=2010-05-08&" + b"&".join(b"P%d=1" % i for i in range(600)),
         "InvalidParameterValue"),
    ]
    for body, code in cases:
        r = signed_iam_post(server, account, body)
        assert r.status_code == 400, (body[:60], r.text)
        assert f"<Code>{code}</Code>" in r.text, (body[:60], r.text)
        assert "iam.amazonaws.com/doc/2010-05-08" in r.text, (body[:60], r.text)
    # XML-ish content in a parameter comes back escaped, never as markup.
    r = signed_iam_post(server, account, form(Action="GetUser", Version="2010-05-08", UserName="<x>&</x>"))
    assert 400 <= r.status_code < 500 and "<x>" not in r.text and "&lt;x&gt;&amp;" in r.text, r.text
    # A body over the server's limit (256 KiB) is refused before it is read.
    huge = b"Action=ListUsers&Version=2010-05-08&Pad=" + b"a" * (300 * 1024)
    r = signed_iam_post(server, account, huge)
    assert r.status_code == 413, r.text[:300]
    assert_alive(server)
    assert iam.list_users()["Users"] == users_before


def test_control_characters_in_tags_and_descriptions_are_refused(server, account):
    """Tag keys and values (IAM's pattern `[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*`,
    https://docs.aws.amazon.com/IAM/latest/APIReference/API_Tag.html) and
    descriptions take no control characters: stored, a NUL made every
    answer listing them unparseable XML."""
    iam = client("iam", server, account)
    trust = quote(valid("trust", account.account_id), safe="")
    identity = quote(valid("identity", account.account_id), safe="")
    iam.create_user(UserName="holder", Tags=[{"Key": "team", "Value": "pay 東京"}])
    iam.create_role(RoleName="holder", AssumeRolePolicyDocument=valid("trust", account.account_id))
    cases = []
    for bad in ("%00", "%01", "%1B", "%7F", "%C2%85", "%0A"):
        cases += [
            f"Action=TagUser&UserName=holder&Tags.member.1.Key=k&Tags.member.1.Value=a{bad}b",
            f"Action=TagUser&UserName=holder&Tags.member.1.Key=k{bad}&Tags.member.1.Value=v",
            f"Action=CreateRole&RoleName=made&Tags.member.1.Key=k&Tags.member.1.Value=a{bad}b"
            f"&AssumeRolePolicyDocument={trust}",
            f"Action=CreateUser&UserName=made&Tags.member.1.Key=k&Tags.member.1.Value={bad}",
        ]
        if bad != "%0A":  # a line feed is allowed in descriptions
            cases += [
                f"Action=CreateRole&RoleName=made&Description=a{bad}b&AssumeRolePolicyDocument={trust}",
                f"Action=CreatePolicy&PolicyName=made&Description=a{bad}b&PolicyDocument={identity}",
            ]
    for body in cases:
        r = signed_iam_post(server, account, f"Version=2010-05-08&{body}".encode())
        assert r.status_code == 400 and "<Code>ValidationError</Code>" in r.text, (body[:90], r.text)
    assert_alive(server)
    assert iam.list_user_tags(UserName="holder")["Tags"] == [{"Key": "team", "Value": "pay 東京"}]
    assert iam.list_role_tags(RoleName="holder")["Tags"] == []
    assert [u["UserName"] for u in iam.list_users()["Users"]] == ["holder"]
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == ["holder"]
    assert iam.list_policies(Scope="Local")["Policies"] == []
    # What IAM allows still goes in.
    iam.tag_user(UserName="holder", Tags=[{"Key": "Cost Center", "Value": "a_b.c:d/e=f+g-h@i"}])
    iam.create_role(RoleName="made", AssumeRolePolicyDocument=valid("trust", account.account_id),
                    Description="deploys\tthe\nservice, «vite»")
    assert iam.get_role(RoleName="made")["Role"]["Description"] == "deploys\tthe\nservice, «vite»"


def costly_patterns(n: int) -> list[str]:
    """StringLike patterns that each insert the context value `p` and are
    matched against the context value `v`: with `p` 1,500 and `v` 6,000
    characters, about 6.75 million matching steps each if evaluated fully."""
    return [f"*${{kms:EncryptionContext:p}}b{i}" for i in range(n)]


COSTLY_CONTEXT = {"p": "a" * 1_500, "v": "a" * 6_000}


def test_a_policy_too_costly_to_evaluate_denies_at_once(server, account):
    """A 30 KB key policy whose never-matching Deny would take billions of
    matching steps per request (minutes of CPU in a debug build), and an
    identity policy whose Allow would only match after millions: each
    decision is bounded (policy/wildcard.rs, DECISION_STEPS), and one cut
    short denies, never allows."""
    kms = client("kms", server, account)
    iam = client("iam", server, account)
    aid = account.account_id
    costly_deny = {"Version": "2012-10-17", "Statement": [
        statement("key", aid),
        {"Sid": "Costly", "Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"StringLike": {"kms:EncryptionContext:v": costly_patterns(800)}}},
    ]}
    assert 25_000 < len(json.dumps(costly_deny)) < 32_768
    key = kms.create_key(Policy=json.dumps(costly_deny))["KeyMetadata"]["KeyId"]
    kms.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"p": "a", "v": "a"})
    start = time.monotonic()
    got = error_of(lambda: kms.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext=COSTLY_CONTEXT))
    took = time.monotonic() - start
    assert got is not None and got[0] == "AccessDeniedException", got
    assert took < 10, f"the costly decision took {took:.1f} s"
    assert_alive(server)
    kms.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"p": "a", "v": "a"})

    # An identity policy that would allow, after 50 costly patterns, by its last one.
    iam.create_user(UserName="costly")
    doc = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*",
        "Condition": {"StringLike": {"kms:EncryptionContext:v": costly_patterns(50) + ["*"]}}}]}
    iam.put_user_policy(UserName="costly", PolicyName="p", PolicyDocument=json.dumps(doc, separators=(",", ":")))
    ak = iam.create_access_key(UserName="costly")["AccessKey"]
    user_kms = boto3.client("kms", endpoint_url=server.url, region_name=REGION,
                            aws_access_key_id=ak["AccessKeyId"], aws_secret_access_key=ak["SecretAccessKey"],
                            config=no_retry_config())
    default_key = kms.create_key()["KeyMetadata"]["KeyId"]
    deadline = time.monotonic() + 5
    while error_of(lambda: user_kms.encrypt(KeyId=default_key, Plaintext=b"x",
                                            EncryptionContext={"p": "a", "v": "a"})) is not None:
        assert time.monotonic() < deadline, "the user's policy never allowed"
        time.sleep(0.05)
    got = error_of(lambda: user_kms.encrypt(KeyId=default_key, Plaintext=b"x", EncryptionContext=COSTLY_CONTEXT))
    assert got is not None and got[0] == "AccessDeniedException", got
    assert_alive(server)
