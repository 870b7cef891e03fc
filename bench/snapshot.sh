#!/usr/bin/env bash
# Snapshot cost against disk size, next to qcow2's internal snapshot, and
# the storage an incremental snapshot adds, measured in one run:
#   - one release `coffer serve` (embedded defaults: SQLite + local objects)
#     with two attached, open disks: 1 GiB fully written with random data
#     (qemu-img convert, which ends with a flush), and 1 TiB sparse with two
#     1 MiB writes (at 0 and at 1023 GiB: 8 chunks of 256 KiB, flushed);
#   - hyperfine times a snapshot of each through the CLI (`coffer snapshot
#     create`: process start + one API call) and through the HTTP API alone
#     (`curl -X POST /v1/snapshots`), next to their baselines (`coffer
#     --version`, `coffer disk show`, `curl GET /v1/disks/ID`), so the
#     snapshot's own cost can be read off;
#   - `qemu-img snapshot -c` on a fully written 1 GiB qcow2 image (next to
#     `qemu-img info` of it: process start and image open);
#   - then 1% of the 1 GiB disk is rewritten (10 distinct 1 MiB extents and
#     256 KiB more: 41 chunks) and snapshotted, and the growth of the object
#     store (`du -sb` of the data objects) is printed against the disk's size.
# Output: markdown tables for docs/PERFORMANCE.md under one line naming this
# script and the commit measured (bench/lib.sh: a dirty tree is refused).
#
# Usage: bench/snapshot.sh   (RUNS=20; needs hyperfine, qemu-img, qemu-io,
# curl, python3; ~2 minutes after the build)
set -euo pipefail
RUNS=${RUNS:-20}
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_start snapshot.sh
for t in hyperfine qemu-img qemu-io curl python3; do
  command -v $t >/dev/null || { echo "need $t (apt-get install hyperfine qemu-utils curl python3)" >&2; exit 1; }
done
bench_cargo_build
work=$(mktemp -d /tmp/coffer-bench-snap.XXXXXX)
spid=
cleanup() {
  if [ -n "$spid" ]; then kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT

export HOME=$work/home XDG_CONFIG_HOME=$work/home/.config
mkdir -p "$HOME"
"$COFFER" serve --data-dir "$work/coffer" --root-key-file "$work/keys/root.key" \
  --listen 127.0.0.1:0 --nbd-listen 127.0.0.1:0 > "$work/serve.out" 2> "$work/serve.log" &
spid=$!
for _ in $(seq 300); do grep -q "NBD listening" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
grep -q "NBD listening" "$work/serve.out" || { echo "coffer did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }
api=$(sed -n 's/^Coffer API listening on \(http[^ ]*\).*/\1/p' "$work/serve.out" | head -1)
# The bench's own throwaway server: its admin token, for curl.
token=$(sed -n 's/^token = "\(.*\)"$/\1/p' "$HOME/.config/coffer/config.toml" | head -1)
check_log() {
  if grep -E "block I/O failed|write-back failed| ERROR " "$work/serve.log" >&2; then
    echo "coffer reported failed I/O (above): the figures are void" >&2
    exit 1
  fi
}

echo "== writing the 1 GiB disk, the 1 TiB sparse disk and a 1 GiB qcow2 image" >&2
head -c 1G /dev/urandom > "$work/src.raw"
gib=$("$COFFER" disk create --name gib --size 1GiB --zone local-a --query id)
tib=$("$COFFER" disk create --name tib --size 1TiB --zone local-a --query id)
guri=$("$COFFER" disk attach "$gib" --query uri)
turi=$("$COFFER" disk attach "$tib" --query uri)
qemu-img convert -n -f raw -O raw "$work/src.raw" "$guri"
qemu-io -f raw -c 'write -P 1 0 1M' -c 'write -P 2 1023G 1M' -c flush "$turi" >/dev/null
qemu-img convert -f raw -O qcow2 "$work/src.raw" "$work/img.qcow2"
check_log

# Run by bash: ${EPOCHREALTIME/./} gives each snapshot a unique name.
get() { printf 'curl -sf -o /dev/null -H %q %s' "Authorization: Bearer $token" "$api/v1/disks/$1"; }
post() {
  printf 'curl -sf -o /dev/null -H %q -H %q -d "{\\"disk_id\\":\\"%s\\",\\"name\\":\\"h-${EPOCHREALTIME/./}\\"}" %s' \
    "Authorization: Bearer $token" "Content-Type: application/json" "$1" "$api/v1/snapshots"
}
hyperfine --shell bash --runs "$RUNS" --warmup 2 --export-markdown "$work/cli.md" --export-json "$work/cli.json" \
  -n "coffer --version" "$COFFER --version" \
  -n "coffer disk show (1 GiB disk)" "$COFFER disk show $gib >/dev/null" \
  -n "coffer snapshot create, 1 GiB written" "$COFFER snapshot create --disk $gib --name s-\${EPOCHREALTIME/./} >/dev/null" \
  -n "coffer snapshot create, 1 TiB sparse" "$COFFER snapshot create --disk $tib --name s-\${EPOCHREALTIME/./} >/dev/null" >&2
hyperfine --shell bash --runs "$RUNS" --warmup 2 --export-markdown "$work/http.md" --export-json "$work/http.json" \
  -n "curl GET /v1/disks/ID (1 GiB disk)" "$(get "$gib")" \
  -n "curl POST /v1/snapshots, 1 GiB written" "$(post "$gib")" \
  -n "curl POST /v1/snapshots, 1 TiB sparse" "$(post "$tib")" >&2
hyperfine --shell bash --runs "$RUNS" --warmup 2 --export-markdown "$work/qcow2.md" --export-json "$work/qcow2.json" \
  -n "qemu-img info (1 GiB qcow2)" "qemu-img info $work/img.qcow2 >/dev/null" \
  -n "qemu-img snapshot -c, 1 GiB qcow2 written" "qemu-img snapshot -c q-\${EPOCHREALTIME/./} $work/img.qcow2" >&2
check_log
# Every timed snapshot exists: 2 warm-ups + RUNS per command, CLI and curl.
n=$("$COFFER" snapshot list --query '[].id' | wc -l)
[ "$n" -eq $((4 * (RUNS + 2))) ] || { echo "expected $((4 * (RUNS + 2))) snapshots, found $n" >&2; exit 1; }

echo "== incremental storage: 1% of the 1 GiB disk rewritten" >&2
# Wait until nothing is queued for deletion, so only the rewrite changes
# the store.
settle() {
  for _ in $(seq 600); do
    [ "$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True).execute("SELECT (SELECT count(*) FROM gc_queue) + (SELECT count(*) FROM gc_objects)").fetchone()[0])' "$work/coffer/meta.sqlite")" = 0 ] && return
    sleep 0.1
  done
  echo "objects still queued for deletion after 60 s" >&2; exit 1
}
# Bytes of data objects in the store: format v2 (objects/objects) and v1 (objects/chunks).
stored_bytes() {
  local d total=0
  for d in "$work/coffer/objects/objects" "$work/coffer/objects/chunks"; do
    [ -d "$d" ] && total=$((total + $(du -sb "$d" | cut -f1)))
  done
  echo "$total"
}
"$COFFER" snapshot create --disk "$gib" --name before >/dev/null
settle
before=$(stored_bytes)
args=()
python3 - >"$work/extents" <<'PY'
# 10 distinct 1 MiB-aligned extents below the last MiB (fixed LCG: the same every run)
x, picked = 99, set()
while len(picked) < 10:
    x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
    picked.add((x >> 33) % 1023)  # not 1023: the 256 KiB write's
print(*sorted(picked))
PY
i=1
for m in $(cat "$work/extents"); do args+=(-c "write -P $i $((m << 20)) 1M"); i=$((i + 1)); done
args+=(-c "write -P 77 $((1023 << 20)) 256k")
qemu-io -f raw "${args[@]}" "$guri" >/dev/null
"$COFFER" snapshot create --disk "$gib" --name after >/dev/null
settle
after=$(stored_bytes)
check_log
bench_finish

echo
bench_provenance "release build, embedded defaults, $RUNS runs each after 2 warm-ups"
echo
cat "$work/cli.md"; echo; cat "$work/http.md"; echo; cat "$work/qcow2.md"; echo
python3 - "$work" "$before" "$after" <<'PY'
import json, sys
work, before, after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(p):
    return {r["command"]: r["mean"] for r in json.load(open(f"{work}/{p}"))["results"]}
c, h, q = load("cli.json"), load("http.json"), load("qcow2.json")
ms = lambda s: f"{1000 * s:.1f}"
print("| snapshot, own cost (mean minus its baseline's mean), ms | 1 GiB written | 1 TiB sparse |")
print("|:---|---:|---:|")
base = c["coffer disk show (1 GiB disk)"]
print(f"| `coffer snapshot create` minus `coffer disk show` | {ms(c['coffer snapshot create, 1 GiB written'] - base)} "
      f"| {ms(c['coffer snapshot create, 1 TiB sparse'] - base)} |")
base = h["curl GET /v1/disks/ID (1 GiB disk)"]
print(f"| `curl POST /v1/snapshots` minus `curl GET /v1/disks/ID` | {ms(h['curl POST /v1/snapshots, 1 GiB written'] - base)} "
      f"| {ms(h['curl POST /v1/snapshots, 1 TiB sparse'] - base)} |")
print(f"| `qemu-img snapshot -c` minus `qemu-img info` (1 GiB qcow2) | "
      f"{ms(q['qemu-img snapshot -c, 1 GiB qcow2 written'] - q['qemu-img info (1 GiB qcow2)'])} | |")
print()
size = 1 << 30
grown = after - before
print("| incremental storage, 1 GiB disk | bytes |")
print("|:---|---:|")
print(f"| object store before the rewrite (data objects) | {before:,} |")
print(f"| after rewriting 1% (41 of 4096 chunks) and a snapshot | {after:,} |")
print(f"| grown | {grown:,} = {100 * grown / size:.2f}% of the disk |")
PY
