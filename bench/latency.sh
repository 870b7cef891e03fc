#!/usr/bin/env bash
# The scale-out path with its services 2 ms away: flush cost and garbage
# collection rate on PostgreSQL metadata + an S3 store (moto_server), each
# reached through bench/delay_proxy.py, which adds DELAY_MS (default 2) of
# round-trip time on loopback without limiting bandwidth. Measured for this
# tree ("after") and, with BEFORE=COMMIT, for an earlier commit built in a
# git worktree of its own ("before"; default b8339ac, the last commit whose
# flush committed its chunk-map rows chunk by chunk and whose collector
# deleted one object per request), one after the other in one run.
#
# Per server: one disk of SIZE (default 256M); ROUNDS (default 3) times, the
# same random image is written whole with `qemu-img convert` (which ends
# with a flush): the flush's commit of every chunk's rows, and its store
# sync, are read from the server's debug log; each round after the first
# supersedes every chunk, so the collector then deletes as many objects as
# the disk has chunks: its rate is the objects its log says it deleted
# after that flush's commit over the time from the commit's log line to its
# last deletion's (the next round starts once the queue is empty).
#
# Output: markdown tables for docs/PERFORMANCE.md under one line naming this
# script and the commit measured (bench/lib.sh: a dirty tree is refused).
#
# Usage: bench/latency.sh [SIZE]   (SIZE 256M, ROUNDS=3, DELAY_MS=2,
# BEFORE=b8339ac or BEFORE= for none). Needs qemu-img, psql, a PostgreSQL
# server (COFFER_BENCH_PG, default postgres://postgres@127.0.0.1:5432),
# moto_server and python3 with boto3 (pip install 'moto[server]').
set -euo pipefail
SIZE=${1:-256M}
ROUNDS=${ROUNDS:-3}
DELAY_MS=${DELAY_MS:-2}
BEFORE=${BEFORE-b8339ac}
PG=${COFFER_BENCH_PG:-postgres://postgres@127.0.0.1:5432}
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_start latency.sh
bench_need "qemu-utils postgresql-client python3" qemu-img psql python3
bench_need "moto[server] (pip)" moto_server
pg_port=$(python3 -c "import urllib.parse,sys; print(urllib.parse.urlsplit(sys.argv[1]).port or 5432)" "$PG")
pg_base=${PG%:*}
psql "$PG/postgres" -Atqc 'SELECT 1' >/dev/null ||
  { echo "latency.sh: cannot reach PostgreSQL at $PG (set COFFER_BENCH_PG)" >&2; exit 1; }
bench_cargo_build
AFTER_BIN=$COFFER
BEFORE_BIN=
if [ -n "$BEFORE" ]; then
  before_commit=$(git rev-parse --short "$BEFORE")
  wt=target/bench-before/src
  if [ ! -d "$wt" ] || [ "$(git -C "$wt" rev-parse --short HEAD 2>/dev/null)" != "$before_commit" ]; then
    rm -rf "$wt"; git worktree prune
    git worktree add -q --detach "$wt" "$before_commit"
  fi
  echo "== building the before commit $before_commit (its own target dir)" >&2
  (cd "$wt" && CARGO_TARGET_DIR=../target cargo build --release --locked -p coffer-cli >&2)
  BEFORE_BIN=$PWD/target/bench-before/target/release/coffer
fi
bench_workdir
dbs=()
trap 'bench_cleanup; for d in "${dbs[@]}"; do psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
s3_port=$(free_port)
moto_server -H 127.0.0.1 -p "$s3_port" >"$work/moto.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$s3_port')" 2>/dev/null && break; sleep 0.1; done
# The proxies: PostgreSQL and S3, DELAY_MS away.
proxy() {
  local p; p=$(free_port)
  python3 bench/delay_proxy.py "$p" "$1" "$DELAY_MS" >"$work/proxy.$1.out" 2>&1 & pids+=($!)
  for _ in $(seq 100); do grep -q listening "$work/proxy.$1.out" && break; sleep 0.05; done
  echo "$p"
}
pg_proxy=$(proxy "$pg_port")
s3_proxy=$(proxy "$s3_port")
# The proxies' own round trip, as a check that the delay is there.
rtt=$(python3 - "$pg_proxy" "$pg_port" <<'PY'
import socket, sys, time
def rtt(port):
    best = 1e9
    for _ in range(5):
        t = time.monotonic(); s = socket.create_connection(("127.0.0.1", int(port)))
        s.sendall(b"\0\0\0\x08\x04\xd2\x16\x2f"); s.recv(1); s.close()  # SSLRequest: one byte back
        best = min(best, time.monotonic() - t)
    return best * 1e3
print(f"{rtt(sys.argv[1]) - rtt(sys.argv[2]):.1f}")
PY
)
echo "== the proxy adds $rtt ms to a PostgreSQL round trip (connect + one exchange)" >&2

bytes=$(numfmt --from=iec "${SIZE%B}")
head -c "$bytes" /dev/urandom >"$work/src.raw"
export HOME=$work/home XDG_CONFIG_HOME=$work/home/.config
mkdir -p "$HOME"

# measure LABEL BIN: one server on the proxied database and bucket.
measure() {
  local label=$1 bin=$2 db=coffer_bench_lat_$$_$1 bucket=coffer-lat-$$-$1
  dbs+=("$db")
  psql "$PG/postgres" -qc "CREATE DATABASE $db" >/dev/null
  python3 -c "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='x').create_bucket(Bucket=sys.argv[2])" \
    "http://127.0.0.1:$s3_port" "$bucket"
  AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x COFFER_LOG=info,coffer_volume=debug,coffer_service=debug \
    "$bin" serve --data-dir "$work/$label" --root-key-file "$work/keys/$label.key" \
    --listen 127.0.0.1:0 --nbd-listen 127.0.0.1:0 --no-profile \
    --metadata "$pg_base:$pg_proxy/$db" \
    --store "s3://$bucket?endpoint=http://127.0.0.1:$s3_proxy&region=us-east-1" \
    >"$work/$label.out" 2>"$work/$label.log" & pids+=($!)
  local spid=$!
  for _ in $(seq 600); do
    grep -q "NBD listening" "$work/$label.out" 2>/dev/null && break
    kill -0 "$spid" 2>/dev/null || { echo "latency.sh: server $label exited:" >&2; cat "$work/$label.log" >&2; exit 1; }
    sleep 0.1
  done
  grep -q "NBD listening" "$work/$label.out" || { echo "latency.sh: server $label did not start" >&2; exit 1; }
  "$bin" configure --profile "$label" --token-file <(sed -n '/shown only now:/{n;p;q}' "$work/$label.out") \
    --endpoint "$(sed -n 's/^Coffer API listening on \(http[^ ]*\).*/\1/p' "$work/$label.out" | head -1)" >/dev/null
  local disk uri
  disk=$("$bin" --profile "$label" disk create --name lat --size "$((bytes / 1048576))MiB" --zone local-a --query id)
  uri=$("$bin" --profile "$label" disk attach "$disk" --query uri)
  for r in $(seq "$ROUNDS"); do
    echo "== $label: round $r, $SIZE written and flushed" >&2
    qemu-img convert -n -f raw -O raw "$work/src.raw" "$uri"
    if grep -E "block I/O failed|write-back failed| ERROR " "$work/$label.log" >&2; then
      echo "latency.sh: server $label reported failed I/O (above): the figures are void" >&2; exit 1
    fi
    # Wait until the collector has emptied its queue (read directly from
    # PostgreSQL, not through the proxy) before the next round.
    python3 - "$PG/$db" <<'PY'
import subprocess, sys, time
url = sys.argv[1]
def sql(q):
    return subprocess.run(["psql", url, "-Atc", q], check=True, capture_output=True, text=True).stdout.strip()
# The before commit has no gc_objects table (format v1 only).
q = "SELECT (SELECT count(*) FROM gc_queue)" + (
    " + (SELECT count(*) FROM gc_objects)" if sql("SELECT to_regclass('gc_objects')") else "")
deadline = time.monotonic() + 900
while int(sql(q)) > 0:
    if time.monotonic() > deadline:
        sys.exit("latency.sh: the collector did not empty its queue in 15 minutes")
    time.sleep(0.02)
PY
  done
}
[ -n "$BEFORE_BIN" ] && measure before "$BEFORE_BIN"
measure after "$AFTER_BIN"
bench_finish

echo
bench_provenance "$SIZE disk, PostgreSQL + S3 (moto_server) each behind a proxy adding $DELAY_MS ms per round trip (measured: +$rtt ms), $ROUNDS rounds${BEFORE:+; before = commit $before_commit}"
echo
python3 - "$work" "$bytes" "$DELAY_MS" ${BEFORE_BIN:+before} after <<'PY'
import datetime, re, statistics, sys
work, size, delay, labels = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
def secs(v):
    m = re.fullmatch(r"([\d.]+)(ns|µs|us|ms|s)", v)
    return float(m[1]) * {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1}[m[2]]
chunks = size // (256 * 1024)
def ts(line):
    return datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
row = {}
for l in labels:
    commits, syncs, rounds = [], [], []
    for line in open(f"{work}/{l}.log", encoding="utf-8", errors="replace"):
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        if " committed" in line and (m := re.search(r"(?:chunks|entries)=(\d+)", line)) and int(m[1]) >= chunks // 2:
            commits.append(secs(re.search(r"commit=(\S+)", line)[1]))
            syncs.append(secs(re.search(r"sync=(\S+)", line)[1]))
            rounds.append([ts(line), 0, None])
        elif "garbage collected" in line and rounds and (n := int(re.search(r"objects=(\d+)", line)[1])) > 0:
            rounds[-1][1] += n
            rounds[-1][2] = ts(line)
    gc = [(n, end - t0) for t0, n, end in rounds if n > 0]
    rate = [n / t for n, t in gc]
    row[l] = (commits, syncs, rate, gc)
print(f"| {size >> 20} MiB flush ({chunks:,} chunks), services {delay} ms away | " + " | ".join(labels) + " |")
print("|:---|" + "---:|" * len(labels))
fmt = lambda xs, f: f(statistics.median(xs)) if xs else "n/a"
print("| chunk-map commit of the flush, median ms | " + " | ".join(fmt(row[l][0], lambda v: f"{v * 1e3:,.0f}") for l in labels) + " |")
print("| store sync of the flush, median ms | " + " | ".join(fmt(row[l][1], lambda v: f"{v * 1e3:,.1f}") for l in labels) + " |")
print("| flushes measured | " + " | ".join(str(len(row[l][0])) for l in labels) + " |")
print("| garbage collection, objects/s (median of rounds) | " + " | ".join(fmt(row[l][2], lambda v: f"{v:,.0f}") for l in labels) + " |")
print("| objects collected after each flush, and seconds | " + " | ".join("; ".join(f"{n:,} in {t:.2f}" for n, t in row[l][3]) or "n/a" for l in labels) + " |")
PY
