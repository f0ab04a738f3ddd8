#!/usr/bin/env bash
# Build the tiny test guest from Debian packages: the current Debian kernel
# (vmlinuz) and an initramfs holding busybox-static, the virtio-scsi,
# virtio-net, LSI (sym53c8xx) and e1000 drivers, and scripts/tiny-guest-init.sh
# as /init. Cached: nothing is downloaded or rebuilt when the outputs are
# up to date. Unattended (never reads stdin) and safe to run concurrently.
# Prints the kernel path, then the initramfs path.
#
#   scripts/build-tiny-guest.sh   -> <cache>/vmlinuz <cache>/initramfs.cpio.gz
#   AVIO_GUEST_CACHE=DIR          cache directory (default <repo>/.cache/tiny-guest)
set -euo pipefail
exec </dev/null

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
init_script=$here/tiny-guest-init.sh
cache=${AVIO_GUEST_CACHE:-$repo/.cache/tiny-guest}
export DEBIAN_FRONTEND=noninteractive

# insmod order. Each module's own dependencies (modinfo) are checked to come
# earlier, so a kernel that grows a dependency fails the build loudly.
MODULES=(
  virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
  scsi_common scsi_mod crc64 crc64-rocksoft crct10dif_common crc-t10dif t10-pi
  sd_mod cdrom sr_mod virtio_scsi failover net_failover virtio_net
  scsi_transport_spi sym53c8xx e1000
)

die() { printf 'build-tiny-guest: %s\n' "$*" >&2; exit 1; }

kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

# download PACKAGE DIR: the package's .deb into DIR (apt lists refreshed once
# if apt does not know it).
download() {
  local pkg=$1 dir=$2
  (cd "$dir" && apt-get download -q "$pkg" >/dev/null 2>&1) && return 0
  apt-get update -qq >/dev/null
  (cd "$dir" && apt-get download -q "$pkg" >/dev/null) || die "cannot download $pkg"
}

# unpack PACKAGE DIR: extract it once under $cache/DIR/root, marked done by
# $cache/DIR/PACKAGE.done.
unpack() {
  local pkg=$1 work=$cache/$2
  [ -f "$work/$pkg.done" ] && [ -d "$work/root" ] && return 0
  rm -rf "$work"
  mkdir -p "$work"
  download "$pkg" "$work"
  dpkg -x "$work"/"${pkg}"_*.deb "$work/root"
  rm -f "$work"/"${pkg}"_*.deb
  touch "$work/$pkg.done"
}

busybox_binary() {
  if dpkg-query -W -f='${db:Status-Status}' busybox-static 2>/dev/null | grep -qx installed; then
    echo /bin/busybox
  else
    unpack busybox-static busybox
    echo "$cache/busybox/root/bin/busybox"
  fi
}

# copy_module DIR NAME DEST: the uncompressed NAME.ko found under DIR.
copy_module() {
  local dir=$1 name=$2 dest=$3 file
  file=$(find "$dir" -name "$name.ko" -o -name "$name.ko.xz" -o -name "$name.ko.zst" | head -n 1)
  [ -n "$file" ] || die "module $name not found in $dir"
  case "$file" in
    *.xz) xz -dc "$file" >"$dest" ;;
    *.zst) zstd -qdc "$file" >"$dest" ;;
    *) cp "$file" "$dest" ;;
  esac
}

build_initramfs() {
  local version=$1 busybox=$2 moddir=$cache/kernel/root/lib/modules/$1 staging module dep
  staging=$(mktemp -d "$cache/staging.XXXXXX")
  mkdir -p "$staging"/{bin,dev,proc,sys,run,tmp,lib/modules}
  cp "$busybox" "$staging/bin/busybox"
  cp "$init_script" "$staging/init"
  chmod 0755 "$staging/init" "$staging/bin/busybox"
  local -A loaded=()
  for module in "${MODULES[@]}"; do
    copy_module "$moddir" "$module" "$staging/lib/modules/$module.ko"
    for dep in $(modinfo -F depends "$staging/lib/modules/$module.ko" | tr ',' ' '); do
      [ -n "${loaded[$dep]:-}" ] || die "module $module needs $dep loaded before it"
    done
    loaded[$module]=1
    echo "$module" >>"$staging/lib/modules/order"
  done
  (cd "$staging" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -6) \
    >"$cache/initramfs.cpio.gz.tmp"
  mv -f "$cache/initramfs.cpio.gz.tmp" "$cache/initramfs.cpio.gz"
  rm -rf "$staging"
}

main() {
  mkdir -p "$cache"
  cache=$(cd "$cache" && pwd)
  [ -f "$init_script" ] || die "missing $init_script"
  exec 9>"$cache/.lock"
  flock 9

  local pkg version busybox stamp
  pkg=$(kernel_package)
  if [ -z "$pkg" ]; then
    apt-get update -qq >/dev/null
    pkg=$(kernel_package)
  fi
  [ -n "$pkg" ] || die "apt-cache depends linux-image-amd64 names no kernel package"
  version=${pkg#linux-image-}

  busybox=$(busybox_binary)
  # The stamp names everything the initramfs is made of; the same cache may be
  # shared with other builders, which then rebuild their own.
  stamp="tiny-guest $version $(cat "$init_script" "${BASH_SOURCE[0]}" "$busybox" | sha256sum | cut -c1-16)"
  if [ ! -s "$cache/vmlinuz" ] || [ ! -s "$cache/initramfs.cpio.gz" ] ||
    [ "$(cat "$cache/stamp" 2>/dev/null)" != "$stamp" ]; then
    unpack "$pkg" kernel
    cp "$cache/kernel/root/boot/vmlinuz-$version" "$cache/vmlinuz.tmp"
    mv -f "$cache/vmlinuz.tmp" "$cache/vmlinuz"
    build_initramfs "$version" "$busybox"
    echo "$stamp" >"$cache/stamp"
  fi
  # libvirt's qemu (user libvirt-qemu) must be able to read both.
  chmod 0644 "$cache/vmlinuz" "$cache/initramfs.cpio.gz"
  echo "$cache/vmlinuz"
  echo "$cache/initramfs.cpio.gz"
}

main "$@"
