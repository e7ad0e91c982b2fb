#!/usr/bin/env bash
# Browser end-to-end test: Debian's Chromium, driven by playwright-core (no
# browser download), on a white-label client's login and consent pages served
# by the Bridgekeeper binary: logo, name, description, brand colour, the
# redirect back with code/state/iss, and markup in a client's name and
# description rendered as text (screenshots in e2e/artifacts/); and the
# connections page, opened through the white-label handoff and signed in
# directly, at desktop and phone width (screenshots in e2e/browser/screenshots/);
# and email verification and password reset with real mail: the binary sends
# over SMTP to a local sink (aiosmtpd from PyPI, pinned in requirements-smtp.txt,
# installed into e2e/browser/.venv on first use; needs Python >= 3.10).
#
#   BK_BIN=/path/to/bridgekeeper e2e/browser/run.sh
#
# BK_BIN defaults to target/debug/bridgekeeper in this repository (cargo build
# first). Needs Node.js >= 20, npm (the npm registry is used once, to install
# this folder's locked dependencies) and Chromium at /usr/bin/chromium (or
# CHROMIUM_PATH): when it is missing and this runs as root, it is installed
# with apt-get.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
SUITE=e2e/browser
# shellcheck source=../lib/suite.sh
source "$here/../lib/suite.sh"
suite_bin

suite_node 20

CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM_PATH" ]]; then
  if [[ "$CHROMIUM_PATH" == /usr/bin/chromium && "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "== e2e/browser: installing Debian's chromium (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
  else
    echo "e2e/browser: Chromium not found at $CHROMIUM_PATH; install it (Debian: apt-get install chromium, as root) or set CHROMIUM_PATH" >&2
    exit 1
  fi
fi
if [[ ! -x "$CHROMIUM_PATH" ]]; then
  echo "e2e/browser: Chromium still not found at $CHROMIUM_PATH after apt-get install" >&2
  exit 1
fi
export CHROMIUM_PATH

cd "$here"

# Install the locked dependencies when node_modules is missing or older than the lock.
# playwright-core downloads no browser (that is the `playwright` package's install step).
suite_npm_ci "$here"

mkdir -p "$repo_root/e2e/artifacts"
echo "== e2e: white-label pages in $("$CHROMIUM_PATH" --version 2>/dev/null | head -n1) with playwright-core $(node -p 'require("./node_modules/playwright-core/package.json").version')"
node --test --test-concurrency=1 ./*.test.mjs
echo "== e2e/browser: screenshots in $repo_root/e2e/artifacts/"
