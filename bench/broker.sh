#!/usr/bin/env bash
# The credential broker's costs, measured in one run against the test suite's real HTTPS upstream
# and a real server's SQLite database (the `bench_credential` test in
# crates/bridgekeeper/tests/it/connections_broker.rs, ignored by the normal test run):
#   - credential() when the token is still good, next to the database read alone and read + open;
#   - credential() when it must refresh first, next to the upstream token endpoint called directly;
#   - what each of 50 callers sees during one single-flight refresh while the upstream takes 200 ms,
#     next to that endpoint's own latency.
# Figures are printed with their ratios. BENCH_PROFILE=debug skips the release build (ratios only
# roughly comparable). Respects CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=(--release)
[ "${BENCH_PROFILE:-release}" = debug ] && profile=()
# On PostgreSQL: BRIDGEKEEPER_TEST_BACKEND=postgres BRIDGEKEEPER_TEST_POSTGRES_URL=postgres://…
nice -n 10 cargo test -j "${BENCH_JOBS:-1}" "${profile[@]}" -p bridgekeeper --test it -- --ignored connections_broker::bench_credential \
  --nocapture --test-threads 1 2>&1 | grep -E 'µs|ratio|^  |test result'
