# Sourced by the bench scripts (not run by itself): which code a run
# measures, and the line that names it above every table the run prints.
#
# docs/PERFORMANCE.md takes figures only from a run at a clean commit: every
# table there sits under a line `script: bench/NAME, commit: COMMIT, ...`
# printed by bench_provenance, and crates/cli/tests/e2e/docs_figures.rs fails if
# a table lacks one, names a script that does not exist, or names a dirty
# tree. So a script refuses to run on a tree with uncommitted changes to
# tracked files (`git describe --always --dirty`), unless BENCH_ALLOW_DIRTY=1,
# in which case its output says DIRTY in the commit field and cannot go into
# the docs. The tree is checked again at the end: a change during the run
# (the binary was built from the first state) fails it too.

# bench_start NAME: record the commit of the tree this run builds and
# measures (BENCH_SCRIPT, BENCH_COMMIT); refuse a dirty tree.
bench_start() {
  BENCH_SCRIPT=bench/$1
  BENCH_COMMIT=$(git describe --always --dirty 2>/dev/null) ||
    { echo "$BENCH_SCRIPT: not in a git work tree: no commit to name" >&2; exit 1; }
  case $BENCH_COMMIT in
    *-dirty)
      if [ "${BENCH_ALLOW_DIRTY:-}" = 1 ]; then
        echo "$BENCH_SCRIPT: WARNING: uncommitted changes ($BENCH_COMMIT): these figures are not for docs/PERFORMANCE.md" >&2
        BENCH_COMMIT="$BENCH_COMMIT (DIRTY: uncommitted changes, not for the docs)"
      else
        echo "$BENCH_SCRIPT: the work tree has uncommitted changes ($BENCH_COMMIT):" >&2
        git status --short --untracked-files=no >&2
        echo "commit them (figures must come from a named commit), or set BENCH_ALLOW_DIRTY=1 for a run whose output says DIRTY" >&2
        exit 1
      fi
      ;;
  esac
  BENCH_DATE=$(date -u +%F)
}

# bench_cargo_build: build the release binary of this tree; sets COFFER.
# Honours CARGO_TARGET_DIR.
bench_cargo_build() {
  cargo build --release --locked -p coffer-cli >&2
  local target=${CARGO_TARGET_DIR:-$PWD/target}
  case $target in /*) ;; *) target=$PWD/$target ;; esac
  COFFER=$target/release/coffer
}

# bench_finish: fail if the tree changed while the run measured it.
bench_finish() {
  local now
  now=$(git describe --always --dirty 2>/dev/null || echo unknown)
  case $BENCH_COMMIT in
    "$now"|"$now "*) ;;
    *)
      echo "$BENCH_SCRIPT: the work tree changed during the run ($BENCH_COMMIT -> $now): its figures name no single commit" >&2
      exit 1
      ;;
  esac
}

# bench_provenance [DETAILS]: the line every table of this run sits under.
bench_provenance() {
  echo "script: $BENCH_SCRIPT, commit: $BENCH_COMMIT, run: $BENCH_DATE, $(nproc) cores${1:+, $1}"
}

# bench_need "PACKAGES" TOOL...: fail, naming what to install, unless every
# TOOL is on the PATH.
bench_need() {
  local pkgs=$1 t
  shift
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "$BENCH_SCRIPT: need $t (apt-get install $pkgs)" >&2; exit 1; }
  done
}

# bench_workdir: a scratch directory ($work), a tmpfs path for read-back
# output ($out) and a list of server processes ($pids), all stopped and
# removed when the script exits.
bench_workdir() {
  work=$(mktemp -d /tmp/coffer-bench.XXXXXX)
  out=/dev/shm/coffer-bench-out.$$
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # A server still writing its last objects would refill the directory
  # while it is removed: wait until each has exited.
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work" "$out"
}
