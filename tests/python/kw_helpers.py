"""Shared helpers of the Keywarden end-to-end tests: the server process,
accounts, clients, and raw SigV4-signed HTTP requests."""

from __future__ import annotations

import base64
import datetime
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import botocore.auth
import botocore.config
import pytest
import requests
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / "target" / "debug" / "keywarden"
REGION = "us-east-1"

LISTEN_RE = re.compile(r"listening on (https?://\S+)")
KEY_ARN_RE = re.compile(
    r"^arn:aws:kms:us-east-1:\d{12}:key/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)

STARTUP_TIMEOUT_S = 30
SHUTDOWN_TIMEOUT_S = 15

# Environment variables that would make boto3, the AWS CLI or the server
# pick up settings from this machine instead of from the test.
LEAKY_ENV_PREFIXES = ("AWS_", "KEYWARDEN_", "BOTO_")
# Of those, what the test process itself must not see (KEYWARDEN_* is only
# kept away from the processes the tests start).
AWS_ENV_PREFIXES = ("AWS_", "BOTO_")


def keywarden_bin() -> Path:
    return Path(os.environ.get("KEYWARDEN_BIN") or DEFAULT_BIN)


def no_retry_config(**kwargs: Any) -> botocore.config.Config:
    """A client config with exactly one attempt per call (no retries)."""
    return botocore.config.Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        **kwargs,
    )


@dataclass(frozen=True)
class Account:
    account_id: str
    access_key_id: str
    secret_access_key: str


class KeywardenServer:
    """A running `keywarden serve` and helpers around it."""

    def __init__(
        self,
        bin_path: Path,
        data_dir: Path,
        log_path: Path,
        stdout_path: Path,
        listen: str = "127.0.0.1:0",
        debug_logs: bool = True,
        extra_env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ):
        # Extra `keywarden serve` arguments (`--regions eu-west-1`, ...).
        self.extra_args = list(extra_args or [])
        # Set for the server and the admin/key commands it runs (a
        # configuration file as KEYWARDEN_CONFIG, SOFTHSM2_CONF, ...).
        self.extra_env = dict(extra_env or {})
        self.bin = bin_path
        self.listen = listen
        self.debug_logs = debug_logs
        self.data_dir = data_dir
        self.log_path = log_path
        self.stdout_path = stdout_path
        self.url: str = ""
        self.process: subprocess.Popen | None = None
        self._stdout_lines: "queue.Queue[str | None]" = queue.Queue()
        self._stdout_thread: threading.Thread | None = None
        self._log_file = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Starts the server (again, after `stop`: with a fixed `listen`
        address it comes back at the same URL)."""
        self.url = ""
        self._stdout_lines = queue.Queue()
        self._log_file = open(self.log_path, "ab")
        env = self.env()
        # Debug-level logs for Keywarden's own crates: secrets must stay out
        # of the log even at this level (test_secrets scans it).
        if self.debug_logs:
            env["KEYWARDEN_LOG"] = ",".join(
                [
                    "info",
                    "keywarden=debug",
                    "keywarden_server=debug",
                    "keywarden_core=debug",
                    "keywarden_store_sqlite=debug",
                    "keywarden_protector_soft=debug",
                ]
            )
        self.process = subprocess.Popen(
            [
                str(self.bin),
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--listen",
                self.listen,
                *self.extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            env=env,
        )
        self._stdout_thread = threading.Thread(target=self._pump_stdout, daemon=True)
        self._stdout_thread.start()

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.url:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._abort(f"no 'listening on' line on stdout within {STARTUP_TIMEOUT_S} s")
            try:
                line = self._stdout_lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                if self.process.poll() is not None:
                    self._abort(f"server exited with status {self.process.returncode} before listening")
                continue
            if line is None:
                try:
                    status = self.process.wait(5)
                except subprocess.TimeoutExpired:
                    status = None
                self._abort(f"server closed stdout (exit status {status}) before listening")
            m = LISTEN_RE.search(line)
            if m:
                self.url = m.group(1).rstrip("/.,;)")

        # Wait until /healthz answers, in case the line is printed early.
        while True:
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self._abort("GET /healthz did not answer 200 in time")
            time.sleep(0.1)

    def _pump_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with open(self.stdout_path, "wb") as out:
            for raw in self.process.stdout:
                out.write(raw)
                out.flush()
                self._stdout_lines.put(raw.decode("utf-8", "replace"))
        self._stdout_lines.put(None)

    def _abort(self, why: str) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        pytest.exit(
            f"could not start Keywarden ({self.bin}): {why}\n--- server log ---\n{self.log_text()[-4000:]}",
            returncode=1,
        )

    def stop(self) -> int | None:
        """SIGTERM; returns the exit status, or None if it did not exit in time."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            rc = self.process.wait(SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            rc = None
        if self._stdout_thread is not None:
            self._stdout_thread.join(5)
        if self._log_file is not None:
            self._log_file.close()
        return rc

    # -- helpers -----------------------------------------------------------

    def env(self: "KeywardenServer | None" = None) -> dict[str, str]:
        """The process environment without AWS/Keywarden settings of this
        machine, plus the server's `extra_env` (when called on one)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(LEAKY_ENV_PREFIXES)}
        if self is not None:
            env.update(self.extra_env)
        return env

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def admin_raw(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [str(self.bin), "admin", *args, "--data-dir", str(self.data_dir)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=self.env(),
            timeout=60,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"keywarden admin {' '.join(args)} failed with status {proc.returncode}:\n"
                f"{proc.stderr.decode('utf-8', 'replace')}"
            )
        return proc

    def key_raw(
        self, *args: str, check: bool = True, stdin: Any = subprocess.DEVNULL
    ) -> subprocess.CompletedProcess:
        """Runs `keywarden key ARGS --data-dir DIR` (stdin not a terminal)."""
        proc = subprocess.run(
            [str(self.bin), "key", *args, "--data-dir", str(self.data_dir)],
            stdin=stdin,
            capture_output=True,
            env=self.env(),
            timeout=60,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"keywarden key {' '.join(args)} failed with status {proc.returncode}:\n"
                f"{proc.stderr.decode('utf-8', 'replace')}"
            )
        return proc

    def key(self, *args: str) -> Any:
        """Runs `keywarden key ARGS --data-dir DIR` and parses its JSON stdout."""
        out = self.key_raw(*args).stdout.decode("utf-8")
        try:
            return json.loads(out)
        except json.JSONDecodeError as e:
            raise AssertionError(f"keywarden key {' '.join(args)} printed no JSON: {out!r}") from e

    def admin(self, *args: str) -> Any:
        """Runs `keywarden admin ARGS --data-dir DIR` and parses its JSON stdout."""
        proc = self.admin_raw(*args)
        out = proc.stdout.decode("utf-8")
        try:
            return json.loads(out)
        except json.JSONDecodeError as e:
            raise AssertionError(f"keywarden admin {' '.join(args)} printed no JSON: {out!r}") from e

    def create_account(self, name: str | None = None) -> Account:
        name = name or f"pytest-{uuid.uuid4().hex[:12]}"
        doc = self.admin("account", "create", "--name", name)
        return _account_from(doc)

    def create_credential(self, account_id: str) -> Account:
        return _account_from(self.admin("credentials", "create", "--account", account_id))

    def revoke_credential(self, access_key_id: str) -> Any:
        return self.admin("credentials", "revoke", "--access-key-id", access_key_id)

    def client(self, account: Account, region: str = REGION, **config: Any):
        """A boto3 KMS client for `account` in `region`, without retries."""
        return boto3.client(
            "kms",
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id=account.access_key_id,
            aws_secret_access_key=account.secret_access_key,
            config=no_retry_config(**config),
        )


def _account_from(doc: Any) -> Account:
    assert isinstance(doc, dict), doc
    for field in ("AccountId", "AccessKeyId", "SecretAccessKey"):
        assert isinstance(doc.get(field), str) and doc[field], f"{field} missing in {doc}"
    assert re.fullmatch(r"\d{12}", doc["AccountId"]), doc["AccountId"]
    return Account(doc["AccountId"], doc["AccessKeyId"], doc["SecretAccessKey"])


# -- errors ------------------------------------------------------------------


def expect_error(code: str, fn, /, *args: Any, status: int | None = None, **kwargs: Any) -> ClientError:
    """Calls fn(*args, **kwargs) and asserts it fails with AWS error `code`
    (and HTTP `status` if given). Returns the ClientError."""
    with pytest.raises(ClientError) as info:
        fn(*args, **kwargs)
    err = info.value
    got = err.response["Error"]["Code"]
    got_status = err.response["ResponseMetadata"]["HTTPStatusCode"]
    assert got == code, (
        f"{getattr(fn, '__name__', fn)}: expected {code}, got {got} (HTTP {got_status}): "
        f"{err.response['Error'].get('Message')!r}"
    )
    if status is not None:
        assert got_status == status, f"{code}: expected HTTP {status}, got {got_status}"
    assert got_status < 500, f"{code} answered with HTTP {got_status}"
    return err


# Changes made by another process (the admin CLI) reach the server's caches
# within this bound (100 ms refresh period, documented in ARCHITECTURE.md);
# tests wait up to ten times that.
PROPAGATION_S = 1.0


def eventually_error(code: str, fn, /, *args: Any, **kwargs: Any) -> ClientError:
    """Like expect_error, for a change made by another process: retries
    while the call still succeeds, for at most PROPAGATION_S."""
    deadline = time.monotonic() + PROPAGATION_S
    while True:
        try:
            fn(*args, **kwargs)
        except ClientError:
            return expect_error(code, fn, *args, **kwargs)
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{getattr(fn, '__name__', fn)} still succeeded {PROPAGATION_S} s after the change; expected {code}"
            )
        time.sleep(0.02)


# -- raw SigV4-signed requests -----------------------------------------------

JSON_CT = "application/x-amz-json-1.1"


@dataclass
class RawResponse:
    status: int
    headers: Any  # case-insensitive mapping
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_type(self) -> str | None:
        try:
            doc = self.json()
        except ValueError:
            return None
        return doc.get("__type") if isinstance(doc, dict) else None

    def describe(self) -> str:
        return f"HTTP {self.status} {self.body[:300]!r}"


def sign_headers(
    url: str,
    body: bytes,
    headers: dict[str, str],
    access_key_id: str,
    secret_access_key: str,
    when: datetime.datetime | None = None,
    region: str = REGION,
) -> dict[str, str]:
    """Returns `headers` plus X-Amz-Date and a SigV4 Authorization for a
    POST of `body` to `url`, signed for service kms at time `when` (UTC,
    default now) with botocore's own signer."""
    req = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    signer = botocore.auth.SigV4Auth(Credentials(access_key_id, secret_access_key), "kms", region)
    if when is None:
        signer.add_auth(req)
    else:
        naive_utc = when.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: naive_utc):
            signer.add_auth(req)
    return dict(req.headers.items())


def raw_post(
    base_url: str,
    body: bytes | str,
    *,
    target: str | None = "TrentService.ListKeys",
    account: Account | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    content_type: str | None = JSON_CT,
    path: str = "/",
    when: datetime.datetime | None = None,
    extra_headers: dict[str, str] | None = None,
    sign: bool = True,
) -> RawResponse:
    """POSTs `body` as-is; signs it with `account`'s credentials (or the
    explicit ones) unless sign=False."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    url = base_url.rstrip("/") + path
    headers: dict[str, str] = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if target is not None:
        headers["X-Amz-Target"] = target
    if extra_headers:
        headers.update(extra_headers)
    if sign:
        ak = access_key_id or (account.access_key_id if account else None)
        sk = secret_access_key or (account.secret_access_key if account else None)
        assert ak and sk, "signing needs credentials"
        headers = sign_headers(url, body, headers, ak, sk, when=when)
    r = requests.post(url, data=body, headers=headers, timeout=60)
    return RawResponse(r.status_code, r.headers, r.content)


def raw_get(base_url: str, path: str) -> RawResponse:
    r = requests.get(base_url.rstrip("/") + path, timeout=30)
    return RawResponse(r.status_code, r.headers, r.content)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
