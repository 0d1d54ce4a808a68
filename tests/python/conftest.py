"""Fixtures for Keywarden's Python end-to-end tests.

One Keywarden server runs for the whole session, on a fresh data directory
and a free loopback port, its stderr (the log) captured to a file. Every
test makes its own accounts (through the admin CLI, while the server runs)
and its own keys, so tests do not depend on one another.

The binary is `$KEYWARDEN_BIN`, by default `<repo>/target/debug/keywarden`.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import pytest

from kw_helpers import (
    AWS_ENV_PREFIXES,
    SHUTDOWN_TIMEOUT_S,
    Account,
    KeywardenServer,
    keywarden_bin,
)


@pytest.fixture(scope="session", autouse=True)
def isolated_aws_env(tmp_path_factory: pytest.TempPathFactory):
    """Keeps this machine's AWS configuration out of boto3, the ESDK and the
    AWS CLI: no AWS_* variables, empty config and credentials files, no
    instance metadata lookups."""
    d = tmp_path_factory.mktemp("aws-config")
    config = d / "config"
    creds = d / "credentials"
    config.write_text("")
    creds.write_text("")
    mp = pytest.MonkeyPatch()
    for k in list(os.environ):
        if k.startswith(AWS_ENV_PREFIXES):
            mp.delenv(k)
    mp.setenv("AWS_CONFIG_FILE", str(config))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield {"config": config, "credentials": creds}
    mp.undo()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, isolated_aws_env) -> KeywardenServer:
    """One `keywarden serve` for the session; SIGTERM at the end must make it
    exit 0 within 15 s."""
    bin_path = keywarden_bin()
    if not (bin_path.is_file() and os.access(bin_path, os.X_OK)):
        pytest.exit(
            f"Keywarden binary not found or not executable at {bin_path}. "
            "Build it with `cargo build --bin keywarden`, or point KEYWARDEN_BIN at it.",
            returncode=1,
        )
    base = tmp_path_factory.mktemp("keywarden")
    srv = KeywardenServer(
        bin_path=bin_path,
        data_dir=base / "data",  # left for the server to create (mode 0700)
        log_path=base / "server.log",
        stdout_path=base / "server.stdout",
    )
    srv.start()
    yield srv
    rc = srv.stop()
    assert rc == 0, (
        f"keywarden serve did not exit 0 within {SHUTDOWN_TIMEOUT_S} s of SIGTERM "
        f"(status {rc}); log tail:\n{srv.log_text()[-4000:]}"
    )


@pytest.fixture
def account(server: KeywardenServer) -> Account:
    """A fresh account (tenant)."""
    return server.create_account()


@pytest.fixture
def kms(server: KeywardenServer, account: Account):
    """A boto3 KMS client, without retries, for a fresh account."""
    return server.client(account)


@pytest.fixture
def new_client(server: KeywardenServer) -> Callable[[], Any]:
    """Factory: each call makes a fresh account and returns a client for it."""

    def make():
        return server.client(server.create_account())

    return make
