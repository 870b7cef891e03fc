#!/usr/bin/env bash
# Side-by-side NBD throughput, measured in one run on this machine:
#   qemu-img convert of a random raw image INTO and OUT OF
#   (1) qemu-nbd serving a raw file            (no encryption: the ceiling)
#   (2) qemu-nbd serving a LUKS image          (the usual way to encrypt a disk)
#   (3) Coffer (AES-256-GCM, envelope encryption, chunk objects + metadata)
# Every system is written with the same image and read back to the same
# tmpfs file; each write ends with the flush qemu-img issues, so data is
# durable on all three. hyperfine times every command; the ratios printed at
# the end are from this run only. Also prints Coffer's peak RSS and the CPU's
# AES-256-GCM limit from `openssl speed`.
#
# Usage: bench/nbd_throughput.sh [SIZE]   (default 1G; needs hyperfine,
# qemu-img, qemu-nbd, openssl; run from the repository root)
set -euo pipefail
SIZE=${1:-1G}
RUNS=${RUNS:-3}
cd "$(dirname "$0")/.."
for t in hyperfine qemu-img qemu-nbd openssl; do
  command -v $t >/dev/null || { echo "need $t (apt-get install hyperfine qemu-utils openssl)" >&2; exit 1; }
done
cargo build --release --locked -p coffer-cli >&2
COFFER=$PWD/target/release/coffer
work=$(mktemp -d /tmp/coffer-bench.XXXXXX)
out=/dev/shm/coffer-bench-out.$$
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work" "$out"; }
trap cleanup EXIT

echo "== preparing a $SIZE random image" >&2
head -c "$SIZE" /dev/urandom > "$work/src.raw"

# (1) qemu-nbd raw
qemu-img create -q -f raw "$work/plain.img" "$SIZE"
qemu-nbd -f raw -x plain -b 127.0.0.1 -p 10931 -t --cache=writeback "$work/plain.img" & pids+=($!)
# (2) qemu-nbd LUKS (aes-256-xts, the LUKS default)
qemu-img create -q -f luks --object secret,id=sec0,data=benchpass -o key-secret=sec0 "$work/luks.img" "$SIZE"
qemu-nbd --object secret,id=sec0,data=benchpass --image-opts "driver=luks,key-secret=sec0,file.filename=$work/luks.img" \
  -x luks -b 127.0.0.1 -p 10932 -t --cache=writeback & pids+=($!)
# (3) Coffer
export HOME=$work/home XDG_CONFIG_HOME=$work/home/.config
mkdir -p "$HOME"
"$COFFER" serve --data-dir "$work/coffer" --root-key-file "$work/keys/root.key" \
  --listen 127.0.0.1:0 --nbd-listen 127.0.0.1:0 > "$work/serve.out" 2> "$work/serve.log" & pids+=($!)
cpid=$!
for _ in $(seq 100); do grep -q "NBD listening" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
bytes=$(numfmt --from=iec "${SIZE%B}")
disk=$("$COFFER" disk create --name bench --size "$((bytes / 1048576))MiB" --zone local-a --query id)
curi=$("$COFFER" disk attach "$disk" --query uri)
sleep 0.5

P=nbd://127.0.0.1:10931/plain
L=nbd://127.0.0.1:10932/luks
hyperfine --runs "$RUNS" --warmup 2 --export-markdown "$work/write.md" --export-json "$work/write.json" \
  -n "write qemu-nbd raw"  "qemu-img convert -n -f raw -O raw $work/src.raw $P" \
  -n "write qemu-nbd LUKS" "qemu-img convert -n -f raw -O raw $work/src.raw $L" \
  -n "write coffer"        "qemu-img convert -n -f raw -O raw $work/src.raw $curi" >&2
hyperfine --runs "$RUNS" --warmup 2 --export-markdown "$work/read.md" --export-json "$work/read.json" \
  -n "read qemu-nbd raw"  "qemu-img convert -f raw -O raw $P $out" \
  -n "read qemu-nbd LUKS" "qemu-img convert -f raw -O raw $L $out" \
  -n "read coffer"        "qemu-img convert -f raw -O raw $curi $out" >&2
cmp "$work/src.raw" "$out" || { echo "coffer read back differs!" >&2; exit 1; }

rss=$(awk '/VmHWM/ {print $2}' /proc/$cpid/status)
objects=$(du -sb "$work/coffer/objects" | cut -f1)
echo
echo "## NBD throughput, $SIZE, qemu-img convert, $RUNS runs each ($(date -u +%F), $(nproc) cores)"
echo
cat "$work/write.md"; echo; cat "$work/read.md"
python3 - "$work/write.json" "$work/read.json" <<'PY'
import json, sys
w = {r["command"].split(" ", 1)[1]: r["mean"] for r in json.load(open(sys.argv[1]))["results"]}
r = {r["command"].split(" ", 1)[1]: r["mean"] for r in json.load(open(sys.argv[2]))["results"]}
tot = {k: w[k] + r[k] for k in w}
raw, luks, cof = tot["qemu-nbd raw"], tot["qemu-nbd LUKS"], tot["coffer"]
print(f"write+read seconds: qemu-nbd raw {raw:.2f}, qemu-nbd LUKS {luks:.2f}, coffer {cof:.2f}")
print(f"coffer vs qemu-nbd LUKS: {luks / cof:.2f}x as fast (target >= 2x)")
print(f"coffer vs qemu-nbd raw:  {100 * raw / cof:.0f}% of its speed (target >= 80%)")
PY
echo "coffer peak RSS: $((rss / 1024)) MiB; objects stored: $((objects / 1048576)) MiB"
echo
echo "AES-256-GCM limit of this CPU (openssl speed, 16 KiB blocks, one core):"
openssl speed -seconds 1 -bytes 16384 -evp aes-256-gcm 2>/dev/null | tail -1
