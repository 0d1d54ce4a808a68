"""Custom key stores accounts create on the operator's HSM clusters
(docs/hsm.md): CreateCustomKeyStore, ConnectCustomKeyStore,
DisconnectCustomKeyStore, UpdateCustomKeyStore, DeleteCustomKeyStore and
DescribeCustomKeyStores through boto3, against a server whose configuration
file approves SoftHSM2 tokens as `[[hsm_clusters]]`.

AWS semantics: https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateCustomKeyStore.html
and the Connect/Disconnect/Update/Delete pages beside it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from kw_helpers import SHUTDOWN_TIMEOUT_S, KeywardenServer, expect_error, keywarden_bin

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "user-pin-1"
SO_PIN = "5678"
CLUSTER = "cluster-kwtest000001"
RELATED = "cluster-kwtest000002"
OTHER = "cluster-kwother00001"
SPARE = "cluster-kwspare00001"
ANCHOR = "-----BEGIN CERTIFICATE-----\nTUlJQ2tlcXdhcmRlbi10ZXN0LWFuY2hvcg==\n-----END CERTIFICATE-----\n"


def init_token(conf: Path, label: str) -> None:
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SO_PIN],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def hsm_server(tmp_path_factory: pytest.TempPathFactory, isolated_aws_env) -> KeywardenServer:
    if not Path(MODULE).exists() or shutil.which("softhsm2-util") is None:
        pytest.fail(f"SoftHSM2 is missing ({MODULE}): apt-get install -y softhsm2")
    base = tmp_path_factory.mktemp("cks")
    tokens = base / "tokens"
    tokens.mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    for label in ("kw-cks", "kw-other", "kw-spare"):
        init_token(conf, label)
    (base / "anchor.pem").write_text(ANCHOR)
    config = base / "keywarden.toml"
    config.write_text(
        f"""
[[hsm_clusters]]
id = "{CLUSTER}"
module = "{MODULE}"
token_label = "kw-cks"
trust_anchor_file = "anchor.pem"

[[hsm_clusters]]
id = "{RELATED}"
module = "{MODULE}"
token_label = "kw-cks"

[[hsm_clusters]]
id = "{OTHER}"
module = "{MODULE}"
token_label = "kw-other"

[[hsm_clusters]]
id = "{SPARE}"
module = "{MODULE}"
token_label = "kw-spare"
sessions = 2
"""
    )
    srv = KeywardenServer(
        bin_path=keywarden_bin(),
        data_dir=base / "data",
        log_path=base / "server.log",
        stdout_path=base / "server.stdout",
        extra_env={"KEYWARDEN_CONFIG": str(config), "SOFTHSM2_CONF": str(conf)},
    )
    srv.start()
    yield srv
    rc = srv.stop()
    assert rc == 0, f"keywarden serve did not exit 0 within {SHUTDOWN_TIMEOUT_S} s: {srv.log_text()[-4000:]}"


def describe(kms, store_id: str) -> dict:
    stores = kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"]
    assert len(stores) == 1, stores
    return stores[0]


def key_unavailable(fn, /, **kwargs) -> None:
    with pytest.raises(ClientError) as info:
        fn(**kwargs)
    assert info.value.response["Error"]["Code"] == "KeyUnavailableException", info.value.response
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_store_lifecycle(hsm_server: KeywardenServer) -> None:
    account = hsm_server.create_account()
    kms = hsm_server.client(account)

    created = kms.create_custom_key_store(
        CustomKeyStoreName="tenant-store",
        CloudHsmClusterId=CLUSTER,
        TrustAnchorCertificate=ANCHOR,
        KeyStorePassword=PIN,
    )
    store_id = created["CustomKeyStoreId"]
    assert re.fullmatch(r"cks-[0-9a-f]{17}", store_id), store_id
    info = describe(kms, store_id)
    assert info["ConnectionState"] == "DISCONNECTED"
    assert info["CloudHsmClusterId"] == CLUSTER
    assert info["TrustAnchorCertificate"] == ANCHOR
    assert info["CustomKeyStoreName"] == "tenant-store"
    assert info["CustomKeyStoreType"] == "AWS_CLOUDHSM"
    assert "ConnectionErrorCode" not in info
    assert info["CreationDate"].year >= 2024
    by_name = kms.describe_custom_key_stores(CustomKeyStoreName="tenant-store")["CustomKeyStores"]
    assert [s["CustomKeyStoreId"] for s in by_name] == [store_id]

    # Disconnected: no keys can be made in it.
    expect_error(
        "CustomKeyStoreInvalidStateException",
        kms.create_key,
        Origin="AWS_CLOUDHSM",
        CustomKeyStoreId=store_id,
    )

    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert describe(kms, store_id)["ConnectionState"] == "CONNECTED"
    # Connecting a connected store does nothing.
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert describe(kms, store_id)["ConnectionState"] == "CONNECTED"
    # Only a disconnected store may be updated or deleted.
    expect_error(
        "CustomKeyStoreInvalidStateException", kms.delete_custom_key_store, CustomKeyStoreId=store_id
    )
    expect_error(
        "CustomKeyStoreInvalidStateException",
        kms.update_custom_key_store,
        CustomKeyStoreId=store_id,
        NewCustomKeyStoreName="renamed",
    )

    key = kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id)["KeyMetadata"]
    assert key["Origin"] == "AWS_CLOUDHSM"
    assert key["CustomKeyStoreId"] == store_id
    key_id = key["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"in the tenant's hsm")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"in the tenant's hsm"

    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    assert describe(kms, store_id)["ConnectionState"] == "DISCONNECTED"
    key_unavailable(kms.encrypt, KeyId=key_id, Plaintext=b"x")
    key_unavailable(kms.decrypt, CiphertextBlob=blob)
    expect_error(
        "CustomKeyStoreInvalidStateException",
        kms.create_key,
        Origin="AWS_CLOUDHSM",
        CustomKeyStoreId=store_id,
    )

    # A wrong password: the connection fails with INVALID_CREDENTIALS.
    kms.update_custom_key_store(
        CustomKeyStoreId=store_id, NewCustomKeyStoreName="tenant-store-2", KeyStorePassword="not-the-pin"
    )
    assert describe(kms, store_id)["CustomKeyStoreName"] == "tenant-store-2"
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    info = describe(kms, store_id)
    assert info["ConnectionState"] == "FAILED", info
    assert info["ConnectionErrorCode"] == "INVALID_CREDENTIALS", info
    key_unavailable(kms.decrypt, CiphertextBlob=blob)
    # A failed store must be disconnected before connecting again.
    expect_error(
        "CustomKeyStoreInvalidStateException", kms.connect_custom_key_store, CustomKeyStoreId=store_id
    )
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    info = describe(kms, store_id)
    assert info["ConnectionState"] == "DISCONNECTED" and "ConnectionErrorCode" not in info

    # Clusters: a related one (same token) is accepted, another token not.
    expect_error(
        "CloudHsmClusterNotRelatedException",
        kms.update_custom_key_store,
        CustomKeyStoreId=store_id,
        CloudHsmClusterId=OTHER,
    )
    expect_error(
        "CloudHsmClusterNotFoundException",
        kms.update_custom_key_store,
        CustomKeyStoreId=store_id,
        CloudHsmClusterId="cluster-unknown00001",
    )
    # botocore checks the length itself; without its check the server does.
    unchecked = hsm_server.client(account, parameter_validation=False)
    expect_error(
        "ValidationException",
        unchecked.update_custom_key_store,
        CustomKeyStoreId=store_id,
        KeyStorePassword="short",
    )
    kms.update_custom_key_store(CustomKeyStoreId=store_id, KeyStorePassword=PIN, CloudHsmClusterId=RELATED)
    assert describe(kms, store_id)["CloudHsmClusterId"] == RELATED
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert describe(kms, store_id)["ConnectionState"] == "CONNECTED"
    # The same token: the key made before the move still decrypts.
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"in the tenant's hsm"

    # A store holding keys cannot be deleted, pending deletion or not.
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    expect_error("CustomKeyStoreHasCMKsException", kms.delete_custom_key_store, CustomKeyStoreId=store_id)
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    expect_error("CustomKeyStoreHasCMKsException", kms.delete_custom_key_store, CustomKeyStoreId=store_id)
    assert describe(kms, store_id)["CustomKeyStoreName"] == "tenant-store-2"

    # An empty, disconnected store is deleted.
    spare = kms.create_custom_key_store(
        CustomKeyStoreName="spare",
        CloudHsmClusterId=SPARE,
        TrustAnchorCertificate=ANCHOR,
        KeyStorePassword=PIN,
    )["CustomKeyStoreId"]
    kms.connect_custom_key_store(CustomKeyStoreId=spare)
    assert describe(kms, spare)["ConnectionState"] == "CONNECTED"
    kms.disconnect_custom_key_store(CustomKeyStoreId=spare)
    kms.delete_custom_key_store(CustomKeyStoreId=spare)
    expect_error("CustomKeyStoreNotFoundException", kms.describe_custom_key_stores, CustomKeyStoreId=spare)
    expect_error("CustomKeyStoreNotFoundException", kms.delete_custom_key_store, CustomKeyStoreId=spare)


def test_creation_is_checked(hsm_server: KeywardenServer) -> None:
    account = hsm_server.create_account()
    kms = hsm_server.client(account)
    expect_error(
        "CloudHsmClusterNotFoundException",
        kms.create_custom_key_store,
        CustomKeyStoreName="nowhere",
        CloudHsmClusterId="cluster-unknown00001",
        TrustAnchorCertificate=ANCHOR,
        KeyStorePassword=PIN,
    )
    expect_error(
        "UnsupportedOperationException",
        kms.create_custom_key_store,
        CustomKeyStoreName="external",
        CustomKeyStoreType="EXTERNAL_KEY_STORE",
        XksProxyUriEndpoint="https://xks.example.com",
        XksProxyUriPath="/kms/xks/v1",
        XksProxyConnectivity="PUBLIC_ENDPOINT",
        XksProxyAuthenticationCredential={"AccessKeyId": "A" * 20, "RawSecretAccessKey": "s" * 43},
    )
    expect_error(
        "IncorrectTrustAnchorException",
        kms.create_custom_key_store,
        CustomKeyStoreName="bad anchor",
        CloudHsmClusterId=CLUSTER,
        TrustAnchorCertificate=ANCHOR.replace("TUlJ", "TUlK"),
        KeyStorePassword=PIN,
    )
    unchecked = hsm_server.client(account, parameter_validation=False)
    expect_error(
        "ValidationException",
        unchecked.create_custom_key_store,
        CustomKeyStoreName="short password",
        CloudHsmClusterId=OTHER,
        TrustAnchorCertificate=ANCHOR,
        KeyStorePassword="123456",
    )
    expect_error(
        "ValidationException",
        kms.create_custom_key_store,
        CustomKeyStoreName="no anchor",
        CloudHsmClusterId=OTHER,
        KeyStorePassword=PIN,
    )
    mine = kms.create_custom_key_store(
        CustomKeyStoreName="mine", CloudHsmClusterId=OTHER, TrustAnchorCertificate=ANCHOR, KeyStorePassword=PIN
    )["CustomKeyStoreId"]
    expect_error(
        "CustomKeyStoreNameInUseException",
        kms.create_custom_key_store,
        CustomKeyStoreName="mine",
        CloudHsmClusterId=RELATED,
        TrustAnchorCertificate=ANCHOR,
        KeyStorePassword=PIN,
    )

    # Another account: the cluster is taken, and the store is invisible.
    other = hsm_server.client(hsm_server.create_account())
    expect_error(
        "CloudHsmClusterInUseException",
        other.create_custom_key_store,
        CustomKeyStoreName="mine",
        CloudHsmClusterId=OTHER,
        TrustAnchorCertificate=ANCHOR,
        KeyStorePassword=PIN,
    )
    assert mine not in [s["CustomKeyStoreId"] for s in other.describe_custom_key_stores()["CustomKeyStores"]]
    expect_error("CustomKeyStoreNotFoundException", other.describe_custom_key_stores, CustomKeyStoreId=mine)
    for op in (other.connect_custom_key_store, other.disconnect_custom_key_store, other.delete_custom_key_store):
        expect_error("CustomKeyStoreNotFoundException", op, CustomKeyStoreId=mine)
    kms.connect_custom_key_store(CustomKeyStoreId=mine)
    expect_error(
        "CustomKeyStoreNotFoundException",
        other.create_key,
        Origin="AWS_CLOUDHSM",
        CustomKeyStoreId=mine,
    )
    kms.disconnect_custom_key_store(CustomKeyStoreId=mine)
    kms.delete_custom_key_store(CustomKeyStoreId=mine)


def test_password_never_logged(hsm_server: KeywardenServer) -> None:
    """The KeyStorePassword stays out of the server's log (debug level)."""
    assert PIN not in hsm_server.log_text()
    assert "not-the-pin" not in hsm_server.log_text()
