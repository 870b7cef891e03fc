#!/usr/bin/env bash
# Side-by-side NBD throughput, measured in one run on this machine:
#   qemu-img convert of a random raw image INTO and OUT OF
#   (1) qemu-nbd serving a raw file            (no encryption: the ceiling)
#   (2) qemu-nbd serving a LUKS image          (the usual way to encrypt a disk)
#   (3) Coffer (AES-256-GCM, envelope encryption, chunk objects + metadata)
# Every system is written with the same image and read back to the same
# tmpfs file; each write ends with the flush qemu-img issues, so data is
# durable on all three. The first write into each fresh target is timed on
# its own (nothing allocated yet: the "cold" write); then hyperfine times
# every command after two warm-ups; the ratios printed are from this run
# only. Also printed, all from this run: Coffer's flushes as its debug log
# records them (store sync and chunk-map commit per flush, seal+put rate),
# its peak RSS and stored bytes, the CPU's AES-256-GCM rate from `openssl
# speed`, and how fast this filesystem takes new files against overwrites
# of existing ones (page cache, no sync), one file per 256 KiB chunk.
#
# Output: markdown tables for docs/PERFORMANCE.md under one line naming this
# script and the commit measured (bench/lib.sh: a dirty tree is refused).
#
# Usage: bench/nbd_throughput.sh [SIZE]   (default 1G, RUNS=3; needs
# hyperfine, qemu-img, qemu-nbd, openssl, python3; ~3 minutes after the
# build on 2 cores)
set -euo pipefail
SIZE=${1:-1G}
RUNS=${RUNS:-3}
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_start nbd_throughput.sh
bench_need "hyperfine qemu-utils openssl python3" hyperfine qemu-img qemu-nbd openssl python3
bench_cargo_build
bench_workdir

bytes=$(numfmt --from=iec "${SIZE%B}")
echo "== preparing a $SIZE random image" >&2
head -c "$bytes" /dev/urandom > "$work/src.raw"

# (1) qemu-nbd raw
qemu-img create -q -f raw "$work/plain.img" "$SIZE"
qemu-nbd -f raw -x plain -b 127.0.0.1 -p 10931 -t --cache=writeback "$work/plain.img" & pids+=($!)
# (2) qemu-nbd LUKS (aes-256-xts, the LUKS default)
qemu-img create -q -f luks --object secret,id=sec0,data=benchpass -o key-secret=sec0 "$work/luks.img" "$SIZE"
qemu-nbd --object secret,id=sec0,data=benchpass --image-opts "driver=luks,key-secret=sec0,file.filename=$work/luks.img" \
  -x luks -b 127.0.0.1 -p 10932 -t --cache=writeback & pids+=($!)
# (3) Coffer, logging its write-back and flushes (coffer_volume=debug)
export HOME=$work/home XDG_CONFIG_HOME=$work/home/.config
mkdir -p "$HOME"
COFFER_LOG=info,coffer_volume=debug "$COFFER" serve --data-dir "$work/coffer" --root-key-file "$work/keys/root.key" \
  --listen 127.0.0.1:0 --nbd-listen 127.0.0.1:0 > "$work/serve.out" 2> "$work/serve.log" & pids+=($!)
cpid=$!
for _ in $(seq 300); do grep -q "NBD listening" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
grep -q "NBD listening" "$work/serve.out" || { echo "coffer did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }
disk=$("$COFFER" disk create --name bench --size "$((bytes / 1048576))MiB" --zone local-a --query id)
curi=$("$COFFER" disk attach "$disk" --query uri)
sleep 0.5

P=nbd://127.0.0.1:10931/plain
L=nbd://127.0.0.1:10932/luks
# check_log: qemu-img convert exits 0 even if its final flush fails, so a
# failed I/O shows only in the server's log.
check_log() {
  if grep -E "block I/O failed|write-back failed| ERROR " "$work/serve.log" >&2; then
    echo "coffer reported failed I/O (above): the figures are void" >&2
    exit 1
  fi
}

echo "== first write into each fresh target" >&2
cold() {
  local t0=$EPOCHREALTIME
  qemu-img convert -n -f raw -O raw "$work/src.raw" "$1"
  python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$t0" "$EPOCHREALTIME"
}
cold_raw=$(cold "$P")
cold_luks=$(cold "$L")
cold_coffer=$(cold "$curi")
check_log

hyperfine --runs "$RUNS" --warmup 2 --export-markdown "$work/write.md" --export-json "$work/write.json" \
  -n "write qemu-nbd raw"  "qemu-img convert -n -f raw -O raw $work/src.raw $P" \
  -n "write qemu-nbd LUKS" "qemu-img convert -n -f raw -O raw $work/src.raw $L" \
  -n "write coffer"        "qemu-img convert -n -f raw -O raw $work/src.raw $curi" >&2
check_log
hyperfine --runs "$RUNS" --warmup 2 --export-markdown "$work/read.md" --export-json "$work/read.json" \
  -n "read qemu-nbd raw"  "qemu-img convert -f raw -O raw $P $out" \
  -n "read qemu-nbd LUKS" "qemu-img convert -f raw -O raw $L $out" \
  -n "read coffer"        "qemu-img convert -f raw -O raw $curi $out" >&2
check_log
cmp "$work/src.raw" "$out" || { echo "coffer read back differs!" >&2; exit 1; }

rss=$(awk '/VmHWM/ {print $2}' /proc/$cpid/status)
objects=$(du -sb "$work/coffer/objects" | cut -f1)
aes=$(openssl speed -seconds 1 -bytes 16384 -evp aes-256-gcm 2>/dev/null | tail -1 | awk '{sub(/k$/, "", $NF); print $NF * 1000}')

# New files against overwrites, on the filesystem of Coffer's store: one
# 256 KiB file per chunk of SIZE, page cache only (no fsync), as the local
# store writes its objects before the flush's syncfs.
echo "== new files vs overwrites" >&2
python3 - "$work/alloc" "$bytes" >"$work/alloc.txt" <<'PY'
import os, sys, time
d, size = sys.argv[1], int(sys.argv[2])
os.makedirs(d)
chunk = os.urandom(256 * 1024)
n = size // len(chunk)
def run(flags):
    t = time.monotonic()
    for i in range(n):
        fd = os.open(f"{d}/{i}", flags, 0o600)
        os.write(fd, chunk)
        os.close(fd)
    return size / (time.monotonic() - t) / 1e9
new = run(os.O_WRONLY | os.O_CREAT | os.O_EXCL)
over = run(os.O_WRONLY)
print(f"{n} {new:.2f} {over:.2f}")
PY
read -r alloc_n alloc_new alloc_over <"$work/alloc.txt"
bench_finish

echo
bench_provenance "$SIZE random image, qemu-img convert, $RUNS runs each after 2 warm-ups"
echo
cat "$work/write.md"; echo; cat "$work/read.md"; echo
python3 - "$work" "$cold_raw" "$cold_luks" "$cold_coffer" "$bytes" "$rss" "$objects" "$aes" \
  "$alloc_n" "$alloc_new" "$alloc_over" <<'PY'
import json, re, statistics, sys
work, cold_raw, cold_luks, cold_coffer = sys.argv[1], *map(float, sys.argv[2:5])
size, rss_kib, objects, aes = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8])
alloc_n, alloc_new, alloc_over = int(sys.argv[9]), float(sys.argv[10]), float(sys.argv[11])
w = {r["command"].split(" ", 1)[1]: r["mean"] for r in json.load(open(f"{work}/write.json"))["results"]}
r = {r["command"].split(" ", 1)[1]: r["mean"] for r in json.load(open(f"{work}/read.json"))["results"]}
tot = {k: w[k] + r[k] for k in w}
raw, luks, cof = tot["qemu-nbd raw"], tot["qemu-nbd LUKS"], tot["coffer"]
print("| seconds | qemu-nbd raw | qemu-nbd LUKS | coffer |")
print("|:---|---:|---:|---:|")
print(f"| write + read (means above) | {raw:.2f} | {luks:.2f} | {cof:.2f} |")
print(f"| first write into the fresh target (once, before the warm-ups) | {cold_raw:.2f} | {cold_luks:.2f} | {cold_coffer:.2f} |")
print()
print(f"coffer vs qemu-nbd LUKS, write + read: {luks / cof:.2f}x as fast (target >= 2x)")
print(f"coffer vs qemu-nbd raw, write + read: {100 * raw / cof:.0f}% of its speed (target >= 80%)")
print()

def secs(v):
    m = re.fullmatch(r"([\d.]+)(ns|µs|us|ms|s)", v)
    return float(m[1]) * {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1}[m[2]]
put_s, put_chunks, flushes = 0.0, 0, []
for line in open(f"{work}/serve.log", encoding="utf-8", errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    if "sealed and put" in line:
        put_s += secs(re.search(r"elapsed=(\S+)", line)[1])
        put_chunks += int(re.search(r"chunks=(\d+)", line)[1])
    elif " committed " in line:
        m = re.search(r"(?:entries|chunks)=(\d+) sync=(\S+) commit=(\S+)", line)
        flushes.append((int(m[1]), secs(m[2]), secs(m[3])))
full = [f for f in flushes if f[0] == size // (256 * 1024)]
med = lambda i: f"{1000 * statistics.median(f[i] for f in full):.0f} ms" if full else "-"
print("| coffer server, whole run (cold write, warm-ups and timed runs) | |")
print("|:---|---:|")
print(f"| flushes that committed a whole image ({size // (256 * 1024)} chunks) | {len(full)} of {len(flushes)} flushes |")
print(f"| store sync (`syncfs`) per such flush, median | {med(1)} |")
print(f"| chunk-map commit (one transaction) per such flush, median | {med(2)} |")
print(f"| sealed and put (write-back, 256 KiB chunks) | {put_chunks} chunks in {put_s:.2f} s = {put_chunks / 4 / max(put_s, 1e-9):.0f} MiB/s |")
print(f"| peak RSS | {rss_kib // 1024} MiB |")
print(f"| objects directory at the end (live objects and reusable files of deleted ones) | {objects // 1048576} MiB |")
print()
print("| limit of this machine | GB/s |")
print("|:---|---:|")
print(f"| AES-256-GCM, `openssl speed -evp aes-256-gcm`, 16 KiB blocks, one core | {aes / 1e9:.2f} |")
print(f"| {alloc_n} new 256 KiB files written, page cache, no sync | {alloc_new:.2f} |")
print(f"| the same {alloc_n} files overwritten | {alloc_over:.2f} |")
PY
