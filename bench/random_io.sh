#!/usr/bin/env bash
# Small random and large sequential I/O, side by side in one run, through
# fio's nbd engine (libnbd; Debian's fio) and cross-checked with
# `qemu-img bench`, against four servers of one SIZE disk each:
#   (1) raw       qemu-nbd serving a raw file (no encryption: the ceiling)
#   (2) luks      qemu-nbd serving a LUKS image (aes-256-xts, the usual way
#                 to encrypt a disk)
#   (3) embedded  Coffer on its embedded defaults (SQLite + local store)
#   (4) pg-local  Coffer with PostgreSQL metadata + local store
# Every disk is first filled whole with 1 MiB sequential writes (the
# prefill, ended by a flush). Then, for each server in turn, one fio job at a
# time, each time-based for RUNTIME seconds (default 30):
#   4 KiB random write QD 32, 4 KiB random read QD 32,
#   4 KiB random write QD 1,  4 KiB random read QD 1,
#   1 MiB sequential write QD 8, 1 MiB sequential read QD 8.
# Write jobs end with a flush (end_fsync), so what they count is durable on
# every server. Random jobs run over the whole SIZE with fio's default
# uniform random offsets (4 KiB aligned).
# The servers take turns job by job (every server runs a job before the
# next job starts), and with ROUNDS=N (default 1) the whole series runs N
# times, the servers' order rotated each round: this VM's speed drifts by
# up to 1.5x over minutes, and turns keep a ratio from spanning that drift.
# A table cell is the median of the rounds, and with ROUNDS > 1 a ratio
# cell also gives the lowest and highest ratio of one round. JOBS (names
# below) and SERVERS narrow a run, e.g. JOBS=randwrite32 SERVERS="luks
# pg-local" ROUNDS=5 for one target alone. Then `qemu-img bench` does 4 KiB
# writes and reads at QD 32 with a stride that scatters them over the disk
# (it has no random mode), and the peak RSS of every server is read from
# /proc (VmHWM) at the end.
#
# Output: markdown tables for docs/PERFORMANCE.md under one line naming this
# script and the commit measured (bench/lib.sh: a dirty tree is refused).
#
# Usage: bench/random_io.sh [SIZE]   (default 1G; RUNTIME=30, ROUNDS=1,
# JOBS="randwrite32 randread32 randwrite1 randread1 seqwrite8 seqread8",
# SERVERS="raw luks embedded pg-local"; the full run is 4 x 6 x RUNTIME s
# plus prefills: ~15 minutes after the build on 2 cores). qemu-img bench
# runs only when every job does.
# Needs fio, qemu-img, qemu-nbd, psql and a PostgreSQL server on which this
# user may create databases (COFFER_BENCH_PG, default
# postgres://postgres@127.0.0.1:5432), python3.
set -euo pipefail
SIZE=${1:-1G}
RUNTIME=${RUNTIME:-30}
ROUNDS=${ROUNDS:-1}
all_jobs="randwrite32 randread32 randwrite1 randread1 seqwrite8 seqread8"
JOBS=${JOBS:-$all_jobs}
read -ra servers <<<"${SERVERS:-raw luks embedded pg-local}"
for j in $JOBS; do
  case " $all_jobs " in *" $j "*) ;; *) echo "random_io.sh: unknown job $j (jobs: $all_jobs)" >&2; exit 1 ;; esac
done
for s in "${servers[@]}"; do
  case $s in raw|luks|embedded|pg-local) ;; *) echo "random_io.sh: unknown server $s (raw luks embedded pg-local)" >&2; exit 1 ;; esac
done
case " ${servers[*]} " in *" luks "*) ;; *) echo "random_io.sh: SERVERS must include luks (the ratios' base)" >&2; exit 1 ;; esac
PG=${COFFER_BENCH_PG:-postgres://postgres@127.0.0.1:5432}
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_start random_io.sh
bench_need "fio qemu-utils postgresql-client python3" fio qemu-img qemu-nbd psql python3
psql "$PG/postgres" -Atqc 'SELECT 1' >/dev/null ||
  { echo "random_io.sh: cannot reach PostgreSQL at $PG (set COFFER_BENCH_PG)" >&2; exit 1; }
bench_cargo_build
bench_workdir
bytes=$(numfmt --from=iec "${SIZE%B}")
db=coffer_bench_rand_$$
trap 'bench_cleanup; psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT

declare -A uri pid
qemu-img create -q -f raw "$work/plain.img" "$SIZE"
qemu-nbd -f raw -x plain -b 127.0.0.1 -p 10961 -t --cache=writeback "$work/plain.img" & pids+=($!)
pid[raw]=$!; uri[raw]=nbd://127.0.0.1:10961/plain
qemu-img create -q -f luks --object secret,id=sec0,data=benchpass -o key-secret=sec0 "$work/luks.img" "$SIZE"
qemu-nbd --object secret,id=sec0,data=benchpass --image-opts "driver=luks,key-secret=sec0,file.filename=$work/luks.img" \
  -x luks -b 127.0.0.1 -p 10962 -t --cache=writeback & pids+=($!)
pid[luks]=$!; uri[luks]=nbd://127.0.0.1:10962/luks

export HOME=$work/home XDG_CONFIG_HOME=$work/home/.config
mkdir -p "$HOME"
# coffer SERVER [serve options...]: a server with its own data dir and a CLI
# profile named SERVER; one disk of SIZE, attached; its URI in uri[SERVER].
coffer() {
  local s=$1; shift
  "$COFFER" serve --data-dir "$work/$s" --root-key-file "$work/keys/$s.key" --listen 127.0.0.1:0 \
    --nbd-listen 127.0.0.1:0 --no-profile "$@" >"$work/$s.out" 2>"$work/$s.log" & pids+=($!)
  pid[$s]=$!
  for _ in $(seq 300); do grep -q "NBD listening" "$work/$s.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "NBD listening" "$work/$s.out" || { echo "random_io.sh: server $s did not start:" >&2; cat "$work/$s.log" >&2; exit 1; }
  "$COFFER" configure --profile "$s" --token-file <(sed -n '/shown only now:/{n;p;q}' "$work/$s.out") \
    --endpoint "$(sed -n 's/^Coffer API listening on \(http[^ ]*\).*/\1/p' "$work/$s.out" | head -1)" >/dev/null
  local disk
  disk=$("$COFFER" --profile "$s" disk create --name bench --size "$((bytes / 1048576))MiB" --zone local-a --query id)
  uri[$s]=$("$COFFER" --profile "$s" disk attach "$disk" --query uri)
}
has() { case " ${servers[*]} " in *" $1 "*) return 0 ;; esac; return 1; }
if has embedded; then coffer embedded; fi
if has pg-local; then
  psql "$PG/postgres" -qc "CREATE DATABASE $db" >/dev/null
  coffer pg-local --metadata "$PG/$db"
fi
sleep 0.5

# check_log: fail if a Coffer server logged failed I/O (fio would count a
# failed write-back behind an acknowledged write as done).
check_log() {
  local s
  for s in embedded pg-local; do
    has "$s" || continue
    if grep -E "block I/O failed|write-back failed| ERROR " "$work/$s.log" >&2; then
      echo "random_io.sh: server $s reported failed I/O (above): the figures are void" >&2
      exit 1
    fi
  done
}

# job NAME SERVER ROUND fio-options...: one fio job, its JSON kept as
# NAME.SERVER.ROUND.json.
job() {
  local name=$1 s=$2 r=$3; shift 3
  echo "== $name on $s (round $r)" >&2
  fio --name="$name" --ioengine=nbd --uri="${uri[$s]}" --size="$bytes" --output-format=json \
    --output="$work/$name.$s.$r.json" "$@" >/dev/null
  check_log
}
for s in "${servers[@]}"; do
  job prefill "$s" 1 --rw=write --bs=1M --iodepth=8 --end_fsync=1
done
declare -A opts=(
  [randwrite32]="--rw=randwrite --bs=4k --iodepth=32 --end_fsync=1"
  [randread32]="--rw=randread --bs=4k --iodepth=32"
  [randwrite1]="--rw=randwrite --bs=4k --iodepth=1 --end_fsync=1"
  [randread1]="--rw=randread --bs=4k --iodepth=1"
  [seqwrite8]="--rw=write --bs=1M --iodepth=8 --end_fsync=1"
  [seqread8]="--rw=read --bs=1M --iodepth=8"
)
for r in $(seq "$ROUNDS"); do
  # Round r starts with server r-1 (mod the count): none is always first.
  order=("${servers[@]:$(((r - 1) % ${#servers[@]}))}" "${servers[@]:0:$(((r - 1) % ${#servers[@]}))}")
  for j in $JOBS; do
    for s in "${order[@]}"; do
      # shellcheck disable=SC2086 # opts are words
      job "$j" "$s" "$r" ${opts[$j]} --time_based --runtime="$RUNTIME"
    done
  done
done

# qemu-img bench: 4 KiB at QD 32, each request 1 MiB + 4 KiB past the last,
# so 131,072 requests visit every 1 MiB of a 1 GiB disk at a different 4 KiB
# offset; writes end with a flush.
count=$((bytes / 8192))
qib=0
[ "$JOBS" = "$all_jobs" ] && [ "${#servers[@]}" -eq 4 ] && qib=1
for s in "${servers[@]}"; do
  [ "$qib" = 1 ] || break
  for mode in write read; do
    echo "== qemu-img bench $mode on $s" >&2
    flag=; [ "$mode" = write ] && flag=-w
    qemu-img bench -f raw -c "$count" -d 32 -s 4096 -S 1052672 $flag "${uri[$s]}" 2>&1 |
      sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p' >"$work/qib.$mode.$s"
  done
done
check_log
for s in "${servers[@]}"; do awk '/VmHWM/ {print $2}' "/proc/${pid[$s]}/status" >"$work/rss.$s"; done
# What each server stores for its one disk now (the disk was written over
# and over: partly dead segments not yet compacted or collected count too).
du -sb "$work/plain.img" | cut -f1 >"$work/stored.raw"
du -sb "$work/luks.img" | cut -f1 >"$work/stored.luks"
for s in embedded pg-local; do has "$s" || continue; du -sb "$work/$s/objects" | cut -f1 >"$work/stored.$s"; done
bench_finish

echo
bench_provenance "$SIZE disk, each fio job ${RUNTIME} s after a whole-disk 1 MiB prefill, servers taking turns per job, $ROUNDS round(s), fio $(fio --version) nbd engine"
echo
python3 - "$work" "$count" "$ROUNDS" "$JOBS" "$qib" "${servers[@]}" <<'PY'
import json, statistics, sys
work, count, rounds, jobs, qib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(), sys.argv[5] == "1"
servers = sys.argv[6:]
coffers = [s for s in ("embedded", "pg-local") if s in servers]
def res(name, s, r):
    j = json.load(open(f"{work}/{name}.{s}.{r}.json"))["jobs"][0]
    return j["write"] if j["write"]["io_bytes"] > 0 else j["read"]
rows = [
    ("4 KiB random write, QD 32: IOPS", "randwrite32", lambda r: r["iops"], "{:,.0f}"),
    ("4 KiB random read, QD 32: IOPS", "randread32", lambda r: r["iops"], "{:,.0f}"),
    ("4 KiB random write, QD 1: mean latency µs", "randwrite1", lambda r: r["clat_ns"]["mean"] / 1e3, "{:,.0f}"),
    ("4 KiB random write, QD 1: p99 latency µs", "randwrite1", lambda r: r["clat_ns"]["percentile"]["99.000000"] / 1e3, "{:,.0f}"),
    ("4 KiB random read, QD 1: mean latency µs", "randread1", lambda r: r["clat_ns"]["mean"] / 1e3, "{:,.0f}"),
    ("4 KiB random read, QD 1: p99 latency µs", "randread1", lambda r: r["clat_ns"]["percentile"]["99.000000"] / 1e3, "{:,.0f}"),
    ("1 MiB sequential write, QD 8: MB/s", "seqwrite8", lambda r: r["bw_bytes"] / 1e6, "{:,.0f}"),
    ("1 MiB sequential read, QD 8: MB/s", "seqread8", lambda r: r["bw_bytes"] / 1e6, "{:,.0f}"),
    ("prefill, 1 MiB sequential write QD 8 + flush: MB/s", "prefill", lambda r: r["bw_bytes"] / 1e6, "{:,.0f}"),
]
heads = "".join(f" {c} / luks |" for c in coffers)
print("| fio, nbd engine | " + " | ".join(servers) + " |" + heads)
print("|:---|" + "---:|" * (len(servers) + len(coffers)))
for label, name, f, fmt in rows:
    if name != "prefill" and name not in jobs:
        continue
    n = 1 if name == "prefill" else rounds
    per = {s: [f(res(name, s, r)) for r in range(1, n + 1)] for s in servers}
    v = {s: statistics.median(per[s]) for s in servers}
    cells = []
    for c in coffers:
        cell = f"{v[c] / v['luks']:.2f}x"
        if n > 1:
            ratios = [a / b for a, b in zip(per[c], per["luks"])]
            cell += f" ({min(ratios):.2f}-{max(ratios):.2f})"
        cells.append(cell)
    print(f"| {label} | " + " | ".join(fmt.format(v[s]) for s in servers) + " | " + " | ".join(cells) + " |")
print()
if qib:
    print("| qemu-img bench, 4 KiB QD 32, strided | " + " | ".join(servers) + " |" + heads)
    print("|:---|" + "---:|" * (len(servers) + len(coffers)))
    for mode in ("write", "read"):
        v = {s: count / float(open(f"{work}/qib.{mode}.{s}").read()) for s in servers}
        print(f"| {mode}: IOPS ({count:,} requests) | " + " | ".join(f"{v[s]:,.0f}" for s in servers)
              + " | " + " | ".join(f"{v[c] / v['luks']:.2f}x" for c in coffers) + " |")
    print()
rss = {s: int(open(f"{work}/rss.{s}").read()) / 1024 for s in servers}
stored = {s: int(open(f"{work}/stored.{s}").read()) / 2**20 for s in servers}
print("| at the end of the run, MiB | " + " | ".join(servers) + " |")
print("|:---|" + "---:|" * len(servers))
print("| peak RSS (VmHWM) | " + " | ".join(f"{rss[s]:,.0f}" for s in servers) + " |")
print("| stored for the disk (image file; Coffer's objects) | " + " | ".join(f"{stored[s]:,.0f}" for s in servers) + " |")
PY
