#!/usr/bin/env bash
# Coffer's main job, end to end, in one command: build, start a server on
# embedded defaults in a fresh directory, create a disk, write an image into
# it over NBD with qemu-img, snapshot it while attached, restore the snapshot
# into a disk in another zone, prove the data identical, and share the
# snapshot with a principal of another tenant (Reader on that one
# snapshot), who restores it into a disk of its own. Leaves the
# server running so you can go on with the CLI (it prints how to stop it).
#
# Usage: scripts/quickstart.sh [WORKDIR]   (default: ./coffer-quickstart)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(realpath -m "${1:-coffer-quickstart}")
command -v qemu-img >/dev/null || { echo "qemu-img is needed: apt-get install qemu-utils" >&2; exit 1; }
echo "==> building coffer (release)"
cargo build --release --locked -p coffer-cli
COFFER=$PWD/target/release/coffer
mkdir -p "$WORK"
# Keep this demo's profile and root key inside WORK, apart from the data dir.
export XDG_CONFIG_HOME=$WORK/config
echo "==> starting: coffer serve --data-dir $WORK/data"
"$COFFER" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 --nbd-listen 127.0.0.1:0 \
  > "$WORK/serve.out" 2> "$WORK/serve.log" &
PID=$!
for _ in $(seq 100); do grep -q "NBD listening" "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
cat "$WORK/serve.out"

echo "==> coffer disk create --name web --size 256MiB --zone local-a"
DISK=$("$COFFER" disk create --name web --size 256MiB --zone local-a --query id)
"$COFFER" disk show "$DISK"
URI=$("$COFFER" disk attach "$DISK" --query uri)
echo "==> attached: $URI"

echo "==> writing a qcow2 image into the disk with qemu-img"
qemu-img create -q -f qcow2 "$WORK/base.qcow2" 256M
qemu-io -f qcow2 -c 'write -P 0x42 0 64M' -c 'write -P 0x17 100M 8M' "$WORK/base.qcow2" >/dev/null
qemu-img convert -n -p -f qcow2 -O raw "$WORK/base.qcow2" "$URI"

echo "==> coffer snapshot create (disk stays attached)"
SNAP=$("$COFFER" snapshot create --disk "$DISK" --name v1 --query id)
"$COFFER" snapshot list

echo "==> restoring the snapshot into zone local-b"
DISK2=$("$COFFER" disk create --name web-b --from-snapshot "$SNAP" --zone local-b --query id)
URI2=$("$COFFER" disk attach "$DISK2" --query uri)
qemu-img compare -f qcow2 -F raw "$WORK/base.qcow2" "$URI2"
"$COFFER" disk list

echo "==> sharing the snapshot with another tenant: Reader on $SNAP only"
TENANT2=$("$COFFER" tenant create --name partner --query id)
ACCOUNT2=$("$COFFER" account create --name partner-main --tenant "$TENANT2" --query id)
BOB=$("$COFFER" principal create --name bob --account "$ACCOUNT2" --role Owner --scope "$TENANT2" --query principal.id)
"$COFFER" token create --principal "$BOB" --name quickstart --expires-in 1d --save-profile bob
"$COFFER" role assignment create --principal "$BOB" --role Reader --scope "$SNAP"
"$COFFER" --profile bob snapshot list
BOBDISK=$("$COFFER" --profile bob disk create --name from-partner --from-snapshot "$SNAP" --zone local-c --query id)
BOBURI=$("$COFFER" --profile bob disk attach "$BOBDISK" --query uri)
qemu-img compare -f qcow2 -F raw "$WORK/base.qcow2" "$BOBURI"
"$COFFER" --profile bob disk list
"$COFFER" iam explain --principal "$BOB" --action snapshots/delete --resource "$SNAP"

echo
echo "Done. The server (pid $PID) keeps running; its data is in $WORK/data,"
echo "its root key in $XDG_CONFIG_HOME/coffer/root.key. Try:"
echo "  XDG_CONFIG_HOME=$XDG_CONFIG_HOME $COFFER disk list"
echo "Stop it with: kill $PID"
