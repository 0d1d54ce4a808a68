"""The AWS SDK for JavaScript v3 (`@aws-sdk/client-kms`, pinned in
tests/js/package-lock.json and installed by scripts/test.sh with `npm ci`)
signs, verifies and MACs against Keywarden; node:crypto checks the
signatures on GetPublicKey's DER (tests/js/sign_verify.mjs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kw_helpers import LEAKY_ENV_PREFIXES, REGION

JS_DIR = Path(__file__).resolve().parent.parent / "js"


def test_javascript_sdk_signs_and_verifies(server, account, tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH (scripts/test.sh installs Node.js dependencies with npm ci)")
    if not (JS_DIR / "node_modules" / "@aws-sdk" / "client-kms").is_dir():
        pytest.fail(f"{JS_DIR}/node_modules is missing: run `npm ci` in {JS_DIR} (scripts/test.sh does)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(LEAKY_ENV_PREFIXES)}
    env.update(
        KW_ENDPOINT=server.url,
        AWS_ACCESS_KEY_ID=account.access_key_id,
        AWS_SECRET_ACCESS_KEY=account.secret_access_key,
        AWS_REGION=REGION,
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    proc = subprocess.run(
        [node, "sign_verify.mjs"], cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results == {
        "ECDSA_SHA_256": "ok",
        "RSASSA_PSS_SHA_256": "ok",
        "RSASSA_PKCS1_V1_5_SHA_512": "ok",
        "ED25519_SHA_512": "ok",
        "HMAC_SHA_256": "ok",
    }, results
