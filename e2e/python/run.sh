#!/usr/bin/env bash
# Real-client end-to-end test: the official MCP Python SDK (`mcp`) runs its own
# OAuth flow (discovery, DCR, PKCE, code exchange, scope step-up on 403
# insufficient_scope) against the Bridgekeeper binary; then fastmcp and the SDK
# each run 20 times in a minute from 127.0.0.1 under the default registration
# limit and reuse one dynamically registered client per kind
# (test_registration_reuse.py).
#
#   BK_BIN=/path/to/bridgekeeper e2e/python/run.sh
#
# BK_BIN defaults to target/debug/bridgekeeper in this repository; build it
# first (cargo build). Needs Python >= 3.10 (PYTHON overrides the interpreter);
# PyPI is used once, to install the locked requirements into e2e/python/.venv
# (and requirements-fastmcp.txt into e2e/python/.venv-fastmcp).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUITE=e2e/python
# shellcheck source=../lib/suite.sh
source "$here/../lib/suite.sh"
suite_bin

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

# fastmcp (for test_registration_reuse.py) gets a venv of its own, installed
# from requirements-fastmcp.txt the same way, so that its lock never moves the
# pins above. Like Python >= 3.13's venv, it ignores itself in git (a .gitignore
# of "*" inside it).
venv_fastmcp="$here/.venv-fastmcp"
if [[ ! -x "$venv_fastmcp/bin/python" ]]; then
  "$python" -m venv "$venv_fastmcp"
fi
[[ -f "$venv_fastmcp/.gitignore" ]] || echo '*' >"$venv_fastmcp/.gitignore"
stamp_fastmcp="$venv_fastmcp/.e2e-requirements-stamp"
if [[ ! -f "$stamp_fastmcp" ]] || ! cmp -s "$here/requirements-fastmcp.txt" "$stamp_fastmcp"; then
  "$venv_fastmcp/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements-fastmcp.txt"
  cp "$here/requirements-fastmcp.txt" "$stamp_fastmcp"
fi
export BK_E2E_FASTMCP_PYTHON="$venv_fastmcp/bin/python"

cd "$here"
status=0
"$venv/bin/python" -u test_sdk_oauth.py || status=1
# Registration reuse (issue 21): 20 fresh runs each of fastmcp and the SDK within a
# minute from 127.0.0.1 under the default limits, one dynamic client per kind.
"$venv/bin/python" -u test_registration_reuse.py || status=1
exit "$status"
