#!/usr/bin/env bash
# Build the tiny test guest: a Debian kernel and a busybox initramfs with the
# virtio-scsi/virtio-net (AVIO) and LSI/e1000 (VIO) drivers and guest/init.sh.
# Cached: prints the two paths, building only what is missing or stale.
#
#   guest/build.sh            -> <cache>/vmlinuz <cache>/initramfs.cpio.gz
#   AVIO_GUEST_CACHE=DIR      cache directory (default <repo>/.cache/tiny-guest, or
#                             /var/cache/avio-kvm/ when QEMU, which runs as another
#                             user, could not reach that: a clone in a 0700 directory)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

# Can a user other than root enter every directory down to $1?
reachable_by_qemu() {
  local dir=$1
  while [ "$dir" != / ]; do
    [ "$(($(stat -c %a "$dir" | sed 's/^/0/') & 1))" -eq 1 ] || return 1
    dir=$(dirname "$dir")
  done
}

if [ -n "${AVIO_GUEST_CACHE:-}" ]; then
  cache=$AVIO_GUEST_CACHE
else
  cache=$(cd "$here/.." && pwd)/.cache/tiny-guest
  if ! reachable_by_qemu "$(dirname "$(dirname "$cache")")"; then
    cache=/var/cache/avio-kvm/tiny-guest-$(printf '%s' "$here" | sha256sum | cut -c1-12)
    install -d -m 0755 /var/cache/avio-kvm
  fi
fi
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

MODULES=(
  virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
  scsi_common scsi_mod crc64 crc64-rocksoft crct10dif_common crc-t10dif t10-pi
  sd_mod cdrom sr_mod virtio_scsi failover net_failover virtio_net
  scsi_transport_spi sym53c8xx e1000 llc stp garp mrp 8021q
  e1000e
  st ch sg
)

kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}

fetch_kernel() {
  local pkg=$1 work=$cache/kernel
  [ -f "$work/$pkg.done" ] && return 0
  rm -rf "$work" && mkdir -p "$work"
  (cd "$work" && apt-get download "$pkg" >/dev/null 2>&1) || {
    apt-get update -qq && (cd "$work" && apt-get download "$pkg" >/dev/null)
  }
  dpkg -x "$work"/"$pkg"_*.deb "$work/root"
  rm -f "$work"/"$pkg"_*.deb
  touch "$work/$pkg.done"
}

build_initramfs() {
  local version=$1 root=$cache/kernel/root staging
  staging=$(mktemp -d)
  trap 'rm -rf "$staging"' RETURN
  mkdir -p "$staging"/{bin,lib/modules,proc,sys,dev,tmp}
  cp /bin/busybox "$staging/bin/busybox"
  cp "$here/init.sh" "$staging/init"
  chmod +x "$staging/init"
  : > "$staging/modules.order"
  local module file
  for module in "${MODULES[@]}"; do
    file=$(find "$root/lib/modules/$version" -name "$module.ko*" | head -n 1)
    [ -n "$file" ] || { echo "build.sh: module $module not found" >&2; exit 1; }
    case "$file" in
      *.xz) xz -dc "$file" > "$staging/lib/modules/$module.ko" ;;
      *.zst) zstd -qdc "$file" > "$staging/lib/modules/$module.ko" ;;
      *) cp "$file" "$staging/lib/modules/$module.ko" ;;
    esac
    echo "$module" >> "$staging/modules.order"
  done
  (cd "$staging" && find . | cpio -o -H newc --quiet | gzip -1) > "$cache/initramfs.cpio.gz.tmp"
  mv "$cache/initramfs.cpio.gz.tmp" "$cache/initramfs.cpio.gz"
}

pkg=$(kernel_package)
[ -n "$pkg" ] || { apt-get update -qq; pkg=$(kernel_package); }
version=${pkg#linux-image-}
fetch_kernel "$pkg"
cp -u "$cache/kernel/root/boot/vmlinuz-$version" "$cache/vmlinuz"
stamp="$version $(sha256sum "$here/init.sh" "$0" | sha256sum | cut -c1-16)"
if [ ! -f "$cache/initramfs.cpio.gz" ] || [ "$(cat "$cache/stamp" 2>/dev/null)" != "$stamp" ]; then
  build_initramfs "$version"
  echo "$stamp" > "$cache/stamp"
fi
echo "$cache/vmlinuz"
echo "$cache/initramfs.cpio.gz"
