"""Every operation of botocore's KMS model answers something other than
UnknownOperationException: no client of the AWS API finds a hole.

Each operation is sent with an empty JSON body, signed as the account, so it
fails validation (or, for the few without required members, succeeds); what
matters is the error type. `NOT_YET` lists what is still missing; the test
also fails when an operation in it starts answering, so the list cannot go
stale."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import botocore

from kw_helpers import raw_post

# Operations not served yet. Empty since multi-Region keys landed (issue 20);
# a new operation in botocore's model shows up here first.
NOT_YET: set[str] = set()


def model_operations() -> list[str]:
    path = Path(botocore.__file__).parent / "data" / "kms" / "2014-11-01" / "service-2.json.gz"
    with gzip.open(path) as f:
        model = json.load(f)
    assert model["metadata"]["targetPrefix"] == "TrentService"
    return sorted(model["operations"])


def test_every_model_operation_is_served(server, account):
    operations = model_operations()
    assert len(operations) >= 56, len(operations)
    unknown, answered = [], []
    for op in operations:
        resp = raw_post(server.url, b"{}", target=f"TrentService.{op}", account=account)
        error = (resp.error_type or "") if resp.status >= 400 else ""
        if error.endswith("UnknownOperationException"):
            unknown.append(op)
        else:
            answered.append(op)
            # Never an internal error for an empty body.
            assert resp.status < 500, (op, resp.status, resp.body[:200])
    assert sorted(set(unknown) - NOT_YET) == [], "operations of the model Keywarden does not serve"
    assert sorted(NOT_YET & set(answered)) == [], "served now: remove from NOT_YET"
    assert NOT_YET <= set(operations), "NOT_YET names an operation the model does not have"
