#!/usr/bin/env bash
# Run every test of the workspace: unit tests, the block engine's model
# tests, and end-to-end tests of the real `coffer` binary against real
# clients (qemu-img, qemu-io, nbdinfo, nbdcopy).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --workspace --locked "$@"
