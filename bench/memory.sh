#!/usr/bin/env bash
# Peak memory of one Coffer server (embedded defaults) with DISKS busy disks
# at once: each disk of SIZE is filled with 1 MiB writes, then every disk
# gets 4 KiB random writes at QD 32 and then 1 MiB sequential writes at
# QD 8, all disks at the same time through fio's nbd engine (one fio job
# per disk), each phase RUNTIME seconds and ended by a flush. The server's
# peak RSS (VmHWM) is read from /proc after each phase; the first row is one
# busy disk, the second DISKS of them (default 16). Targets (issue 15):
# under 512 MiB with one busy disk, under 1 GiB with 16.
#
# Output: a markdown table for docs/PERFORMANCE.md under one line naming this
# script and the commit measured (bench/lib.sh: a dirty tree is refused).
#
# Usage: bench/memory.sh [SIZE]   (SIZE 1G per disk, DISKS=16, RUNTIME=30;
# needs fio, python3; SIZE x DISKS of free space in /tmp).
set -euo pipefail
SIZE=${1:-1G}
DISKS=${DISKS:-16}
RUNTIME=${RUNTIME:-30}
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_start memory.sh
bench_need "fio python3" fio python3
bench_cargo_build
bench_workdir
bytes=$(numfmt --from=iec "${SIZE%B}")
export HOME=$work/home XDG_CONFIG_HOME=$work/home/.config
mkdir -p "$HOME"

# run N: a fresh server with N disks; prints the peak RSS in KiB after the
# fill, the random phase and the sequential phase.
run() {
  local n=$1 d=$work/s$1
  "$COFFER" serve --data-dir "$d" --root-key-file "$d.key" --listen 127.0.0.1:0 \
    --nbd-listen 127.0.0.1:0 --no-profile >"$d.out" 2>"$d.log" & pids+=($!)
  local spid=$!
  for _ in $(seq 300); do grep -q "NBD listening" "$d.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "NBD listening" "$d.out" || { echo "memory.sh: the server did not start:" >&2; cat "$d.log" >&2; exit 1; }
  "$COFFER" configure --profile "s$n" --token-file <(sed -n '/shown only now:/{n;p;q}' "$d.out") \
    --endpoint "$(sed -n 's/^Coffer API listening on \(http[^ ]*\).*/\1/p' "$d.out" | head -1)" >/dev/null
  local uris=() i disk
  for i in $(seq "$n"); do
    disk=$("$COFFER" --profile "s$n" disk create --name "m$i" --size "$((bytes / 1048576))MiB" --zone local-a --query id)
    uris+=("$("$COFFER" --profile "s$n" disk attach "$disk" --query uri)")
  done
  # phase NAME fio-options...: one job per disk, all at once.
  phase() {
    local name=$1; shift
    local jobs=() u
    for u in "${uris[@]}"; do jobs+=(--name="$name" --uri="$u"); done
    echo "== $n disk(s): $name" >&2
    if ! fio --ioengine=nbd --size="$bytes" --end_fsync=1 "$@" "${jobs[@]}" --output-format=terse >/dev/null ||
      grep -E "block I/O failed|write-back failed| ERROR " "$d.log" >&2; then
      cp "$d.log" /tmp/coffer-memory-bench.log
      echo "memory.sh: fio or the server failed (server log kept in /tmp/coffer-memory-bench.log)" >&2
      exit 1
    fi
    awk '/VmHWM/ {printf "%s ", $2}' "/proc/$spid/status"
  }
  phase fill --rw=write --bs=1M --iodepth=8
  phase random --rw=randwrite --bs=4k --iodepth=32 --time_based --runtime="$RUNTIME"
  phase sequential --rw=write --bs=1M --iodepth=8 --time_based --runtime="$RUNTIME"
  echo
  kill "$spid"; wait "$spid" 2>/dev/null || true
  rm -rf "$d"
}
one=$(run 1)
bench_finish
fmt() { local a b c; read -r a b c <<<"$2"; echo "| $1 | $((a / 1024)) | $((b / 1024)) | $((c / 1024)) |"; }
echo
bench_provenance "$SIZE disks, embedded defaults, fio nbd engine, each busy phase ${RUNTIME} s"
echo
echo "| peak RSS of the server, MiB | after the fill | after 4 KiB random writes QD 32 | after 1 MiB sequential writes QD 8 |"
echo "|:---|---:|---:|---:|"
fmt "1 busy disk" "$one"
many=$(run "$DISKS")
bench_finish
fmt "$DISKS busy disks" "$many"
