#!/usr/bin/env bash
# The test command: every Rust test (unit + integration against the real binary), then the
# real-client end-to-end tests under e2e/. Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test (workspace)"
cargo test --workspace --locked

if [ -d e2e ] && [ -x e2e/run.sh ]; then
  echo "== e2e (real clients against the real binary)"
  cargo build --locked -p bridgekeeper
  BK_BIN="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/bridgekeeper" e2e/run.sh
fi
echo "== all tests passed"
