#!/usr/bin/env bash
# Schemathesis over the REST API's own OpenAPI document (GET /openapi.json) against the real
# binary: every operation, authenticated with a personal access token holding every scope a
# token may hold and with an operator token, checked for no 5xx, documented status codes, content
# types and headers, and responses that conform to their documented schemas (fuzz.py).
#
#   BK_BIN=/path/to/bridgekeeper e2e/openapi/run.sh
#
# BK_BIN defaults to target/debug/bridgekeeper in this repository; build it first (cargo build).
# Needs Python >= 3.10 (PYTHON overrides the interpreter); PyPI is used once, to install the
# locked requirements (schemathesis) into e2e/openapi/.venv. BK_E2E_OPENAPI_MAX_EXAMPLES (cases
# per operation, default 100) and BK_E2E_OPENAPI_SEED (default 18) tune the run;
# BK_E2E_OPENAPI_CHECKS replaces the checks (e.g. `all`) and BK_E2E_OPENAPI_EXTRA adds schemathesis
# options (e.g. `--report har`) when investigating.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUITE=e2e/openapi
# shellcheck source=../lib/suite.sh
source "$here/../lib/suite.sh"
suite_bin

python="${PYTHON:-python3}"
command -v "$python" >/dev/null || suite_fail "$python is not installed"
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' ||
  suite_fail "Python >= 3.10 is required (found $("$python" --version 2>&1))"

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
exec "$venv/bin/python" -u fuzz.py
