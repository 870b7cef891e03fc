#!/usr/bin/env bash
# Reading out a sparse disk, side by side in one run: a SIZE disk holding
# DATA of random data in 256 KiB pieces scattered over it, read out whole by
# `qemu-img convert` (which asks for block status and skips holes when the
# server offers it) from
#   (1) qemu-nbd serving the same sparse raw file, and
#   (2) Coffer (structured replies, base:allocation from the chunk map).
# `qemu-img map` of each is compared first: both must list the same data.
# hyperfine times each read-out after one warm-up.
#
# Output: markdown tables for docs/PERFORMANCE.md under one line naming this
# script and the commit measured (bench/lib.sh: a dirty tree is refused).
#
# Usage: bench/sparse_readout.sh [SIZE] [DATA]   (default 16G 64M, RUNS=5;
# needs hyperfine, qemu-img, qemu-nbd, qemu-io, python3)
set -euo pipefail
SIZE=${1:-16G}
DATA=${2:-64M}
RUNS=${RUNS:-5}
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_start sparse_readout.sh
bench_need "hyperfine qemu-utils python3" hyperfine qemu-img qemu-nbd qemu-io python3
bench_cargo_build
bench_workdir

bytes=$(numfmt --from=iec "${SIZE%B}")
data=$(numfmt --from=iec "${DATA%B}")
pieces=$((data / 262144))
# The same scattered 256 KiB pieces for both: every (bytes / pieces)-th
# 256 KiB-aligned offset.
stride=$(( (bytes / pieces) / 262144 * 262144 ))
cmds=$work/writes.qemu-io
for i in $(seq 0 $((pieces - 1))); do echo "write -P $((i % 250 + 1)) $((i * stride)) 256k"; done > "$cmds"
echo flush >> "$cmds"

echo "== $SIZE sparse raw file with $DATA written, served by qemu-nbd" >&2
qemu-img create -q -f raw "$work/sparse.raw" "$SIZE"
qemu-io -f raw "$work/sparse.raw" < "$cmds" > /dev/null
qemu-nbd -f raw -x sparse -b 127.0.0.1 -p 10951 -t -r "$work/sparse.raw" & pids+=($!)

echo "== the same in a Coffer disk" >&2
export HOME=$work/home XDG_CONFIG_HOME=$work/home/.config
mkdir -p "$HOME"
"$COFFER" serve --data-dir "$work/coffer" --root-key-file "$work/keys/root.key" \
  --listen 127.0.0.1:0 --nbd-listen 127.0.0.1:0 > "$work/serve.out" 2> "$work/serve.log" & pids+=($!)
for _ in $(seq 300); do grep -q "NBD listening" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
grep -q "NBD listening" "$work/serve.out" || { echo "coffer did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }
disk=$("$COFFER" disk create --name sparse --size "$((bytes / 1048576))MiB" --zone local-a --query id)
curi=$("$COFFER" disk attach "$disk" --query uri)
qemu-io -f raw "$curi" < "$cmds" > /dev/null
sleep 0.5
Q=nbd://127.0.0.1:10951/sparse

qemu-img map --output=json -f raw "$Q" > "$work/map-q.json"
qemu-img map --output=json -f raw "$curi" > "$work/map-c.json"
python3 - "$work/map-q.json" "$work/map-c.json" <<'PY'
import json, sys
def data(f):
    runs = []
    for e in json.load(open(f)):
        if e["data"]:
            if runs and runs[-1][1] == e["start"]:
                runs[-1][1] += e["length"]
            else:
                runs.append([e["start"], e["start"] + e["length"]])
    return runs
q, c = data(sys.argv[1]), data(sys.argv[2])
if q != c:
    sys.exit(f"qemu-img map differs: qemu-nbd {q[:3]}... coffer {c[:3]}...")
PY

hyperfine --runs "$RUNS" --warmup 1 --export-markdown "$work/read.md" --export-json "$work/read.json" \
  --prepare "rm -f $work/out.raw" \
  -n "read-out qemu-nbd raw" "qemu-img convert -f raw -O raw $Q $work/out.raw" \
  -n "read-out coffer"       "qemu-img convert -f raw -O raw $curi $work/out.raw" >&2
qemu-img convert -f raw -O raw "$curi" "$work/out.raw"
cmp "$work/sparse.raw" "$work/out.raw" || { echo "coffer read-out differs!" >&2; exit 1; }
if grep -E "block I/O failed| ERROR " "$work/serve.log" >&2; then
  echo "coffer reported failed I/O (above): the figures are void" >&2
  exit 1
fi
bench_finish

echo
bench_provenance "$SIZE disk holding $DATA in $pieces scattered 256 KiB pieces, qemu-img convert to a sparse file, $RUNS runs each after 1 warm-up"
echo
cat "$work/read.md"; echo
python3 - "$work/read.json" <<'PY'
import json, sys
r = {x["command"].split(" ", 1)[1]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
q, c = r["qemu-nbd raw"], r["coffer"]
print(f"coffer read-out: {c / q:.2f}x the time of qemu-nbd serving the sparse raw file (target <= 2x)")
PY
