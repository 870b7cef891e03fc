#!/usr/bin/env bash
# Run every test of the workspace — unit tests, model tests, and end-to-end
# tests of the real `coffer` binary against real clients (qemu-img, qemu-io,
# nbdinfo, nbdcopy) — once per backend set:
#   1. embedded defaults: SQLite metadata, objects in a directory;
#   2. scale-out: PostgreSQL metadata (a fresh database per test on the
#      server at $COFFER_TEST_PG, default postgres://postgres@127.0.0.1:5432)
#      and objects in S3 (a fresh bucket per test on $COFFER_TEST_S3_ENDPOINT,
#      else on one of a pool of moto_servers this script starts on loopback
#      ports, one per concurrent test).
# Set COFFER_TEST_METADATA (sqlite|postgres) and/or COFFER_TEST_STORE
# (local|s3) to run one pass only. Extra arguments go to `cargo nextest run`
# (which schedules the tests of every binary together, .config/nextest.toml),
# or to `cargo test` where cargo-nextest is not installed. Doc tests run once
# first (when no arguments narrow the run):
# they do not touch a backend.
set -euo pipefail
cd "$(dirname "$0")/.."

moto_pids=()
lease_dir=
cleanup() {
  if [ ${#moto_pids[@]} -gt 0 ]; then kill "${moto_pids[@]}" 2>/dev/null || true; fi
  if [ -n "$lease_dir" ]; then rm -rf "$lease_dir"; fi
}
trap cleanup EXIT

# A pool of moto_servers, one per test that may run at once (nextest's
# test-threads, .config/nextest.toml; COFFER_TEST_S3_SERVERS overrides): a
# moto_server is one Python process, and one shared by every test made the
# S3 pass bound by a single core. Each test leases a free server for its
# lifetime (crates/testkit, TestS3::start), so a test's objects are freed
# with nothing else; each server is stopped when the run ends.
start_s3() {
  if [ -n "${COFFER_TEST_S3_ENDPOINT:-}" ] || [ ${#moto_pids[@]} -gt 0 ]; then return; fi
  command -v moto_server >/dev/null || { echo "test.sh: moto_server missing: pip install 'moto[server]' (.ci/run does)" >&2; exit 1; }
  local n=${COFFER_TEST_S3_SERVERS:-4} port endpoints=()
  lease_dir=$(mktemp -d)
  for _ in $(seq "$n"); do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    moto_server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
    moto_pids+=($!)
    endpoints+=("http://127.0.0.1:$port")
  done
  for e in "${endpoints[@]}"; do
    port=${e##*:}
    for _ in $(seq 300); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      sleep 0.1
    done
  done
  COFFER_TEST_S3_ENDPOINTS=$(IFS=,; echo "${endpoints[*]}")
  export COFFER_TEST_S3_ENDPOINTS COFFER_TEST_S3_LEASES=$lease_dir
}

pass() {
  echo "== [+${SECONDS}s] tests with $1 metadata and $2 objects" >&2
  if [ "$2" = s3 ]; then start_s3; fi
  COFFER_TEST_METADATA=$1 COFFER_TEST_STORE=$2 "${runner[@]}" "${@:3}"
}

if cargo nextest --version >/dev/null 2>&1; then
  runner=(cargo nextest run --workspace --locked)
  if [ $# -eq 0 ]; then
    echo "== doc tests" >&2
    cargo test --workspace --locked --doc
  fi
else
  echo "test.sh: cargo-nextest not installed (cargo install cargo-nextest --locked); running cargo test" >&2
  runner=(cargo test --workspace --locked)
fi

if [ -n "${COFFER_TEST_METADATA:-}${COFFER_TEST_STORE:-}" ]; then
  pass "${COFFER_TEST_METADATA:-sqlite}" "${COFFER_TEST_STORE:-local}" "$@"
else
  pass sqlite local "$@"
  pass postgres s3 "$@"
fi
