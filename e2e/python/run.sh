#!/usr/bin/env bash
# Real-client end-to-end test: the official MCP Python SDK (`mcp`) runs its own
# OAuth flow (discovery, DCR, PKCE, code exchange, scope step-up on 403
# insufficient_scope) against the Bridgekeeper binary.
#
#   BK_BIN=/path/to/bridgekeeper e2e/python/run.sh
#
# BK_BIN defaults to target/debug/bridgekeeper in this repository; build it
# first (cargo build). Needs Python >= 3.10 (PYTHON overrides the interpreter);
# PyPI is used once, to install the locked requirements into e2e/python/.venv.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"

BK_BIN="${BK_BIN:-$repo_root/target/debug/bridgekeeper}"
case "$BK_BIN" in
  /*) ;;
  *) BK_BIN="$PWD/$BK_BIN" ;; # relative to the caller's directory
esac
if [[ ! -x "$BK_BIN" ]]; then
  echo "e2e/python: server binary not found or not executable: $BK_BIN (run cargo build, or set BK_BIN)" >&2
  exit 1
fi
export BK_BIN

python="${PYTHON:-python3}"
command -v "$python" >/dev/null || { echo "e2e/python: $python is not installed" >&2; exit 1; }
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "e2e/python: Python >= 3.10 is required (found $("$python" --version 2>&1))" >&2
  exit 1
fi

venv="$here/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi

# Install the locked requirements when the venv is new or the lock changed.
stamp="$venv/.e2e-requirements-stamp"
if [[ ! -f "$stamp" ]] || ! cmp -s "$here/requirements.txt" "$stamp"; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$stamp"
fi

cd "$here"
exec "$venv/bin/python" -u test_sdk_oauth.py
