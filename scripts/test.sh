#!/usr/bin/env bash
# Runs every test Keywarden has, from a fresh checkout on a fresh Debian machine:
# installs what the tests need, then formatting, lints, Rust unit and end-to-end
# tests (aws-sdk-kms against the real binary) and the Python client tests
# (boto3, AWS CLI, AWS Encryption SDK).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*"; }

step "system packages"
missing=()
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
{ [ -e /usr/lib/softhsm/libsofthsm2.so ] && command -v softhsm2-util >/dev/null 2>&1; } || missing+=(softhsm2)
# PostgreSQL server binaries (initdb, pg_ctl, postgres) and the `postgres`
# user: the PostgreSQL store tests start throwaway clusters of their own.
{ ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && id postgres >/dev/null 2>&1; } || missing+=(postgresql)
# MariaDB and its stock HashiCorp Vault key management plugin: the MariaDB
# integration test (tests/e2e/mariadb.rs) starts a throwaway mariadbd of its own.
command -v mariadbd >/dev/null 2>&1 || missing+=(mariadb-server)
[ -e /usr/lib/mysql/plugin/hashicorp_key_management.so ] || missing+=(mariadb-plugin-hashicorp-key-management)
# qemu-img, qemu-io, qemu-nbd: the block-volume example (examples/block-volume).
command -v qemu-img >/dev/null 2>&1 || missing+=(qemu-utils)
# fscrypt and mkfs.ext4: the file storage example (examples/file-storage);
# its test also needs root, loop devices and ext4 encryption in the kernel.
command -v fscrypt >/dev/null 2>&1 || missing+=(fscrypt)
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
# Node.js and npm: the AWS SDK for JavaScript test (tests/js, test_js_sdk.py).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
    echo "all present"
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo deny (deny.toml; docs/security-testing.md)"
command -v cargo-deny >/dev/null 2>&1 || cargo install --locked cargo-deny
# cargo deny reads `cargo metadata`, which needs the sources of every
# platform's crates in Cargo.lock (wasm-bindgen, anstyle-wincon, ...), not
# only those this machine builds. They are fetched into a fresh, empty
# CARGO_HOME on every run, so a warm cache here cannot hide a download that
# a fresh machine needs.
fresh_cargo_home="$(mktemp -d)"
trap 'rm -rf "$fresh_cargo_home"' EXIT
CARGO_HOME="$fresh_cargo_home" cargo fetch --locked --quiet
# The RustSec database comes from GitHub, which CI may not reach: then the
# copy of an earlier run is used, and without one advisories are skipped,
# each with a warning (never silently; SECURITY.md says where they are
# checked).
deny_checks=()
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
if ! cargo deny fetch db >/dev/null 2>&1; then
    if ls -d "$cargo_home"/advisory-dbs/*/crates >/dev/null 2>&1; then
        echo "WARNING: advisory database not updated; checking against the local copy"
    else
        echo "WARNING: advisory database unreachable and no local copy: advisories NOT checked"
        deny_checks=(bans licenses sources)
    fi
fi
[ -d "$cargo_home/advisory-dbs" ] && ln -s "$cargo_home/advisory-dbs" "$fresh_cargo_home/advisory-dbs"
CARGO_HOME="$fresh_cargo_home" cargo deny --offline check "${deny_checks[@]}"
rm -rf "$fresh_cargo_home"

step "Python venv (botocore's KMS model for keywarden-server/tests/botocore_shapes.rs)"
scripts/python-tests.sh --venv-only
KEYWARDEN_BOTOCORE_MODEL="$(target/pyvenv/bin/python -c '
import os, botocore
d = os.path.join(os.path.dirname(botocore.__file__), "data", "kms", "2014-11-01")
print(next(p for p in (os.path.join(d, n) for n in ("service-2.json.gz", "service-2.json")) if os.path.exists(p)))
')"
export KEYWARDEN_BOTOCORE_MODEL
echo "KEYWARDEN_BOTOCORE_MODEL=$KEYWARDEN_BOTOCORE_MODEL"

step "cargo test"
# The fuzz targets run a few seconds each with a fixed seed here, so this
# command gives the same verdict on every run; random seeds and long runs are
# for exploring (docs/security-testing.md). Set KEYWARDEN_FUZZ_SEED to override.
export KEYWARDEN_FUZZ_SEED="${KEYWARDEN_FUZZ_SEED:-20261128}"
cargo test --workspace --locked

step "build keywarden for the Python tests"
cargo build --locked --bin keywarden

step "JavaScript SDK (tests/js: npm ci from package-lock.json)"
(cd tests/js && npm ci --no-audit --no-fund)

step "Python client tests"
scripts/python-tests.sh
