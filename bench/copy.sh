#!/usr/bin/env bash
# Snapshot copy cost, measured in one run (docs/SHARING.md, "Copying"):
#   - one release `coffer serve` (embedded defaults: SQLite + local objects)
#     with two snapshots: of a 1 GiB disk fully written with random data
#     (qemu-img convert into its NBD export, which ends with a flush), and of
#     a 100 GiB sparse disk with two 1 MiB writes (at 0 and at the last MiB:
#     8 chunks of 256 KiB, flushed);
#   - the O(1) copy (same key: the copy shares the source's ciphertext, no
#     block is read or written): hyperfine times `coffer snapshot copy SNAP
#     --name N` of each snapshot through the CLI (process start + one API
#     call + the GET that shows the copy) and through the HTTP API alone
#     (`curl -X POST /v1/snapshots/ID/copy`), next to baselines of the same
#     shape (`coffer snapshot show`: process start + one GET; `curl GET
#     /v1/snapshots/ID`), so the copy's own cost is the mean minus its
#     baseline's mean; the object store's data bytes are compared before and
#     after all those copies (they must not grow);
#   - the re-encrypting copy of the 1 GiB snapshot (`coffer snapshot copy
#     --rekey --wait`: a job that reads and decrypts every allocated block,
#     writes it under a new data key, then verifies BLAKE3 of the source and
#     of the copy read back), next to its peer: `qemu-img convert` of a 1 GiB
#     LUKS image holding the same random data into a new LUKS image under
#     another passphrase (so another master key), with qemu's default LUKS
#     settings (PBKDF iteration time 2 s, spent to unlock the source and
#     again to make the target's key slot) and with iter-time=10 ms on both
#     images (the data path alone). Throughput = 1 GiB / mean, and the ratio
#     Coffer/peer. The jobs' own durations (created_at to finished_at, no
#     CLI polling) and hash results are printed too.
# Output: markdown tables for docs/PERFORMANCE.md under one line naming this
# script and the commit measured (bench/lib.sh: a dirty tree is refused).
#
# Usage: bench/copy.sh   (RUNS=20 for the O(1) copies, REKEY_RUNS=3 for the
# 1 GiB re-encrypting copies; needs hyperfine, qemu-img, qemu-io, curl,
# python3 and ~12 GiB free under /tmp; ~3 minutes after the build)
set -euo pipefail
RUNS=${RUNS:-20}
REKEY_RUNS=${REKEY_RUNS:-3}
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_start copy.sh
bench_need "hyperfine qemu-utils curl python3" hyperfine qemu-img qemu-io curl python3
free_kib=$(df -Pk /tmp | awk 'NR == 2 { print $4 }')
[ "$free_kib" -ge $((12 << 20)) ] ||
  { echo "$BENCH_SCRIPT: need ~12 GiB free under /tmp (df -h /tmp: $((free_kib >> 20)) GiB)" >&2; exit 1; }
bench_cargo_build
work=$(mktemp -d /tmp/coffer-bench-copy.XXXXXX)
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
  if grep -E "block I/O failed|write-back failed|copy job failed| ERROR " "$work/serve.log" >&2; then
    echo "coffer reported failed I/O (above): the figures are void" >&2
    exit 1
  fi
}
# Bytes of data objects in the store: format v2 (objects/objects) and v1 (objects/chunks).
stored_bytes() {
  local d total=0
  for d in "$work/coffer/objects/objects" "$work/coffer/objects/chunks"; do
    [ -d "$d" ] && total=$((total + $(du -sb "$d" | cut -f1)))
  done
  echo "$total"
}

echo "== writing the 1 GiB disk and the 100 GiB sparse disk, and snapshotting them" >&2
head -c 1G /dev/urandom > "$work/src.raw"
gib=$("$COFFER" disk create --name gib --size 1GiB --zone local-a --query id)
sparse=$("$COFFER" disk create --name sparse --size 100GiB --zone local-a --query id)
guri=$("$COFFER" disk attach "$gib" --query uri)
suri=$("$COFFER" disk attach "$sparse" --query uri)
qemu-img convert -n -f raw -O raw "$work/src.raw" "$guri"
qemu-io -f raw -c 'write -P 1 0 1M' -c "write -P 2 $(((100 << 10) - 1))M 1M" -c flush "$suri" >/dev/null
gsnap=$("$COFFER" snapshot create --disk "$gib" --name gib-snap --query id)
ssnap=$("$COFFER" snapshot create --disk "$sparse" --name sparse-snap --query id)
check_log

echo "== O(1) copies (same key)" >&2
store_before=$(stored_bytes)
# Run by bash: ${EPOCHREALTIME/./} gives each copy a unique name.
get() { printf 'curl -sf -o /dev/null -H %q %s' "Authorization: Bearer $token" "$api/v1/snapshots/$1"; }
post() {
  # shellcheck disable=SC2016 # ${EPOCHREALTIME/./} is for the bash hyperfine runs
  printf 'curl -sf -o /dev/null -H %q -H %q -d "{\\"name\\":\\"h-${EPOCHREALTIME/./}\\"}" %s' \
    "Authorization: Bearer $token" "Content-Type: application/json" "$api/v1/snapshots/$1/copy"
}
hyperfine --shell bash --runs "$RUNS" --warmup 2 --export-markdown "$work/cli.md" --export-json "$work/cli.json" \
  -n "coffer snapshot show (1 GiB snapshot)" "$COFFER snapshot show $gsnap >/dev/null" \
  -n "coffer snapshot copy, 1 GiB written" "$COFFER snapshot copy $gsnap --name c-\${EPOCHREALTIME/./} >/dev/null" \
  -n "coffer snapshot copy, 100 GiB sparse" "$COFFER snapshot copy $ssnap --name c-\${EPOCHREALTIME/./} >/dev/null" >&2
hyperfine --shell bash --runs "$RUNS" --warmup 2 --export-markdown "$work/http.md" --export-json "$work/http.json" \
  -n "curl GET /v1/snapshots/ID (1 GiB snapshot)" "$(get "$gsnap")" \
  -n "curl POST /v1/snapshots/ID/copy, 1 GiB written" "$(post "$gsnap")" \
  -n "curl POST /v1/snapshots/ID/copy, 100 GiB sparse" "$(post "$ssnap")" >&2
check_log
store_after=$(stored_bytes)
# Every timed copy exists: 2 warm-ups + RUNS per command, CLI and curl, and
# the two source snapshots.
copies=$((4 * (RUNS + 2)))
n=$("$COFFER" snapshot list --query '[].id' | wc -l)
[ "$n" -eq $((copies + 2)) ] || { echo "expected $((copies + 2)) snapshots, found $n" >&2; exit 1; }

echo "== the 1 GiB LUKS images for qemu-img (default iteration time, and 10 ms)" >&2
old='secret,id=old,data=bench-old-passphrase'
new='secret,id=new,data=bench-new-passphrase'
for img in luks fast; do
  it=; [ $img = fast ] && it=,iter-time=10
  qemu-img create -q -f luks --object "$old" -o "key-secret=old$it" "$work/$img.luks" 1G
  qemu-img convert -n -f raw "$work/src.raw" --object "$old" \
    --target-image-opts "driver=luks,file.filename=$work/$img.luks,key-secret=old"
done
qemu-img compare --object "$old" --image-opts "driver=luks,file.filename=$work/luks.luks,key-secret=old" \
  "driver=raw,file.filename=$work/src.raw" >/dev/null ||
  { echo "the LUKS image does not hold the random data" >&2; exit 1; }
rm -f "$work/src.raw"

echo "== re-encrypting copies of 1 GiB ($REKEY_RUNS runs each)" >&2
convert() {
  printf 'qemu-img convert --object %q --object %q --image-opts %q -O luks -o %q %q' \
    "$old" "$new" "driver=luks,file.filename=$work/$1.luks,key-secret=old" "key-secret=new$2" "$work/$1-copy.luks"
}
# One --prepare per command, in order: the qemu-img targets are removed
# before each run (convert makes them anew); Coffer's copies stay (deleting
# one would start garbage collection under the next run). Every run starts
# with nothing dirty in the page cache (`sync`): without it the first run
# shared the disk with the kernel writing back the 2 GiB of LUKS images
# made just above (Coffer's first copy took 2.93 s against 1.46-1.55 s for
# the next ones, docs/PERFORMANCE.md). What a run leaves unwritten is
# written back outside every timing.
hyperfine --shell bash --runs "$REKEY_RUNS" --export-markdown "$work/rekey.md" --export-json "$work/rekey.json" \
  --prepare sync --prepare "rm -f $work/luks-copy.luks; sync" --prepare "rm -f $work/fast-copy.luks; sync" \
  -n "coffer snapshot copy --rekey --wait, 1 GiB written" \
  "$COFFER snapshot copy $gsnap --name r-\${EPOCHREALTIME/./} --rekey --wait >/dev/null" \
  -n "qemu-img convert LUKS to LUKS (new key), 1 GiB" "$(convert luks "")" \
  -n "qemu-img convert LUKS to LUKS (new key), 1 GiB, iter-time 10 ms" "$(convert fast ,iter-time=10)" >&2
check_log
for img in luks fast; do
  qemu-img compare --object "$old" --object "$new" \
    --image-opts "driver=luks,file.filename=$work/$img.luks,key-secret=old" \
    "driver=luks,file.filename=$work/$img-copy.luks,key-secret=new" >/dev/null ||
    { echo "qemu-img's copy of $img.luks differs from its source" >&2; exit 1; }
done
"$COFFER" job list --output json > "$work/jobs.json"
bench_finish

echo
bench_provenance "release build, embedded defaults, O(1) copies: $RUNS runs each after 2 warm-ups; re-encrypting copies: $REKEY_RUNS runs each, no warm-up"
echo
cat "$work/cli.md"; echo; cat "$work/http.md"; echo; cat "$work/rekey.md"; echo
python3 - "$work" "$store_before" "$store_after" "$copies" "$REKEY_RUNS" <<'PY'
import json, sys
from datetime import datetime
work, before, after, copies, rekey_runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def load(p, stat="mean"):
    return {r["command"]: r[stat] for r in json.load(open(f"{work}/{p}"))["results"]}
c, h, r = load("cli.json"), load("http.json"), load("rekey.json")
cm, hm = load("cli.json", "median"), load("http.json", "median")
ms = lambda s: f"{1000 * s:.1f}"
# Means and, less sensitive to one slow run of the baseline, medians.
print("| O(1) copy, own cost (copy minus its baseline), ms | 1 GiB written, means | medians | 100 GiB sparse, means | medians |")
print("|:---|---:|---:|---:|---:|")
for label, m, md, base, one, sparse in [
        ("`coffer snapshot copy` minus `coffer snapshot show`", c, cm, "coffer snapshot show (1 GiB snapshot)",
         "coffer snapshot copy, 1 GiB written", "coffer snapshot copy, 100 GiB sparse"),
        ("`curl POST /v1/snapshots/ID/copy` minus `curl GET /v1/snapshots/ID`", h, hm, "curl GET /v1/snapshots/ID (1 GiB snapshot)",
         "curl POST /v1/snapshots/ID/copy, 1 GiB written", "curl POST /v1/snapshots/ID/copy, 100 GiB sparse")]:
    print(f"| {label} | {ms(m[one] - m[base])} | {ms(md[one] - md[base])} | {ms(m[sparse] - m[base])} | {ms(md[sparse] - md[base])} |")
print()
print("| object store data bytes | bytes |")
print("|:---|---:|")
print(f"| before the O(1) copies | {before:,} |")
print(f"| after {copies} O(1) copies | {after:,} (grown {after - before:,}) |")
print()
gib = 1 << 30
coffer = r["coffer snapshot copy --rekey --wait, 1 GiB written"]
peer = r["qemu-img convert LUKS to LUKS (new key), 1 GiB"]
fast = r["qemu-img convert LUKS to LUKS (new key), 1 GiB, iter-time 10 ms"]
print("| re-encrypting copy of 1 GiB | mean, s | bytes/s | MiB/s |")
print("|:---|---:|---:|---:|")
for name, s in [("`coffer snapshot copy --rekey --wait`", coffer),
                ("`qemu-img convert` LUKS to LUKS, default iter-time", peer),
                ("`qemu-img convert` LUKS to LUKS, iter-time 10 ms", fast)]:
    print(f"| {name} | {s:.2f} | {gib / s:,.0f} | {gib / s / (1 << 20):.0f} |")
print(f"| Coffer/peer (speed: peer's mean / Coffer's mean), default iter-time | {peer / coffer:.2f}× | | |")
print(f"| Coffer/peer, iter-time 10 ms | {fast / coffer:.2f}× | | |")
print()
# The jobs themselves (server side, no CLI start or 250 ms polling).
t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
jobs = json.load(open(f"{work}/jobs.json"))
jobs = jobs["items"] if isinstance(jobs, dict) else jobs
jobs = sorted(jobs, key=lambda j: j["created_at"])
assert len(jobs) == rekey_runs, f"expected {rekey_runs} jobs, found {len(jobs)}"
print("| re-encrypting copy job (server side) | state | bytes | created to finished, s | bytes/s | hash source = copy |")
print("|:---|:---|---:|---:|---:|:---|")
for j in jobs:
    d = t(j["finished_at"]) - t(j["created_at"])
    same = j.get("source_hash") is not None and j.get("source_hash") == j.get("target_hash")
    print(f"| {j['id']} | {j['state']} | {j['bytes_total']:,} | {d:.2f} | {j['bytes_total'] / d:,.0f} | {'yes' if same else 'NO'} |")
    assert j["state"] == "succeeded" and same, j
PY
