#!/usr/bin/env bash
# Customer keys, measured in one run (issue 16's benchmarks):
#   1. rotation re-wrap of 10,000 DEKs (`cargo bench --bench rewrap` in
#      crates/service) on the embedded backend (SQLite) and on PostgreSQL
#      (COFFER_TEST_PG, as the tests use it; skipped with a note if absent);
#   2. revocation latency: the CLI revocation test's "key disable" case,
#      20 trials, each from `coffer key disable` returning to the first
#      failed read of a qemu-io session reading in a loop
#      (crates/cli/tests/e2e/revocation.rs);
#   3. NBD throughput of a platform-key, a customer-key and a
#      double-encryption disk side by side: one release `coffer serve`, a
#      random image written into each disk and read back out with qemu-img
#      convert, hyperfine RUNS runs each after 2 warm-ups.
# Output: markdown tables for docs/PERFORMANCE.md under lines naming this
# script and the commit measured (bench/lib.sh: a dirty tree is refused).
#
# Usage: bench/keys.sh [SIZE]   (default 256M, RUNS=5; needs hyperfine,
# qemu-img, qemu-io, python3; ~5 minutes after the builds on 2 cores)
set -euo pipefail
SIZE=${1:-256M}
RUNS=${RUNS:-5}
TRIALS=${TRIALS:-20}
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_start keys.sh
bench_need "hyperfine qemu-utils python3" hyperfine qemu-img qemu-io python3
bench_cargo_build
bench_workdir

echo "== 1. re-wrap of 10,000 DEKs" >&2
rewrap_rows=$(cargo bench --locked -q -p coffer-service --bench rewrap 2>/dev/null | grep '^|')
pg_note=
if [ -n "${COFFER_TEST_PG:-}" ] || psql -w "postgres://postgres@127.0.0.1:5432/postgres" -qAtc 'select 1' >/dev/null 2>&1; then
  rewrap_rows+=$'\n'$(COFFER_TEST_METADATA=postgres cargo bench --locked -q -p coffer-service --bench rewrap 2>/dev/null | grep '^|')
else
  pg_note="(PostgreSQL not reachable: its row is missing)"
fi

echo "== 2. revocation latency, $TRIALS trials" >&2
COFFER_REVOCATION_TRIALS=$TRIALS cargo test --locked -q -p coffer-cli --test e2e revocation::each_cause -- --nocapture \
  > "$work/revocation.out" 2>&1 || { cat "$work/revocation.out" >&2; exit 1; }
revocation=$(grep -E '^key disable over' "$work/revocation.out")
others=$(grep -E '^revocation by (key delete|role removed|grant revoked)' "$work/revocation.out" | sed 's/^/- /')

echo "== 3. NBD throughput: platform, customer, double" >&2
bytes=$(numfmt --from=iec "${SIZE%B}")
head -c "$bytes" /dev/urandom > "$work/src.raw"
out=/dev/shm/coffer-bench-keys.$$
export HOME=$work/home XDG_CONFIG_HOME=$work/home/.config
mkdir -p "$HOME"
"$COFFER" serve --data-dir "$work/coffer" --root-key-file "$work/keys/root.key" \
  --listen 127.0.0.1:0 --nbd-listen 127.0.0.1:0 > "$work/serve.out" 2> "$work/serve.log" & pids+=($!)
for _ in $(seq 300); do grep -q "NBD listening" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
grep -q "NBD listening" "$work/serve.out" || { echo "coffer did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }
mib=$((bytes / 1048576))
"$COFFER" vault create --name bench --purge-protection --retention-days 7 >/dev/null
key=$("$COFFER" key create --vault bench --name k --query id)
for t in customer double; do
  "$COFFER" encryption-set create --name "des-$t" --key "$key" --type "$t" >/dev/null
  "$COFFER" role assignment create --principal "$("$COFFER" encryption-set show "des-$t" --query identity_id)" \
    --role 'Key Vault Crypto Service Encryption User' --scope "$key" >/dev/null
done
p=$("$COFFER" disk create --name p --size "${mib}MiB" --zone local-a --query id)
c=$("$COFFER" disk create --name c --size "${mib}MiB" --zone local-a --encryption-set des-customer --query id)
d=$("$COFFER" disk create --name d --size "${mib}MiB" --zone local-a --encryption-set des-double --query id)
test "$("$COFFER" disk show "$d" --query encryption.type)" = double
P=$("$COFFER" disk attach "$p" --query uri)
C=$("$COFFER" disk attach "$c" --query uri)
D=$("$COFFER" disk attach "$d" --query uri)
check_log() {
  if grep -E "block I/O failed|write-back failed| ERROR " "$work/serve.log" >&2; then
    echo "coffer reported failed I/O (above): the figures are void" >&2
    exit 1
  fi
}
hyperfine --runs "$RUNS" --warmup 2 --export-markdown "$work/write.md" --export-json "$work/write.json" \
  -n "write platform" "qemu-img convert -n -f raw -O raw $work/src.raw $P" \
  -n "write customer" "qemu-img convert -n -f raw -O raw $work/src.raw $C" \
  -n "write double"   "qemu-img convert -n -f raw -O raw $work/src.raw $D" >&2
check_log
hyperfine --runs "$RUNS" --warmup 2 --export-markdown "$work/read.md" --export-json "$work/read.json" \
  -n "read platform" "qemu-img convert -f raw -O raw $P $out" \
  -n "read customer" "qemu-img convert -f raw -O raw $C $out" \
  -n "read double"   "qemu-img convert -f raw -O raw $D $out" >&2
check_log
cmp "$work/src.raw" "$out" || { echo "the double disk read back differs!" >&2; exit 1; }
rm -f "$out"
bench_finish

echo
bench_provenance "rotation re-wrap (cargo bench --bench rewrap) $pg_note"
echo
echo "| backend | data keys | re-wrap pass | data keys / s |"
echo "|:---|---:|---:|---:|"
echo "$rewrap_rows"
echo
bench_provenance "revocation latency, crates/cli/tests/e2e/revocation.rs, $TRIALS trials"
echo
echo "$revocation"
echo "$others"
echo
bench_provenance "$SIZE random image, qemu-img convert, $RUNS runs each after 2 warm-ups"
echo
cat "$work/write.md"; echo; cat "$work/read.md"; echo
python3 - "$work" "$bytes" <<'PY'
import json, sys
work, size = sys.argv[1], int(sys.argv[2])
w = {r["command"].split(" ", 1)[1]: r["mean"] for r in json.load(open(f"{work}/write.json"))["results"]}
r = {r["command"].split(" ", 1)[1]: r["mean"] for r in json.load(open(f"{work}/read.json"))["results"]}
print("| MB/s | platform | customer | double | double / platform |")
print("|:---|---:|---:|---:|---:|")
for name, m in (("write", w), ("read", r)):
    mbs = {k: size / v / 1e6 for k, v in m.items()}
    print(f"| {name} | {mbs['platform']:.0f} | {mbs['customer']:.0f} | {mbs['double']:.0f} | {mbs['double'] / mbs['platform']:.2f}x |")
PY
