"""Secrets stay out of what Keywarden writes: neither a data key's
plaintext, nor an encrypted plaintext, nor an account's secret access key,
nor the root key appear in the data directory (database, WAL, shared
memory) or in the server's log, in raw, base64 or hex form. And the files
that hold key material are private to their owner."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

from kw_helpers import b64, raw_post


def forms(secret: bytes) -> dict[str, bytes]:
    """The encodings a leak would most likely take."""
    return {
        "raw": secret,
        "base64": base64.b64encode(secret),
        "base64url": base64.urlsafe_b64encode(secret).rstrip(b"="),
        "hex": secret.hex().encode(),
        "HEX": secret.hex().upper().encode(),
    }


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def leaks(haystacks: dict[str, bytes], secrets: dict[str, bytes]) -> list[str]:
    found = []
    for where, data in haystacks.items():
        for name, secret in secrets.items():
            for form, needle in forms(secret).items():
                if needle in data:
                    found.append(f"{name} ({form}) in {where}")
    return found


def read_all(server, include_root_key: bool) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    root_key = server.data_dir / "root.key"
    for p in files_under(server.data_dir):
        if not include_root_key and p == root_key:
            continue
        try:
            out[str(p.relative_to(server.data_dir))] = p.read_bytes()
        except FileNotFoundError:
            # A transient file the server removed between listing and
            # reading (seen once, in a full run; which file was not
            # recorded): it cannot be read, so it is not checked.
            continue
    out["server log (stderr)"] = server.log_path.read_bytes()
    out["server stdout"] = server.stdout_path.read_bytes()
    return out


def test_no_secrets_in_data_dir_or_log(server, account, kms):
    arn = kms.create_key(Description="secrets")["KeyMetadata"]["Arn"]

    dk = kms.generate_data_key(KeyId=arn, KeySpec="AES_256", EncryptionContext={"scan": "1"})
    dek = dk["Plaintext"]
    assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"scan": "1"})["Plaintext"] == dek

    marker = b"KEYWARDEN-MARKER-" + os.urandom(16).hex().encode() + b"-PLAINTEXT"
    ct = kms.encrypt(KeyId=arn, Plaintext=marker)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=ct)["Plaintext"] == marker

    odd = kms.generate_data_key(KeyId=arn, NumberOfBytes=48)["Plaintext"]
    random_bytes = kms.generate_random(NumberOfBytes=64)["Plaintext"]

    # A failed request that carries the plaintext must not log it either.
    kms.disable_key(KeyId=arn)
    try:
        kms.encrypt(KeyId=arn, Plaintext=marker + b"-disabled")
    except kms.exceptions.DisabledException:
        pass
    kms.enable_key(KeyId=arn)

    # A second credential is issued and then used, so its secret is loaded.
    second = server.create_credential(account.account_id)
    server.client(second).list_keys()

    secrets = {
        "data key plaintext (AES_256)": dek,
        "data key plaintext (48 bytes)": odd,
        "GenerateRandom output": random_bytes,
        "encrypted marker plaintext": marker,
        "encrypted marker plaintext (failed request)": marker + b"-disabled",
        "secret access key": account.secret_access_key.encode(),
        "second secret access key": second.secret_access_key.encode(),
    }
    haystacks = read_all(server, include_root_key=True)
    names = set(haystacks)
    assert "keywarden.db" in names, f"no database in {server.data_dir}: {sorted(names)}"
    assert "root.key" in names
    assert haystacks["server log (stderr)"], "the server wrote no log at all"
    found = leaks(haystacks, secrets)
    assert not found, "secrets found on disk or in the log: " + "; ".join(found)


def test_root_key_not_copied_anywhere(server, kms):
    # Make the database and log non-trivial first.
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    kms.encrypt(KeyId=arn, Plaintext=b"x")
    root_key = (server.data_dir / "root.key").read_bytes()
    assert len(root_key) >= 32
    found = leaks(read_all(server, include_root_key=False), {"root key": root_key})
    assert not found, "the root key appears outside its file: " + "; ".join(found)


def test_account_secret_not_logged_via_failed_auth(server, account):
    """A request with a wrong secret must not make the server log the right
    one (or the wrong one)."""
    wrong = "W" * len(account.secret_access_key)
    resp = raw_post(
        server.url,
        "{}",
        target="TrentService.ListKeys",
        access_key_id=account.access_key_id,
        secret_access_key=wrong,
    )
    assert resp.status == 400
    log = server.log_path.read_bytes()
    assert account.secret_access_key.encode() not in log
    assert b64(account.secret_access_key.encode()).encode() not in log


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_file_modes(server, kms):
    kms.create_key()
    root_key = server.data_dir / "root.key"
    db = server.data_dir / "keywarden.db"
    assert root_key.is_file()
    assert db.is_file()
    assert mode(root_key) == 0o600, f"root.key has mode {mode(root_key):o}"
    assert mode(db) == 0o600, f"keywarden.db has mode {mode(db):o}"
    for side in ("keywarden.db-wal", "keywarden.db-shm"):
        p = server.data_dir / side
        if p.exists():
            assert mode(p) & 0o077 == 0, f"{side} has mode {mode(p):o}"
    assert mode(server.data_dir) & 0o077 == 0, f"data dir has mode {mode(server.data_dir):o}"
