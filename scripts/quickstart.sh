#!/usr/bin/env bash
# Coffer's main job, end to end, in one command: build, start a server on
# embedded defaults in a fresh directory, create a disk, write an image into
# it over NBD with qemu-img, snapshot it while attached, restore the snapshot
# into a disk in another zone, prove the data identical, and share the
# snapshot with a principal of another tenant (Disk Snapshot User on that
# one snapshot), who copies it into its own account and restores the copy
# into a disk of its own. Leaves the
# server running so you can go on with the CLI (it prints how to stop it).
#
# Usage: scripts/quickstart.sh [WORKDIR]   (default: ./coffer-quickstart)
#        scripts/quickstart.sh --print-binary   (print the coffer it would run)
#
# Each run starts afresh: WORKDIR's server (one a previous run left running
# is stopped first), config, root key and data are made anew. WORKDIR must
# be new, empty, or a previous run's. The binary is built (release) in
# cargo's target directory (CARGO_TARGET_DIR is honoured), unless COFFER_BIN
# names one to use as is. With COFFER_QUICKSTART_STOP=1 the server is
# stopped at the end instead of left running (for tests). On any failure
# the server is stopped and its log shown.
set -euo pipefail
# Relative paths given by the caller are relative to where it was called.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  CARGO_TARGET_DIR=$(realpath -m "$CARGO_TARGET_DIR")
  export CARGO_TARGET_DIR
fi
if [ -n "${COFFER_BIN:-}" ]; then COFFER_BIN=$(realpath -m "$COFFER_BIN"); fi
PRINT_BINARY=
case "${1:-}" in
  --print-binary) PRINT_BINARY=1 ;;
  -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
  -*) echo "quickstart: unknown option $1 (see --help)" >&2; exit 2 ;;
  ?*) WORK=$(realpath -m "$1") ;;
esac
cd "$(dirname "$0")/.."
WORK=${WORK:-$(realpath -m coffer-quickstart)}

# The binary: COFFER_BIN, or the release build in cargo's target directory.
if [ -n "${COFFER_BIN:-}" ]; then
  COFFER=$COFFER_BIN
else
  TARGET=$(cargo metadata --format-version 1 --no-deps --locked |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  [ -n "$TARGET" ] || { echo "quickstart: cannot find cargo's target directory" >&2; exit 1; }
  COFFER=$TARGET/release/coffer
fi
if [ -n "$PRINT_BINARY" ]; then echo "$COFFER"; exit 0; fi

command -v qemu-img >/dev/null || { echo "qemu-img is needed: apt-get install qemu-utils" >&2; exit 1; }
command -v qemu-io >/dev/null || { echo "qemu-io is needed: apt-get install qemu-utils" >&2; exit 1; }

# A fresh WORKDIR: never wipe a directory this script did not make.
MARK=$WORK/.coffer-quickstart
if [ -d "$WORK" ] && [ ! -e "$MARK" ] && [ -n "$(ls -A "$WORK")" ]; then
  echo "quickstart: $WORK is not empty and not a previous quickstart's directory; give another WORKDIR" >&2
  exit 1
fi
# A server a previous run left running on this WORKDIR: stop it first (it
# holds the data dir, which is about to be made anew).
if [ -f "$WORK/serve.pid" ]; then
  OLD=$(cat "$WORK/serve.pid")
  if kill -0 "$OLD" 2>/dev/null && tr '\0' ' ' < "/proc/$OLD/cmdline" 2>/dev/null | grep -qF -- "serve --data-dir $WORK/data "; then
    echo "==> stopping the server a previous run left running (pid $OLD)"
    kill "$OLD"
    for _ in $(seq 300); do kill -0 "$OLD" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$OLD" 2>/dev/null; then
      echo "quickstart: the previous server (pid $OLD) did not stop within 30 s" >&2
      exit 1
    fi
  fi
fi
rm -rf "$WORK/config" "$WORK/data" "$WORK/base.qcow2" "$WORK/serve.out" "$WORK/serve.log" "$WORK/serve.pid"
mkdir -p "$WORK"
touch "$MARK"

if [ -z "${COFFER_BIN:-}" ]; then
  echo "==> building coffer (release)"
  cargo build --release --locked -p coffer-cli
fi
[ -x "$COFFER" ] || { echo "quickstart: no coffer binary at $COFFER" >&2; exit 1; }

# Keep this demo's profile and root key inside WORK, apart from the data dir.
export XDG_CONFIG_HOME=$WORK/config
# The demo's own server and profile, whatever the caller's environment says.
unset COFFER_PROFILE COFFER_TOKEN COFFER_ENDPOINT COFFER_ROOT_PASSPHRASE COFFER_CONFIG
PID=
stop_server() {
  [ -n "$PID" ] || return 0
  kill "$PID" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=
}
on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    if [ -n "$PID" ]; then
      echo "quickstart: failed (exit $rc); stopping the server (pid $PID). Its log, $WORK/serve.log, ends:" >&2
      tail -n 20 "$WORK/serve.log" >&2 || true
    fi
    stop_server
  fi
}
trap on_exit EXIT

echo "==> starting: coffer serve --data-dir $WORK/data"
"$COFFER" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 --nbd-listen 127.0.0.1:0 \
  > "$WORK/serve.out" 2> "$WORK/serve.log" &
PID=$!
echo "$PID" > "$WORK/serve.pid"
for _ in $(seq 600); do
  grep -q "NBD listening" "$WORK/serve.out" 2>/dev/null && break
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q "NBD listening" "$WORK/serve.out" 2>/dev/null; then
  if kill -0 "$PID" 2>/dev/null; then
    echo "quickstart: the server (pid $PID) did not announce its ports within 60 s" >&2
  else
    wait "$PID" && rc=0 || rc=$?
    echo "quickstart: the server exited (status $rc) before listening" >&2
    PID=
    tail -n 20 "$WORK/serve.log" >&2 || true
  fi
  exit 1
fi
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

echo "==> sharing the snapshot with another tenant: Disk Snapshot User on $SNAP only"
TENANT2=$("$COFFER" tenant create --name partner --query id)
ACCOUNT2=$("$COFFER" account create --name partner-main --tenant "$TENANT2" --query id)
BOB=$("$COFFER" principal create --name bob --account "$ACCOUNT2" --role Owner --scope "$TENANT2" --query principal.id)
"$COFFER" token create --principal "$BOB" --name quickstart --expires-in 1d --save-profile bob
"$COFFER" role assignment create --principal "$BOB" --role "Disk Snapshot User" --scope "$SNAP"
"$COFFER" --profile bob snapshot list
BOBCOPY=$("$COFFER" --profile bob snapshot copy "$SNAP" --name from-partner --query id)
BOBDISK=$("$COFFER" --profile bob disk create --name from-partner --from-snapshot "$BOBCOPY" --zone local-c --query id)
BOBURI=$("$COFFER" --profile bob disk attach "$BOBDISK" --query uri)
qemu-img compare -f qcow2 -F raw "$WORK/base.qcow2" "$BOBURI"
"$COFFER" --profile bob disk list
"$COFFER" iam explain --principal "$BOB" --action snapshots/delete --resource "$SNAP"

echo
if [ "${COFFER_QUICKSTART_STOP:-}" = 1 ]; then
  kill "$PID"
  for _ in $(seq 600); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$PID" 2>/dev/null; then
    echo "quickstart: the server (pid $PID) did not stop within 60 s of SIGTERM" >&2
    exit 1
  fi
  wait "$PID" && rc=0 || rc=$?
  PID=
  if [ "$rc" -ne 0 ]; then
    echo "quickstart: the server exited with status $rc when stopped" >&2
    exit 1
  fi
  echo "Done. The server stopped cleanly (COFFER_QUICKSTART_STOP=1); its data is in $WORK/data."
  exit 0
fi
echo "Done. The server (pid $PID) keeps running; its data is in $WORK/data,"
echo "its root key in $XDG_CONFIG_HOME/coffer/root.key. Try:"
echo "  XDG_CONFIG_HOME=$XDG_CONFIG_HOME $COFFER disk list"
echo "Stop it with: kill $PID"
echo "(Running this script again on $WORK stops it and starts afresh.)"
