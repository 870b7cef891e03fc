#!/usr/bin/env bash
# Side-by-side NBD throughput and snapshot time of Coffer on its backends,
# measured in one run on this machine, three servers at once:
#   (1) embedded:  SQLite metadata + objects in a local directory (the default)
#   (2) pg-local:  PostgreSQL metadata + objects in a local directory
#                  (isolates the metadata backend)
#   (3) pg-s3:     PostgreSQL metadata + objects in S3: a moto_server this
#                  script starts on loopback, or the S3 service named by
#                  COFFER_BENCH_S3_ENDPOINT (region COFFER_BENCH_S3_REGION,
#                  default us-east-1; credentials from AWS_ACCESS_KEY_ID /
#                  AWS_SECRET_ACCESS_KEY)
# Each server gets one disk of SIZE, written with the same random image by
# `qemu-img convert -n` (it ends with a flush, so the data is durable) and
# read back to the same tmpfs file; the read-back of every server is compared
# with the source. qemu-img convert exits 0 even when that final flush fails,
# so the servers' logs are checked for failed I/O after every phase. Then
# `coffer snapshot create` is timed on each written, attached disk next to
# the CLI's own cost (`coffer --version`: process start; `coffer disk show`:
# process + one API call that reads metadata), so the snapshot's own cost can
# be read off. hyperfine times every command; the ratios printed at the end
# are from this run only. Also printed: CPU seconds per image write/read of
# each server process, its PostgreSQL backends and moto_server (from /proc),
# the write-back timings the servers log (COFFER_LOG=coffer_volume=debug:
# seal+put, store sync, chunk-map commit), how long the garbage collector
# takes to delete the objects an overwrite superseded, and peak RSS. Every
# timed command starts when no server has objects queued for deletion
# (hyperfine --prepare), so one server's background deletes never overlap
# the next measurement.
#
# Output: markdown tables for docs/PERFORMANCE.md under one line naming this
# script and the commit measured (bench/lib.sh: a dirty tree is refused).
#
# Usage: bench/backends.sh [SIZE]   (default 256M; RUNS=3, SNAP_RUNS=20 by
# default; the default run takes ~1-2 minutes after the build)
# Needs: hyperfine, qemu-img (apt-get install hyperfine qemu-utils), psql
# (apt-get install postgresql-client) and a PostgreSQL server on which this
# user may create databases (COFFER_BENCH_PG, default
# postgres://postgres@127.0.0.1:5432), python3 with boto3, and moto_server
# unless COFFER_BENCH_S3_ENDPOINT is set (pip install 'moto[server]' brings
# both). Creates a fresh database per PostgreSQL server and a fresh bucket,
# and removes them, the servers and its temporary files at exit, also on
# failure or Ctrl-C.
set -euo pipefail
SIZE=${1:-256M}
RUNS=${RUNS:-3}
SNAP_RUNS=${SNAP_RUNS:-20}
PG=${COFFER_BENCH_PG:-postgres://postgres@127.0.0.1:5432}
S3_ENDPOINT=${COFFER_BENCH_S3_ENDPOINT:-}
S3_REGION=${COFFER_BENCH_S3_REGION:-us-east-1}
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_start backends.sh

need() { command -v "$1" >/dev/null || { echo "backends.sh: need $1 ($2)" >&2; exit 1; }; }
need hyperfine "apt-get install hyperfine"
need qemu-img "apt-get install qemu-utils"
need psql "apt-get install postgresql-client"
need python3 "apt-get install python3"
if [ -z "$S3_ENDPOINT" ]; then need moto_server "pip install 'moto[server]'"; fi
python3 -c 'import boto3' 2>/dev/null ||
  { echo "backends.sh: need python3's boto3 (pip install 'moto[server]' brings it)" >&2; exit 1; }
psql "$PG/postgres" -Atqc 'SELECT 1' >/dev/null ||
  { echo "backends.sh: cannot reach PostgreSQL at $PG (set COFFER_BENCH_PG)" >&2; exit 1; }
bytes=$(numfmt --from=iec "${SIZE%B}")
[ $((bytes % 1048576)) -eq 0 ] || { echo "backends.sh: SIZE must be a whole number of MiB" >&2; exit 1; }

bench_cargo_build

work=$(mktemp -d /tmp/coffer-bench-backends.XXXXXX)
out=/dev/shm/coffer-bench-backends-out.$$
servers=(embedded pg-local pg-s3)
declare -A spid disk uri db
dbs=()
bucket=
moto_pid=
# running PID: whether PID runs (a zombie, not yet reaped, does not).
running() { case $(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) in Z*|"") return 1 ;; esac; }
cleanup() {
  set +e
  # The servers: SIGTERM, then SIGKILL after 10 s (a server flushes its open
  # disks on SIGTERM, which retries for minutes if the store is gone; the
  # benchmark's data is thrown away anyway).
  for s in "${!spid[@]}"; do kill "${spid[$s]}" 2>/dev/null; done
  for _ in $(seq 100); do
    alive=0
    for s in "${!spid[@]}"; do running "${spid[$s]}" && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for s in "${!spid[@]}"; do kill -KILL "${spid[$s]}" 2>/dev/null; wait "${spid[$s]}" 2>/dev/null; done
  # The bucket, emptied and deleted; on our own moto_server (objects in its
  # memory) it goes with the server.
  if [ -n "$bucket" ] && [ -z "$moto_pid" ]; then
    python3 - "$S3_ENDPOINT" "$S3_REGION" "$bucket" <<'PY' >/dev/null 2>&1 ||
import boto3, sys
b = boto3.resource("s3", endpoint_url=sys.argv[1], region_name=sys.argv[2]).Bucket(sys.argv[3])
b.objects.all().delete()
b.delete()
PY
      echo "backends.sh: could not delete bucket $bucket at $S3_ENDPOINT" >&2
  fi
  if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null; wait "$moto_pid" 2>/dev/null; fi
  for d in "${dbs[@]}"; do
    psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null ||
      echo "backends.sh: could not drop database $d" >&2
  done
  rm -rf "$work" "$out"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# CLI profiles of this run only: the user's ~/.config/coffer is not touched.
export XDG_CONFIG_HOME=$work/config

# The S3 service: a moto_server on a free loopback port, unless one is named.
if [ -z "$S3_ENDPOINT" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
  moto_pid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  S3_ENDPOINT=http://127.0.0.1:$port
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
fi
bucket=coffer-bench-$$-$RANDOM
python3 - "$S3_ENDPOINT" "$S3_REGION" "$bucket" <<'PY'
import boto3, sys
endpoint, region, bucket = sys.argv[1:]
extra = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
boto3.client("s3", endpoint_url=endpoint, region_name=region).create_bucket(Bucket=bucket, **extra)
PY

# newdb SERVER: a fresh database for SERVER (dropped at exit).
newdb() {
  db[$1]=coffer_bench_$$_${1//-/_}
  dbs+=("${db[$1]}")
  psql "$PG/postgres" -qc "CREATE DATABASE ${db[$1]}" >/dev/null
}

# start SERVER [serve options...]: a server with its own data dir, and a CLI
# profile named SERVER for it.
start() {
  local s=$1; shift
  COFFER_LOG=info,coffer_volume=debug,coffer_service=debug "$COFFER" serve --data-dir "$work/$s" \
    --root-key-file "$work/keys/$s.key" --listen 127.0.0.1:0 --nbd-listen 127.0.0.1:0 \
    --no-profile "$@" >"$work/$s.out" 2>"$work/$s.log" &
  spid[$s]=$!
  for _ in $(seq 300); do
    grep -q "NBD listening" "$work/$s.out" && break
    kill -0 "${spid[$s]}" 2>/dev/null || { echo "backends.sh: server $s exited:" >&2; cat "$work/$s.log" >&2; exit 1; }
    sleep 0.1
  done
  grep -q "NBD listening" "$work/$s.out" || { echo "backends.sh: server $s did not start" >&2; exit 1; }
  # With --no-profile the server prints its new admin token once, on the
  # line after "shown only now:" (passed on through a pipe, not a file).
  "$COFFER" configure --profile "$s" --token-file <(sed -n '/shown only now:/{n;p;q}' "$work/$s.out") \
    --endpoint "$(sed -n 's/^Coffer API listening on \(http[^ ]*\).*/\1/p' "$work/$s.out" | head -1)" >/dev/null
}

# check_logs PHASE: fail if a server logged failed I/O. (qemu-img convert
# exits 0 even if its final flush fails, so its exit code does not prove it.)
check_logs() {
  local s bad=0
  for s in "${servers[@]}"; do
    if grep -E "block I/O failed|write-back failed| ERROR " "$work/$s.log" >&2; then
      echo "backends.sh: server $s reported failed I/O during the $1 phase (above); its figures are void" >&2
      bad=1
    fi
  done
  [ "$bad" = 0 ] || exit 1
}

# settle: wait until no server has objects queued for deletion (the garbage
# collector runs in the background after each commit that superseded some);
# fail if a server logged failed I/O (so hyperfine, which runs this before
# every timed command, stops at the first command after a failure).
cat >"$work/settle.py" <<'PY'
import re, sqlite3, subprocess, sys, time
work, pg_urls = sys.argv[1], sys.argv[2:]
sqlite_db = f"{work}/embedded/meta.sqlite"
for s in ("embedded", "pg-local", "pg-s3"):
    with open(f"{work}/{s}.log", encoding="utf-8", errors="replace") as f:
        if any(re.search(r"block I/O failed|write-back failed| ERROR ", l) for l in f):
            sys.exit(f"backends.sh: server {s} logged failed I/O (see below); stopping")
def pending():
    con = sqlite3.connect(f"file:{sqlite_db}?mode=ro", uri=True, timeout=10)
    n = con.execute("SELECT (SELECT count(*) FROM gc_queue) + (SELECT count(*) FROM gc_objects)").fetchone()[0]
    con.close()
    for url in pg_urls:
        n += int(subprocess.run(["psql", url, "-Atc", "SELECT (SELECT count(*) FROM gc_queue) + (SELECT count(*) FROM gc_objects)"],
                                check=True, capture_output=True, text=True).stdout)
    return n
deadline = time.monotonic() + 600
while (n := pending()) > 0:
    if time.monotonic() > deadline:
        sys.exit(f"backends.sh: {n} objects still queued for deletion after 10 minutes")
    time.sleep(0.2)
PY
settle() { $prep; }   # $prep: set once the databases exist

# cpu_sample FILE: CPU seconds so far of each server, of the PostgreSQL
# backends of its database, and of moto_server.
cpu_sample() {
  local s args=()
  for s in "${servers[@]}"; do
    args+=("coffer $s" "${spid[$s]}")
    if [ -n "${db[$s]:-}" ]; then
      args+=("postgres $s" "$(psql "$PG/postgres" -Atc \
        "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE datname = '${db[$s]}'")")
    fi
  done
  if [ -n "$moto_pid" ]; then args+=("moto_server" "$moto_pid"); fi
  python3 - "${args[@]}" >"$1" <<'PY'
import json, os, sys
tck = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / tck
    except (OSError, ValueError, IndexError):
        return 0.0
a = sys.argv[1:]
print(json.dumps({a[i]: sum(cpu(p) for p in a[i + 1].split(",") if p) for i in range(0, len(a), 2)}))
PY
}

echo "== starting three servers; preparing a $SIZE random image" >&2
start embedded
newdb pg-local
start pg-local --metadata "$PG/${db[pg-local]}"
newdb pg-s3
start pg-s3 --metadata "$PG/${db[pg-s3]}" --store "s3://$bucket?endpoint=$S3_ENDPOINT&region=$S3_REGION"
head -c "$bytes" /dev/urandom >"$work/src.raw"
for s in "${servers[@]}"; do
  disk[$s]=$("$COFFER" --profile "$s" disk create --name bench --size "$((bytes / 1048576))MiB" --zone local-a --query id)
  uri[$s]=$("$COFFER" --profile "$s" disk attach "${disk[$s]}" --query uri)
done
sleep 0.5

wargs=() rargs=() sargs=()
for s in "${servers[@]}"; do
  wargs+=(-n "write $s" "qemu-img convert -n -f raw -O raw $work/src.raw ${uri[$s]}")
  rargs+=(-n "read $s" "qemu-img convert -f raw -O raw ${uri[$s]} $out")
done
prep="python3 $work/settle.py $work $PG/${db[pg-local]} $PG/${db[pg-s3]}"
cpu_sample "$work/cpu0.json"
echo "== write" >&2
hyperfine --runs "$RUNS" --warmup 1 --prepare "$prep" --export-markdown "$work/write.md" --export-json "$work/write.json" "${wargs[@]}" >&2 ||
  { check_logs write; exit 1; }
check_logs write
settle
cpu_sample "$work/cpu1.json"
echo "== read" >&2
hyperfine --runs "$RUNS" --warmup 1 --prepare "$prep" --export-markdown "$work/read.md" --export-json "$work/read.json" "${rargs[@]}" >&2 ||
  { check_logs read; exit 1; }
check_logs read
cpu_sample "$work/cpu2.json"
# hyperfine keeps one output file for all commands: read each server once
# more and compare.
for s in "${servers[@]}"; do
  qemu-img convert -f raw -O raw "${uri[$s]}" "$out"
  cmp "$work/src.raw" "$out" || { echo "backends.sh: $s read back differs from the source!" >&2; exit 1; }
done
echo "== read-backs identical to the source; snapshot create and CLI baselines" >&2
# Run by bash, for $EPOCHREALTIME: a unique snapshot name per run, no fork.
sargs=(-n "coffer --version" "$COFFER --version")
for s in "${servers[@]}"; do
  sargs+=(-n "disk show $s" "$COFFER --profile $s disk show ${disk[$s]} >/dev/null")
  sargs+=(-n "snapshot create $s" "$COFFER --profile $s snapshot create --disk ${disk[$s]} --name s-\${EPOCHREALTIME/./} >/dev/null")
done
settle
hyperfine --shell bash --runs "$SNAP_RUNS" --warmup 2 --export-markdown "$work/snap.md" --export-json "$work/snap.json" "${sargs[@]}" >&2 ||
  { check_logs snapshot; exit 1; }
check_logs snapshot
for s in "${servers[@]}"; do
  n=$("$COFFER" --profile "$s" snapshot list --query id | wc -l)
  [ "$n" -eq $((SNAP_RUNS + 2)) ] || { echo "backends.sh: $s has $n snapshots, expected $((SNAP_RUNS + 2))" >&2; exit 1; }
done

bench_finish

echo
bench_provenance "$SIZE image, qemu-img convert, $RUNS runs each ($SNAP_RUNS for the CLI commands)"
echo
cat "$work/write.md"; echo; cat "$work/read.md"; echo; cat "$work/snap.md"; echo
python3 - "$work" "$bytes" "$RUNS" <<'PY'
import json, sys
work, size, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(p):
    return {r["command"]: r for r in json.load(open(f"{work}/{p}"))["results"]}
w, r, s = load("write.json"), load("read.json"), load("snap.json")
mib = size / 1048576
names = ["embedded", "pg-local", "pg-s3"]
print("| server | write MiB/s | read MiB/s | snapshot create ms | minus `disk show` ms |")
print("|:---|---:|---:|---:|---:|")
for n in names:
    sm, dm = s["snapshot create " + n]["mean"], s["disk show " + n]["mean"]
    print(f"| {n} | {mib / w['write ' + n]['mean']:.0f} | {mib / r['read ' + n]['mean']:.0f} "
          f"| {1000 * sm:.1f} | {1000 * (sm - dm):.1f} |")
print()
print(f"`coffer --version` (process start alone): {1000 * s['coffer --version']['mean']:.1f} ms")
for n in names[1:]:
    print(f"{n} vs embedded, time taken: write {w['write ' + n]['mean'] / w['write embedded']['mean']:.2f}x, "
          f"read {r['read ' + n]['mean'] / r['read embedded']['mean']:.2f}x, "
          f"snapshot create {s['snapshot create ' + n]['mean'] / s['snapshot create embedded']['mean']:.2f}x")
# CPU seconds per image written / read (warm-up included: runs + 1 of each).
c = [json.load(open(f"{work}/cpu{i}.json")) for i in range(3)]
print()
print(f"CPU seconds per {mib:.0f} MiB image (mean of {runs + 1}, warm-up included), next to the wall time:")
print()
print("| server | write wall s | write CPU s | read wall s | read CPU s |")
print("|:---|---:|---:|---:|---:|")
for n in names:
    procs = [k for k in c[0] if k.endswith(" " + n)] + (["moto_server"] if n == "pg-s3" and "moto_server" in c[0] else [])
    def cpu(a, b):
        return " + ".join(f"{k.split()[0]} {(c[b][k] - c[a][k]) / (runs + 1):.2f}" for k in procs)
    print(f"| {n} | {w['write ' + n]['mean']:.2f} | {cpu(0, 1)} | {r['read ' + n]['mean']:.2f} | {cpu(1, 2)} |")
PY
echo
echo "Write-back as logged by the servers (whole run, warm-up included; 256 KiB chunks):"
echo
for s in "${servers[@]}"; do
  python3 - "$s" "$work/$s.log" <<'PY'
import re, statistics, sys
def secs(v):
    m = re.fullmatch(r"([\d.]+)(ns|µs|us|ms|s)", v)
    return float(m[1]) * {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1}[m[2]]
from datetime import datetime
put, sync, commit, chunks, gc, last_commit = [], [], [], 0, [], None
for line in open(sys.argv[2], encoding="utf-8", errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    ts = datetime.fromisoformat(line.split()[0].rstrip("Z")) if line[:2] == "20" else None
    if "garbage collected" in line and last_commit:
        gc.append((int(re.search(r"objects=(\d+)", line)[1]), (ts - last_commit).total_seconds()))
    if "sealed and put" in line:
        put.append(secs(re.search(r"elapsed=(\S+)", line)[1]))
        chunks += int(re.search(r"chunks=(\d+)", line)[1])
    elif " committed " in line:
        m = re.search(r"entries=(\d+) sync=(\S+) commit=(\S+)", line)
        sync.append(secs(m[2])); commit.append(secs(m[3]))
        last_commit = ts
med = lambda v: f"{1000 * statistics.median(v):.1f} ms" if v else "-"
print(f"- {sys.argv[1]}: sealed and put {chunks} chunks in {sum(put):.2f} s "
      f"({chunks / 4 / max(sum(put), 1e-9):.0f} MiB/s, {len(put)} batches); {len(commit)} flushes: "
      f"store sync median {med(sync)}, chunk-map commit median {med(commit)}; "
      + (f"garbage collection after an overwrite: {statistics.median(g[0] for g in gc):.0f} objects deleted "
         f"in {statistics.median(g[1] for g in gc):.2f} s (median of {len(gc)})" if gc else "no garbage collected"))
PY
done
echo
rss() { echo "$(( $(awk '/VmHWM/ {print $2}' "/proc/$1/status") / 1024 )) MiB"; }
echo "Peak RSS: coffer embedded $(rss "${spid[embedded]}"), pg-local $(rss "${spid[pg-local]}"), pg-s3 $(rss "${spid[pg-s3]}")${moto_pid:+; moto_server $(rss "$moto_pid")}"
