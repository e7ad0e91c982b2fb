#!/usr/bin/env bash
# The test command: every Rust test (unit + integration against the real binary), then the
# real-client end-to-end tests under e2e/. Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test (workspace, embedded SQLite)"
cargo test --workspace --locked

if [ -n "${BRIDGEKEEPER_TEST_POSTGRES_URL:-}" ]; then
  # The store suite already ran on PostgreSQL above; now every integration test does too.
  echo "== cargo test (integration tests on PostgreSQL)"
  BRIDGEKEEPER_TEST_BACKEND=postgres cargo test --locked -p bridgekeeper --test it
fi

if [ -d e2e ] && [ -x e2e/run.sh ]; then
  echo "== e2e (real clients against the real binary)"
  cargo build --locked -p bridgekeeper
  BK_BIN="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/bridgekeeper" e2e/run.sh
fi
echo "== all tests passed"
