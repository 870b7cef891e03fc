#!/usr/bin/env bash
# Run every test of the workspace — unit tests, model tests, and end-to-end
# tests of the real `coffer` binary against real clients (qemu-img, qemu-io,
# nbdinfo, nbdcopy) — once per metadata backend: SQLite, then PostgreSQL
# (a fresh database per test on the server at $COFFER_TEST_PG, default
# postgres://postgres@127.0.0.1:5432). Set COFFER_TEST_METADATA=sqlite or
# =postgres to run one pass only. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${COFFER_TEST_METADATA:-}" ]; then
  backends=("$COFFER_TEST_METADATA")
else
  backends=(sqlite postgres)
fi
for b in "${backends[@]}"; do
  echo "== tests with $b metadata" >&2
  COFFER_TEST_METADATA=$b cargo test --workspace --locked "$@"
done
