"""STS on Keywarden's endpoint (issue 18, first part): boto3's `sts`
client and the AWS CLI ask who their credentials are, with the same
endpoint URL as KMS; bad Query requests get AWS's XML errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import boto3
import botocore.auth
import pytest
import requests
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from kw_helpers import REGION, no_retry_config

NS = "{https://sts.amazonaws.com/doc/2011-06-15/}"


def sts_client(server, account, **kw):
    return boto3.client(
        "sts",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=kw.get("access_key_id", account.access_key_id),
        aws_secret_access_key=kw.get("secret_access_key", account.secret_access_key),
        config=no_retry_config(),
    )


def signed_sts_post(server, account, body: str, content_type="application/x-www-form-urlencoded"):
    url = server.url.rstrip("/") + "/"
    req = AWSRequest(method="POST", url=url, data=body.encode(), headers={"Content-Type": content_type})
    botocore.auth.SigV4Auth(
        Credentials(account.access_key_id, account.secret_access_key), "sts", REGION
    ).add_auth(req)
    return requests.post(url, data=body.encode(), headers=dict(req.headers.items()), timeout=30)


def test_get_caller_identity_names_the_accounts_root(server, account):
    who = sts_client(server, account).get_caller_identity()
    assert who["Account"] == account.account_id
    assert who["Arn"] == f"arn:aws:iam::{account.account_id}:root"
    assert who["UserId"] == account.account_id
    # Another access key of the same account is the same root.
    other = server.create_credential(account.account_id)
    assert sts_client(server, other).get_caller_identity()["Arn"] == who["Arn"]


def test_unknown_and_bad_credentials_are_refused_in_xml(server, account):
    with pytest.raises(ClientError) as info:
        sts_client(server, account, access_key_id="AKIAUNKNOWNUNKNOWN00").get_caller_identity()
    assert info.value.response["Error"]["Code"] == "InvalidClientTokenId"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as info:
        sts_client(server, account, secret_access_key="wrong" * 8).get_caller_identity()
    assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    revoked = server.create_credential(account.account_id)
    server.revoke_credential(revoked.access_key_id)
    # The revocation reaches the server's cache within 100 ms.
    deadline = time.monotonic() + 5
    while True:
        try:
            sts_client(server, revoked).get_caller_identity()
        except ClientError as e:
            assert e.response["Error"]["Code"] == "InvalidClientTokenId"
            break
        assert time.monotonic() < deadline, "a revoked key still answers"
        time.sleep(0.05)


@pytest.mark.parametrize(
    "body, code",
    [
        ("Version=2011-06-15", "MissingAction"),
        ("Action=NoSuchAction&Version=2011-06-15", "InvalidAction"),
        ("Action=GetCallerIdentity&Version=1999-01-01", "InvalidAction"),
        ("Action=GetCallerIdentity&Action=GetCallerIdentity&Version=2011-06-15", "InvalidParameterValue"),
        ("Action=%3Cscript%3E&Version=2011-06-15", "InvalidAction"),
    ],
)
def test_bad_query_requests_get_aws_error_codes(server, account, body, code):
    r = signed_sts_post(server, account, body)
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"].startswith("text/xml"), r.headers
    doc = ET.fromstring(r.content)
    assert doc.tag == f"{NS}ErrorResponse", r.text
    assert doc.find(f"{NS}Error/{NS}Code").text == code, r.text
    assert doc.find(f"{NS}Error/{NS}Type").text == "Sender", r.text
    assert doc.find(f"{NS}RequestId").text, r.text
    assert "<script>" not in r.text


def test_a_json_body_is_not_a_query_request(server, account):
    r = signed_sts_post(server, account, "{}", content_type="application/x-amz-json-1.1")
    assert r.status_code == 400, r.text
    assert ET.fromstring(r.content).find(f"{NS}Error/{NS}Code").text == "InvalidParameterValue"


def test_the_aws_cli_asks_who_it_is(server, account, tmp_path):
    exe = Path(sys.executable).parent / "aws"
    if not exe.exists():
        pytest.fail(f"the AWS CLI is not installed next to {sys.executable}")
    (tmp_path / "c").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=account.access_key_id,
        AWS_SECRET_ACCESS_KEY=account.secret_access_key,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(tmp_path / "c"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "c"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
    )
    proc = subprocess.run(
        [str(exe), "sts", "get-caller-identity", "--endpoint-url", server.url, "--query", "Arn", "--output", "text"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"arn:aws:iam::{account.account_id}:root"
