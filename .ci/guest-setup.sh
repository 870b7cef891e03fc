#!/usr/bin/env bash
# What the guest-boot tests (crates/cli/tests/common/guest.rs) need: a
# qemu-system-x86_64, a Debian kernel and its modules, busybox for the
# initramfs, and e2fsprogs for the ext4 images. Idempotent: whatever is
# already present is skipped; whatever is installed is named.
#
# Debian's qemu-system-x86 (7.2) is NOT installed with apt: it would replace
# the backported qemu-utils (10.0) the other tests use. Its .debs are
# unpacked with `dpkg -x` into $COFFER_GUEST_DIR/qemu instead, and the
# harness runs that binary with `-L` pointing at its firmware. The kernel
# package is unpacked the same way into $COFFER_GUEST_DIR/kernel (nothing
# is installed into /boot).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

dest=${COFFER_GUEST_DIR:-/opt/coffer-guest}
updated=
apt_update() {
  if [ -z "$updated" ]; then
    apt-get update -qq
    updated=1
  fi
}

# A scratch dir apt's sandbox user can write into (apt-get download).
work=$(mktemp -d)
chmod 755 "$work"
if id _apt >/dev/null 2>&1; then chown _apt "$work" 2>/dev/null || true; fi
trap 'rm -rf "$work"' EXIT

# Debian packages: busybox and cpio (initramfs), kmod, e2fsprogs (mkfs.ext4
# -d, debugfs), and the firmware and libraries the unpacked qemu binary
# needs.
need=()
for pkg in busybox-static cpio kmod e2fsprogs seabios ipxe-qemu libcapstone4 libfdt1 libslirp0 libvdeplug2; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "guest-setup: installing ${need[*]}"
  apt_update
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# qemu-system-x86_64, unpacked (not installed) into $dest/qemu.
qemu="$dest/qemu/usr/bin/qemu-system-x86_64"
if [ ! -x "$qemu" ]; then
  apt_update
  ver=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
  if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
    echo "guest-setup: no qemu-system-x86 package available" >&2
    exit 1
  fi
  echo "guest-setup: unpacking qemu-system-x86 $ver into $dest/qemu"
  # qemu-system-common must be the same build; qemu-system-data is
  # architecture-independent and versioned on its own.
  (cd "$work" && apt-get download -qq "qemu-system-x86=$ver" "qemu-system-common=$ver" qemu-system-data)
  rm -rf "$dest/qemu.new"
  mkdir -p "$dest/qemu.new"
  for deb in "$work"/qemu-system-*.deb; do
    dpkg -x "$deb" "$dest/qemu.new"
  done
  # The shared libraries the binary links (its Depends, less the qemu
  # packages just unpacked and what is already installed).
  libs=()
  for dep in $(dpkg-deb -f "$work"/qemu-system-x86_*.deb Depends |
    tr ',' '\n' | sed -e 's/(.*)//' -e 's/|.*//' -e 's/ //g'); do
    case "$dep" in qemu-system-*) continue ;; esac
    dpkg -s "$dep" >/dev/null 2>&1 || libs+=("$dep")
  done
  if [ ${#libs[@]} -gt 0 ]; then
    echo "guest-setup: installing qemu-system-x86's libraries ${libs[*]}"
    apt-get install -y -qq "${libs[@]}" >/dev/null
  fi
  rm -rf "$dest/qemu"
  mv "$dest/qemu.new" "$dest/qemu"
fi
missing=$(ldd "$qemu" | awk '/not found/ {print $1}')
if [ -n "$missing" ]; then
  echo "guest-setup: $qemu lacks libraries: $missing" >&2
  exit 1
fi
"$qemu" --version | sed -n '1s/^/guest-setup: /p'

# The kernel linux-image-amd64 depends on, unpacked into $dest/kernel.
if ! ls "$dest"/kernel/boot/vmlinuz-* >/dev/null 2>&1; then
  apt_update
  image=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ && !n++ {print $2}')
  if [ -z "$image" ]; then
    echo "guest-setup: cannot tell which kernel linux-image-amd64 depends on" >&2
    exit 1
  fi
  echo "guest-setup: unpacking $image into $dest/kernel"
  (cd "$work" && apt-get download -qq "$image")
  rm -rf "$dest/kernel.new"
  mkdir -p "$dest/kernel.new"
  dpkg-deb -x "$work/$image"_*.deb "$dest/kernel.new"
  rm -rf "$dest/kernel"
  mv "$dest/kernel.new" "$dest/kernel"
fi
vmlinuz=$(ls "$dest"/kernel/boot/vmlinuz-* | sort -V | tail -1)
version=${vmlinuz##*/vmlinuz-}
# The same kernel uncompressed (an ELF qemu boots directly, by its PVH
# entry): under TCG, the bzImage's own xz decompression takes longer than
# the rest of the boot. The harness uses it when present, else the vmlinuz.
vmlinux="$dest/kernel/boot/vmlinux-$version"
if [ ! -s "$vmlinux" ]; then
  command -v xz >/dev/null || { apt_update; echo "guest-setup: installing xz-utils"; apt-get install -y -qq xz-utils >/dev/null; }
  # The xz stream starts at its magic; what follows it is not xz.
  off=$(LC_ALL=C grep -m1 -obUaP '\xFD7zXZ\x00' "$vmlinuz" | cut -d: -f1) || true
  off=${off%%$'\n'*}
  if [ -n "$off" ] && tail -c +$((off + 1)) "$vmlinuz" >"$work/kernel.xz" &&
    xz -dc --single-stream "$work/kernel.xz" >"$vmlinux.new" 2>/dev/null &&
    [ "$(head -c 4 "$vmlinux.new" | od -An -c | tr -d ' ')" = '177ELF' ]; then
    mv "$vmlinux.new" "$vmlinux"
    echo "guest-setup: extracted the uncompressed kernel $vmlinux"
  else
    rm -f "$vmlinux.new"
    echo "guest-setup: no xz-compressed kernel in $vmlinuz; the harness boots the vmlinuz (slower)"
  fi
fi
echo "guest-setup: kernel $version"

for tool in busybox cpio mkfs.ext4 debugfs; do
  command -v "$tool" >/dev/null || { echo "guest-setup: $tool missing after install" >&2; exit 1; }
done
