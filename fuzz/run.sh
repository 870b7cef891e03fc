#!/usr/bin/env bash
# Fuzz every target with AFL++ (cargo-afl) for SECONDS each (default 30),
# starting from the seed corpus in fuzz/corpus/<target>. A crash or hang
# fails the run: its input is copied to fuzz/regressions/<target>/, where the
# ordinary test suite replays it (crates/cli/tests/e2e/fuzz_corpus.rs) once it
# is committed with its fix.
# Needs: Debian's afl++ (not used directly, but its system setup) and
# `cargo install cargo-afl` (.ci/run installs both).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-30}
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_QUIET=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}
# Not --locked: the committed Cargo.lock is the base, and a dependency the
# fuzzed crates gained since is added to it (the main workspace's lock,
# checked with --locked, is the one that pins them).
cargo afl build --release -q
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail=0
for t in nbd_session chunk_open api_bodies; do
  # -t: a session of any input ends well within a second.
  cargo afl fuzz -i "corpus/$t" -o "$out/$t" -V "$secs" -t 2000 -m none \
    -- "$CARGO_TARGET_DIR/release/$t" >"$out/$t.log" 2>&1 || {
    echo "fuzz: afl-fuzz failed on $t:" >&2; tail -20 "$out/$t.log" >&2; fail=1; continue; }
  stats="$out/$t/default/fuzzer_stats"
  execs=$(awk -F': *' '/^execs_done/ {print $2}' "$stats")
  paths=$(awk -F': *' '/^corpus_count/ {print $2}' "$stats")
  found=0
  for kind in crashes hangs; do
    for f in "$out/$t/default/$kind"/id:*; do
      [ -e "$f" ] || continue
      found=$((found + 1))
      cp "$f" "regressions/$t/$kind-$(sha256sum "$f" | cut -c1-16)"
    done
  done
  echo "fuzz: $t: ${secs}s, $execs executions, corpus $(ls "corpus/$t" | wc -l) seeds -> $paths inputs, $found crashes/hangs"
  [ "$found" -eq 0 ] || fail=1
done
exit "$fail"
