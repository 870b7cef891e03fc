#!/usr/bin/env bash
# Cross-region copies (docs/DEPLOYMENT.md "Regions", docs/SHARING.md "When a
# copy re-encrypts", docs/design/regions.md §3–§4), measured in one run:
#   - the machine's limit: `openssl speed` of AES-256-GCM encrypt and
#     decrypt and of SHA-256 on one core (256 KiB blocks, 3 s each), and
#     from them what a copy that decrypts and re-encrypts every byte (and
#     hashes it for verification) could reach on one core and on two (with
#     SHA-256, which copies hashed with until they moved to BLAKE3; openssl
#     has no BLAKE3, which is faster, so limits C-F are now conservative);
#   - one release `coffer serve` whose config file names two regions, r1
#     (zone r1-a) and r2 (zone r2-a), each with its own store directory;
#   - full cross-region copies: a SIZE_GIB (4) GiB disk in r1-a fully
#     written with random data (qemu-img convert into its NBD export, which
#     ends with a flush), a snapshot, and `coffer snapshot copy SNAP
#     --target-region r2 --wait`, RUNS (3) times; before each, the previous
#     copy is deleted and `coffer admin gc` run, and each job must have no
#     base_id (a full copy). Time = the job's created_at..finished_at (the
#     server's own), with the CLI's wall time beside it;
#   - an incremental copy: a BIG_GIB (10) GiB disk in r1-a fully written with
#     random data, snapshot s1, a full copy of it (a second throughput
#     figure), then 1% of the disk rewritten (one 256 KiB write of fresh
#     random data per 100 chunks, at chunk-aligned offsets spread over the
#     disk, through one qemu-io ending with a flush), snapshot s2 and its
#     copy to r2, which must be built on the first copy (base_id) and move
#     at most 2% of the disk (bytes_copied);
#   - during every copy, a sampler (4 per second) records the job's phase
#     (copying / verifying), the server's CPU time and the machine's, so the
#     tables say how many cores the copy kept busy in each phase.
# Output: markdown tables for docs/PERFORMANCE.md, each under the line
# naming this script and the commit measured (bench/lib.sh: a dirty tree is
# refused).
#
# Usage: bench/regions.sh   (SIZE_GIB=4, BIG_GIB=10, RUNS=3; needs qemu-img,
# qemu-io, openssl, curl, python3 and 2*BIG_GIB + 2*SIZE_GIB + 4 GiB free
# under /tmp; ~10-15 minutes after the build)
set -euo pipefail
SIZE_GIB=${SIZE_GIB:-4}
BIG_GIB=${BIG_GIB:-10}
RUNS=${RUNS:-3}
SPEED_SECONDS=${SPEED_SECONDS:-3}
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_start regions.sh
bench_need "qemu-utils openssl curl python3" qemu-img qemu-io openssl curl python3
need_gib=$((2 * BIG_GIB + 2 * SIZE_GIB + 4))
free_kib=$(df -Pk /tmp | awk 'NR == 2 { print $4 }')
[ "$free_kib" -ge $((need_gib << 20)) ] ||
  { echo "$BENCH_SCRIPT: need ~$need_gib GiB free under /tmp (df -h /tmp: $((free_kib >> 20)) GiB)" >&2; exit 1; }
bench_cargo_build
work=$(mktemp -d /tmp/coffer-bench-regions.XXXXXX)
spid=
sampler=
cleanup() {
  if [ -n "$sampler" ]; then kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null; fi
  if [ -n "$spid" ]; then kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

echo "== the machine's limit: openssl speed, one core, 256 KiB blocks, ${SPEED_SECONDS} s each" >&2
# -mr: machine-readable, the +F line's last field is bytes per second.
speed() { openssl speed -elapsed -seconds "$SPEED_SECONDS" -mr "$@" 2>/dev/null | awk -F: '/^\+F:/ { print $NF }'; }
enc=$(speed -evp aes-256-gcm -bytes 262144)
dec=$(speed -decrypt -evp aes-256-gcm -bytes 262144)
sha=$(speed -bytes 262144 sha256)
for v in "$enc" "$dec" "$sha"; do
  [ -n "$v" ] || { echo "$BENCH_SCRIPT: openssl speed printed no figure" >&2; exit 1; }
done

mkdir -p "$work/jobs"
export HOME=$work/home XDG_CONFIG_HOME=$work/home/.config
mkdir -p "$HOME"
cat > "$work/serve.toml" <<EOF
[[regions]]
name = "r1"
zones = ["r1-a"]
store = "$work/store-r1"

[[regions]]
name = "r2"
zones = ["r2-a"]
store = "$work/store-r2"
EOF
"$COFFER" serve --config "$work/serve.toml" --data-dir "$work/coffer" --root-key-file "$work/keys/root.key" \
  --listen 127.0.0.1:0 --nbd-listen 127.0.0.1:0 > "$work/serve.out" 2> "$work/serve.log" &
spid=$!
for _ in $(seq 300); do grep -q "NBD listening" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
grep -q "NBD listening" "$work/serve.out" || { echo "coffer did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }
api=$(sed -n 's/^Coffer API listening on \(http[^ ]*\).*/\1/p' "$work/serve.out" | head -1)
# The bench's own throwaway server: its admin token, for the sampler.
token=$(sed -n 's/^token = "\(.*\)"$/\1/p' "$HOME/.config/coffer/config.toml" | head -1)
check_log() {
  if grep -E "block I/O failed|write-back failed|copy job failed|panicked| ERROR " "$work/serve.log" >&2; then
    echo "coffer reported a failure (above): the figures are void" >&2
    exit 1
  fi
}
regions=$("$COFFER" region list --output json | python3 -c 'import json,sys; print(" ".join(sorted(r["name"] for r in json.load(sys.stdin))))')
[ "$regions" = "r1 r2" ] || { echo "expected regions r1 r2, the server has: $regions" >&2; exit 1; }

# random_file FILE GIB: GIB GiB of random data (openssl rand, 1 GiB a call).
random_file() {
  local i
  for i in $(seq "$2"); do openssl rand $((1 << 30)); done > "$1"
}
# write_disk NAME GIB: a disk in r1-a fully written with random data; prints its id.
write_disk() {
  local disk uri
  disk=$("$COFFER" disk create --name "$1" --size "$2GiB" --zone r1-a --query id)
  random_file "$work/src.raw" "$2"
  uri=$("$COFFER" disk attach "$disk" --query uri)
  qemu-img convert -n -f raw -O raw "$work/src.raw" "$uri"
  "$COFFER" disk detach "$disk" >/dev/null
  rm -f "$work/src.raw"
  echo "$disk"
}

# The sampler: 4 times a second, the running job's phase and progress, the
# server's CPU ticks and the machine's /proc/stat line, as JSON lines.
start_sampler() {
  python3 - "$api" "$token" "$spid" "$1" <<'PY' >/dev/null &
import json, os, sys, time, urllib.request
api, token, pid, path = sys.argv[1:5]
req = urllib.request.Request(f"{api}/v1/jobs?state=running", headers={"Authorization": f"Bearer {token}"})
with open(path, "w") as f:
    while True:
        t = time.time()
        with open(f"/proc/{pid}/stat") as s:
            fields = s.read().rsplit(")", 1)[1].split()
        cpu = int(fields[11]) + int(fields[12])  # utime + stime, clock ticks
        with open("/proc/stat") as s:
            machine = [int(x) for x in s.readline().split()[1:]]
        threads = {}
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as s:
                    name, rest = s.read().split("(", 1)[1].rsplit(")", 1)
                rest = rest.split()
                threads[tid] = [name, int(rest[11]) + int(rest[12])]
            except OSError:
                pass
        try:
            page = json.load(urllib.request.urlopen(req, timeout=5))
            items = page["items"] if isinstance(page, dict) else page
            jobs = [[j["id"], j["state"], j.get("message"), j["bytes_done"]] for j in items if j["state"] == "running"]
        except Exception as e:
            jobs = [["error", str(e), None, 0]]
        f.write(json.dumps({"t": t, "cpu": cpu, "machine": machine, "threads": threads, "jobs": jobs}) + "\n")
        f.flush()
        time.sleep(0.25)
PY
  sampler=$!
}
stop_sampler() { kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true; sampler=; }

# timed_copy LABEL SNAP NAME: copy SNAP to r2 as NAME (--wait), sampled;
# keeps the job's JSON, the wall time and the samples under $work/jobs;
# prints the copy's id.
timed_copy() {
  local label=$1 snap=$2 name=$3 t0 t1 copy
  # Files of deleted objects r2's local store keeps for reuse (overwriting
  # one is cheaper than allocating a new file): the first copy has none.
  find "$work/store-r2/.free" -type f 2>/dev/null | wc -l > "$work/jobs/$label.free"
  start_sampler "$work/jobs/$label.samples"
  t0=$(date +%s.%N)
  copy=$("$COFFER" snapshot copy "$snap" --name "$name" --target-region r2 --wait --query id)
  t1=$(date +%s.%N)
  stop_sampler
  echo "$t0 $t1" > "$work/jobs/$label.wall"
  "$COFFER" job list --output json | python3 -c '
import json, sys
jobs = json.load(sys.stdin)
jobs = jobs["items"] if isinstance(jobs, dict) else jobs
mine = [j for j in jobs if j["target_id"] == sys.argv[1]]
assert len(mine) == 1, f"no single job made {sys.argv[1]}: {jobs}"
json.dump(mine[0], sys.stdout)' "$copy" > "$work/jobs/$label.json"
  check_log
  echo "$copy"
}
# job_field LABEL FIELD: a field of a kept job ("" when absent or null).
job_field() {
  python3 -c 'import json,sys; v = json.load(open(sys.argv[1])).get(sys.argv[2]); print("" if v is None else v)' \
    "$work/jobs/$1.json" "$2"
}
# must_be_full LABEL: fail unless the job was a full copy that succeeded.
must_be_full() {
  local base state
  base=$(job_field "$1" base_id)
  state=$(job_field "$1" state)
  [ -z "$base" ] || { echo "$BENCH_SCRIPT: the full copy $1 was built on $base (base_id): not a full copy" >&2; cat "$work/jobs/$1.json" >&2; exit 1; }
  [ "$state" = succeeded ] || { echo "$BENCH_SCRIPT: copy $1 is $state" >&2; exit 1; }
}

echo "== a $SIZE_GIB GiB disk in r1-a, written with random data, and its snapshot" >&2
small=$(write_disk small "$SIZE_GIB")
small_snap=$("$COFFER" snapshot create --disk "$small" --name small-snap --query id)
check_log

echo "== $RUNS full copies of $SIZE_GIB GiB to r2 (each after deleting the previous copy and gc)" >&2
prev=
for i in $(seq "$RUNS"); do
  if [ -n "$prev" ]; then "$COFFER" snapshot delete "$prev" --yes >/dev/null; fi
  "$COFFER" admin gc >/dev/null
  prev=$(timed_copy "full-$i" "$small_snap" "c$i")
  must_be_full "full-$i"
  echo "   run $i: $(job_field "full-$i" bytes_copied) bytes" >&2
done
# Room for the big disk: the small disk, its snapshot and its last copy go.
"$COFFER" snapshot delete "$prev" --yes >/dev/null
"$COFFER" snapshot delete "$small_snap" --yes >/dev/null
"$COFFER" disk delete "$small" --yes >/dev/null
"$COFFER" admin gc >/dev/null

echo "== a $BIG_GIB GiB disk in r1-a, written with random data; s1 and its full copy" >&2
big=$(write_disk big "$BIG_GIB")
s1=$("$COFFER" snapshot create --disk "$big" --name s1 --query id)
check_log
"$COFFER" admin gc >/dev/null
first=$(timed_copy big-full "$s1" big-c1)
must_be_full big-full

echo "== 1% of the $BIG_GIB GiB disk rewritten; s2 and its incremental copy" >&2
chunk=$((256 << 10))
chunks=$(((BIG_GIB << 30) / chunk))
changes=$(((chunks + 99) / 100))
stride=$((chunks / changes))
mkdir -p "$work/changes"
openssl rand $((changes * chunk)) | split -a 4 -d -b "$chunk" - "$work/changes/p"
cmds=()
for k in $(seq 0 $((changes - 1))); do
  cmds+=(-c "write -q -s $work/changes/p$(printf %04d "$k") $((k * stride * chunk)) 256k")
done
uri=$("$COFFER" disk attach "$big" --query uri)
qemu-io -f raw "${cmds[@]}" -c flush "$uri" > "$work/qemu-io.out" 2>&1 ||
  { cat "$work/qemu-io.out" >&2; echo "$BENCH_SCRIPT: qemu-io failed" >&2; exit 1; }
if grep -qiE "failed|error" "$work/qemu-io.out"; then cat "$work/qemu-io.out" >&2; exit 1; fi
"$COFFER" disk detach "$big" >/dev/null
rm -rf "$work/changes"
s2=$("$COFFER" snapshot create --disk "$big" --name s2 --query id)
check_log
"$COFFER" admin gc >/dev/null
timed_copy big-incr "$s2" big-c2 >/dev/null
[ "$(job_field big-incr state)" = succeeded ] || { echo "$BENCH_SCRIPT: the incremental copy is $(job_field big-incr state)" >&2; exit 1; }
check_log
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
bench_finish

python3 - "$work" "$RUNS" "$SIZE_GIB" "$BIG_GIB" "$enc" "$dec" "$sha" "$first" "$changes" "$chunk" "$(getconf CLK_TCK)" \
  "$(bench_provenance "release build, one coffer serve with regions r1 and r2 (a store directory each, one disk)")" \
  "$load_before" "$load_after" "$SPEED_SECONDS" <<'PY'
import json, sys
from datetime import datetime
(work, runs, size_gib, big_gib, enc, dec, sha, first, changes, chunk, hz,
 prov, load_before, load_after, speed_s) = sys.argv[1:]
runs, size_gib, big_gib, changes, chunk, hz = map(int, (runs, size_gib, big_gib, changes, chunk, hz))
enc, dec, sha = map(float, (enc, dec, sha))
MB = 1e6
ts = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()

def job(label):
    j = json.load(open(f"{work}/jobs/{label}.json"))
    t0, t1 = map(float, open(f"{work}/jobs/{label}.wall").read().split())
    j["_job_s"] = ts(j["finished_at"]) - ts(j["created_at"])
    j["_wall_s"] = t1 - t0
    j["_phases"] = phases(label, j["id"])
    j["_free"] = int(open(f"{work}/jobs/{label}.free").read())
    return j

def phases(label, jid):
    """Per phase of the job (by its message): seconds sampled, the
    server's cores busy, the machine's cores busy, iowait cores."""
    samples = [json.loads(l) for l in open(f"{work}/jobs/{label}.samples") if l.strip()]
    out = {}
    for a, b in zip(samples, samples[1:]):
        mine = [j for j in a["jobs"] if j[0] == jid]
        if not mine:
            continue
        phase = "verifying" if mine[0][2] == "verifying" else "copying"
        dt = b["t"] - a["t"]
        d = [y - x for x, y in zip(a["machine"], b["machine"])]
        # /proc/stat: user nice system idle iowait irq softirq steal ...
        busy = d[0] + d[1] + d[2] + d[5] + d[6] + (d[7] if len(d) > 7 else 0)
        p = out.setdefault(phase, [0.0, 0, 0, 0, {}])
        p[0] += dt; p[1] += b["cpu"] - a["cpu"]; p[2] += busy; p[3] += d[4]
        for tid, (name, ticks) in b.get("threads", {}).items():
            if tid in a.get("threads", {}):
                n, v = p[4].get(tid, (name, 0))
                p[4][tid] = (name, v + ticks - a["threads"][tid][1])
    res = {}
    for k, (s, c, m, io, th) in out.items():
        if s > 0:
            top = sorted(th.values(), key=lambda x: -x[1])[:2]
            res[k] = (s, c / hz / s, m / hz / s, io / hz / s,
                      ", ".join(f"{v / hz / s:.2f} ({n})" for n, v in top))
    return res

fulls = [job(f"full-{i}") for i in range(1, runs + 1)]
bigf, incr = job("big-full"), job("big-incr")
size, big = size_gib << 30, big_gib << 30

# Limits (bytes/s) of a copy that decrypts and re-encrypts every byte.
l_one = 1 / (1 / enc + 1 / dec)
l_two = min(enc, dec)
l_sha_one = 1 / (1 / enc + 1 / dec + 2 / sha)
l_sha_two = 2 * l_sha_one
l_rb_one = 1 / (1 / enc + 2 / dec + 2 / sha)
l_rb_two = 2 * l_rb_one
limits = [
    ("A", "decrypt + encrypt, one core: 1/(1/enc + 1/dec)", l_one),
    ("B", "decrypt + encrypt, two cores pipelined (read/decrypt in one task, seal in another): min(enc, dec)", l_two),
    ("C", "decrypt + encrypt + 2x SHA-256 (source and copy hashes; copies now hash with the faster BLAKE3, so C-F are conservative), one core: 1/(1/enc + 1/dec + 2/sha)", l_sha_one),
    ("D", "the same work as C split evenly over two cores: 2/(1/enc + 1/dec + 2/sha)", l_sha_two),
    ("E", "C plus decrypting the copy again to hash it (the verification reads the copy back), one core: 1/(1/enc + 2/dec + 2/sha)", l_rb_one),
    ("F", "the same work as E split evenly over two cores", l_rb_two),
]
mbs = lambda b, s: b / s / MB

print(prov + f", openssl speed {speed_s} s per figure, load average before/after: {load_before} / {load_after}")
print()
print("| limit of this machine (`openssl speed -elapsed`, 256 KiB blocks, one core) | MB/s |")
print("|:---|---:|")
print(f"| AES-256-GCM encrypt (`-evp aes-256-gcm`) | {enc / MB:,.0f} |")
print(f"| AES-256-GCM decrypt (`-decrypt -evp aes-256-gcm`) | {dec / MB:,.0f} |")
print(f"| SHA-256 (`sha256`) | {sha / MB:,.0f} |")
for key, text, v in limits:
    print(f"| limit {key}: {text} | {v / MB:,.0f} |")
print()

print(prov + f", full copies: {runs} runs of {size_gib} GiB, each after deleting the previous copy and `coffer admin gc`; {big_gib} GiB: once")
print()
print("| full cross-region copy r1 → r2 (`coffer snapshot copy --target-region r2 --wait`) | bytes_copied | base_id | job created→finished, s | MB/s (job) | CLI wall, s | MB/s (wall) | hash source = copy | r2's reusable files before |")
print("|:---|---:|:---|---:|---:|---:|---:|:---|---:|")
def row(name, j, n):
    same = j.get("source_hash") is not None and j.get("source_hash") == j.get("target_hash")
    print(f"| {name} | {j['bytes_copied']:,} | {j.get('base_id') or '(none)'} | {j['_job_s']:.2f} | {mbs(n, j['_job_s']):,.0f} | {j['_wall_s']:.2f} | {mbs(n, j['_wall_s']):,.0f} | {'yes' if same else 'NO'} | {j['_free']:,} |")
for i, j in enumerate(fulls, 1):
    row(f"{size_gib} GiB, run {i}", j, size)
mean_s = sum(j["_job_s"] for j in fulls) / len(fulls)
mean_w = sum(j["_wall_s"] for j in fulls) / len(fulls)
print(f"| {size_gib} GiB, mean of {runs} | | | {mean_s:.2f} | {mbs(size, mean_s):,.0f} | {mean_w:.2f} | {mbs(size, mean_w):,.0f} | | |")
row(f"{big_gib} GiB (s1, the base of the incremental copy below)", bigf, big)
print()
print("| copy throughput (job time) as a share of each limit | " + " | ".join(f"{k}" for k, _, _ in limits) + " |")
print("|:---|" + "---:|" * len(limits))
for name, rate in [(f"{size_gib} GiB, mean of {runs}", size / mean_s), (f"{big_gib} GiB", big / bigf["_job_s"])]:
    print(f"| {name} ({rate / MB:,.0f} MB/s) | " + " | ".join(f"{rate / v:.0%}" for _, _, v in limits) + " |")
print()

print("| where the time goes (sampled 4 times a second) | phase | s | server CPU, cores | its two busiest threads, cores | other processes, cores | iowait, cores |")
print("|:---|:---|---:|---:|:---|---:|---:|")
for name, j in [(f"{size_gib} GiB full, run {i}", f) for i, f in enumerate(fulls, 1)] + [(f"{big_gib} GiB full", bigf), (f"{big_gib} GiB incremental", incr)]:
    for ph in ("copying", "verifying"):
        if ph in j["_phases"]:
            s, c, m, io, top = j["_phases"][ph]
            print(f"| {name} | {ph} | {s:.1f} | {c:.2f} | {top} | {max(m - c, 0):.2f} | {io:.2f} |")
print()

changed = changes * chunk
moved = incr["bytes_copied"]
checks = []
if incr.get("base_id") != first:
    checks.append(f"the incremental copy's base_id is {incr.get('base_id')}, not the first copy {first}")
if moved > big / 50:
    checks.append(f"the incremental copy moved {moved:,} bytes, over 2% of {big:,}")
if incr.get("source_hash") is None or incr.get("source_hash") != incr.get("target_hash"):
    checks.append("the incremental copy's hashes of source and copy differ or are missing")
print(prov + f", {big_gib} GiB disk, {changes} writes of 256 KiB of fresh random data at chunk-aligned offsets spread over it (qemu-io, one flush)")
print()
print(f"| incremental cross-region copy of s2 ({big_gib} GiB, {changed / big:.2%} rewritten since s1) | |")
print("|:---|---:|")
print(f"| bytes rewritten through NBD | {changed:,} |")
print(f"| bytes_copied | {moved:,} ({moved / big:.2%} of the disk) |")
print(f"| base_id | {incr.get('base_id') or '(none)'} ({'the first copy' if incr.get('base_id') == first else 'NOT the first copy ' + first}) |")
print(f"| job created→finished, s | {incr['_job_s']:.2f} |")
print(f"| CLI wall, s | {incr['_wall_s']:.2f} |")
print(f"| full copy of s1 (job), s | {bigf['_job_s']:.2f} |")
print(f"| incremental / full, time (job) | {incr['_job_s'] / bigf['_job_s']:.1%} |")
print(f"| incremental / full, bytes copied | {moved / bigf['bytes_copied']:.2%} |")
print(f"| hash source = copy | {'yes' if incr.get('source_hash') == incr.get('target_hash') else 'NO'} |")
print()
if checks:
    for c in checks:
        print(f"CHECK FAILED: {c}")
    sys.exit(1)
PY
