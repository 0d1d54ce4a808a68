#!/usr/bin/env bash
# Runs Keywarden's Python end-to-end tests (tests/python) against a built
# keywarden binary: boto3, the AWS CLI, the AWS Encryption SDK, raw signed
# HTTP requests, and a scan for leaked secrets.
#
#   cargo build --bin keywarden && scripts/python-tests.sh [pytest args...]
#   scripts/python-tests.sh --venv-only   # only create/update the venv
#
# --venv-only needs no binary; scripts/test.sh uses it so the Rust tests
# find botocore's KMS model (KEYWARDEN_BOTOCORE_MODEL) in the venv.
#
# KEYWARDEN_BIN overrides the binary (default target/debug/keywarden).
# The virtualenv lives in target/pyvenv and is reused while
# tests/python/requirements.txt is unchanged.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

venv="$repo/target/pyvenv"
requirements="$repo/tests/python/requirements.txt"
stamp="$venv/.requirements.sha256"

venv_only=0
if [ "${1:-}" = "--venv-only" ]; then
  venv_only=1
  shift
fi

export KEYWARDEN_BIN="${KEYWARDEN_BIN:-$repo/target/debug/keywarden}"
case "$KEYWARDEN_BIN" in
  /*) ;;
  *) KEYWARDEN_BIN="$repo/$KEYWARDEN_BIN" ;;
esac
if [ "$venv_only" -eq 0 ] && [ ! -x "$KEYWARDEN_BIN" ]; then
  echo "python-tests: no keywarden binary at $KEYWARDEN_BIN; run 'cargo build --bin keywarden' first or set KEYWARDEN_BIN" >&2
  exit 1
fi

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "python-tests: $python not found" >&2
  exit 1
fi

make_venv() {
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
}

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  if ! make_venv 2>/dev/null; then
    # Debian splits the venv module (and ensurepip) into python3-venv.
    echo "python-tests: '$python -m venv' failed; installing python3-venv" >&2
    if command -v apt-get >/dev/null 2>&1; then
      sudo_cmd=""
      if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo"; fi
      export DEBIAN_FRONTEND=noninteractive
      $sudo_cmd apt-get update -q >/dev/null || true
      ver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
      $sudo_cmd apt-get install -y -q python3-venv >/dev/null \
        || $sudo_cmd apt-get install -y -q "python${ver}-venv" >/dev/null
    fi
    make_venv
  fi
fi

want="$(sha256sum "$requirements" | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
  echo "$want" >"$stamp"
fi

if [ "$venv_only" -eq 1 ]; then
  exit 0
fi

status=0
"$venv/bin/python" -m pytest "$repo/tests/python" -q -p no:cacheprovider "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "python-tests: pytest collected no tests; treating that as a failure" >&2
  exit 1
fi
exit "$status"
