#!/usr/bin/env bash
# NBD over TLS beside plaintext, measured in one run on this machine:
# qemu-img convert of a random raw image INTO and OUT OF
#   (1) Coffer serving NBD in plaintext (loopback)
#   (2) Coffer serving NBD over TLS (`--tls`: NBD_OPT_STARTTLS, rustls,
#       a certificate from the deployment CA; qemu's GnuTLS client)
#   (3) qemu-nbd serving a raw file in plaintext, and
#   (4) the same over TLS (`--tls-creds`), for TLS's cost in another server.
# Both Coffer servers are the same binary with the same defaults; each write
# ends with the flush qemu-img issues. hyperfine times every command after
# two warm-ups; the ratios printed are from this run only.
#
# Output: markdown tables for docs/PERFORMANCE.md under one line naming this
# script and the commit measured (bench/lib.sh: a dirty tree is refused).
#
# Usage: bench/nbd_tls.sh [SIZE]   (default 1G, RUNS=3; needs hyperfine,
# qemu-img, qemu-nbd, openssl, python3; ~3 minutes after the build on 2 cores)
set -euo pipefail
SIZE=${1:-1G}
RUNS=${RUNS:-3}
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_start nbd_tls.sh
bench_need "hyperfine qemu-utils openssl python3" hyperfine qemu-img qemu-nbd openssl python3
bench_cargo_build
bench_workdir

bytes=$(numfmt --from=iec "${SIZE%B}")
echo "== preparing a $SIZE random image" >&2
head -c "$bytes" /dev/urandom > "$work/src.raw"

# start_coffer NAME [ARGS...]: a server with its own data dir and CLI home;
# prints the attach URI of a fresh disk of SIZE.
start_coffer() {
  local name=$1; shift
  local home=$work/$name-home
  mkdir -p "$home"
  HOME=$home XDG_CONFIG_HOME=$home/.config "$COFFER" serve --data-dir "$work/$name" \
    --root-key-file "$work/$name-keys/root.key" --listen 127.0.0.1:0 --nbd-listen 127.0.0.1:0 "$@" \
    > "$work/$name.out" 2> "$work/$name.log" & pids+=($!)
  for _ in $(seq 300); do grep -q "NBD listening" "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "NBD listening" "$work/$name.out" || { echo "coffer ($name) did not start:" >&2; cat "$work/$name.log" >&2; exit 1; }
  local disk
  disk=$(HOME=$home XDG_CONFIG_HOME=$home/.config "$COFFER" disk create --name bench --size "$((bytes / 1048576))MiB" --zone local-a --query id)
  HOME=$home XDG_CONFIG_HOME=$home/.config "$COFFER" disk attach "$disk" --output json > "$work/$name.attach.json"
}
start_coffer plain
start_coffer tls --tls
plain_uri=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["uri"])' "$work/plain.attach.json")
tls_opts=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["image_opts"])' "$work/tls.attach.json")
mkdir -p "$work/client"
cp "$work/tls/tls/ca.pem" "$work/client/ca-cert.pem"
ctls="--object tls-creds-x509,id=tls0,dir=$work/client,endpoint=client"

# qemu-nbd plain and over TLS: a throwaway CA and server certificate.
mkdir -p "$work/qtls"
(
  cd "$work/qtls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-ca \
    -keyout ca-key.pem -out ca-cert.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout server-key.pem -out server.csr 2>/dev/null
  openssl x509 -req -in server.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial -days 1 \
    -copy_extensions copy -out server-cert.pem 2>/dev/null
)
mkdir -p "$work/qclient" && cp "$work/qtls/ca-cert.pem" "$work/qclient/"
qemu-img create -q -f raw "$work/plain.img" "$SIZE"
qemu-img create -q -f raw "$work/tls.img" "$SIZE"
qemu-nbd -f raw -x plain -b 127.0.0.1 -p 10941 -t --cache=writeback "$work/plain.img" & pids+=($!)
qemu-nbd --object "tls-creds-x509,id=tls0,dir=$work/qtls,endpoint=server,verify-peer=off" --tls-creds tls0 \
  -f raw -x tls -b 127.0.0.1 -p 10942 -t --cache=writeback "$work/tls.img" & pids+=($!)
qtls="--object tls-creds-x509,id=tls0,dir=$work/qclient,endpoint=client"
qopts="driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=10942,export=tls,tls-creds=tls0"
sleep 1

check_logs() {
  if grep -E "block I/O failed|write-back failed| ERROR " "$work/plain.log" "$work/tls.log" >&2; then
    echo "coffer reported failed I/O (above): the figures are void" >&2
    exit 1
  fi
}

hyperfine --runs "$RUNS" --warmup 2 --export-markdown "$work/write.md" --export-json "$work/write.json" \
  -n "write coffer plaintext" "qemu-img convert -n -f raw -O raw $work/src.raw $plain_uri" \
  -n "write coffer TLS"       "qemu-img convert -n -f raw $ctls --target-image-opts $work/src.raw $tls_opts" \
  -n "write qemu-nbd plaintext" "qemu-img convert -n -f raw -O raw $work/src.raw nbd://127.0.0.1:10941/plain" \
  -n "write qemu-nbd TLS"     "qemu-img convert -n -f raw $qtls --target-image-opts $work/src.raw $qopts" >&2
check_logs
hyperfine --runs "$RUNS" --warmup 2 --export-markdown "$work/read.md" --export-json "$work/read.json" \
  -n "read coffer plaintext" "qemu-img convert -f raw -O raw $plain_uri $out" \
  -n "read coffer TLS"       "qemu-img convert $ctls --image-opts $tls_opts -O raw $out" \
  -n "read qemu-nbd plaintext" "qemu-img convert -f raw -O raw nbd://127.0.0.1:10941/plain $out" \
  -n "read qemu-nbd TLS"     "qemu-img convert $qtls --image-opts $qopts -O raw $out" >&2
check_logs
qemu-img convert $ctls --image-opts "$tls_opts" -O raw "$out"
cmp "$work/src.raw" "$out" || { echo "coffer over TLS read back differs!" >&2; exit 1; }
aes=$(openssl speed -seconds 1 -bytes 16384 -evp aes-256-gcm 2>/dev/null | tail -1 | awk '{sub(/k$/, "", $NF); print $NF * 1000}')
bench_finish

echo
bench_provenance "$SIZE random image, qemu-img convert (sequential, 2 MiB requests), $RUNS runs each after 2 warm-ups"
echo
cat "$work/write.md"; echo; cat "$work/read.md"; echo
python3 - "$work" "$bytes" "$aes" <<'PY'
import json, sys
work, size, aes = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def means(kind):
    return {r["command"].split(" ", 1)[1]: r["mean"] for r in json.load(open(f"{work}/{kind}.json"))["results"]}
w, r = means("write"), means("read")
mb = size / 1e6
print("| MB/s | plaintext | TLS | TLS / plaintext |")
print("|:---|---:|---:|---:|")
for server in ["coffer", "qemu-nbd"]:
    for kind, m in [("write", w), ("read", r)]:
        p, t = mb / m[f"{server} plaintext"], mb / m[f"{server} TLS"]
        print(f"| {server} {kind} | {p:.0f} | {t:.0f} | {t / p:.2f}x |")
print()
p = 2 * mb / (w["coffer plaintext"] + r["coffer plaintext"])
t = 2 * mb / (w["coffer TLS"] + r["coffer TLS"])
print(f"coffer over TLS, write + read: {t / p:.2f}x plaintext (target >= 0.8x)")
print(f"limit: AES-256-GCM, `openssl speed -evp aes-256-gcm`, 16 KiB blocks, one core: {aes / 1e9:.2f} GB/s (TLS adds one more AES-GCM pass over every byte on each side)")
PY
