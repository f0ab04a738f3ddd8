#!/usr/bin/env bash
# make vagrant-box: the nested test host's image (scripts/nested/image.sh, built
# and cached by nested-host.sh) as a vagrant-libvirt box, added to Vagrant as
# avio-kvm/nested. Run as root. The image is made bootable here: an MBR
# partition table, the ext4 file system as its first partition, and GRUB
# (Debian's grub-pc-bin on this host) in the MBR gap with its configuration
# embedded (nothing is written into the file system). Cached under
# .cache/vagrant-box/<image hash>; rebuilt and added again when the recipe changes.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
BOX_NAME=${AVIO_VAGRANT_BOX_NAME:-avio-kvm/nested}
DISK_GB=7 # the box's disk: the 6 GiB file system, 1 MiB before it, room after it

log() { printf 'vagrant-box: %s %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root"
need=()
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v sfdisk >/dev/null || need+=(fdisk)
command -v grub-mkimage >/dev/null || need+=(grub-pc-bin)
command -v vagrant >/dev/null || need+=(vagrant vagrant-libvirt)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
    >/dev/null
fi
[ -f /usr/lib/grub/i386-pc/boot.img ] || die "no /usr/lib/grub/i386-pc (apt-get install grub-pc-bin)"

bash "$repo/scripts/nested-host.sh" build
image=$(bash "$repo/scripts/nested-host.sh" image-dir)
hash=$(basename "$image")
out=$repo/.cache/vagrant-box/$hash
box=$out/avio-nested.box

if [ ! -f "$box" ]; then
  started=$(date +%s)
  rm -rf "$repo/.cache/vagrant-box" && mkdir -p "$out/tmp"
  work=$out/tmp
  # The kernel and initrd the image boots, by name (debugfs: no mount needed).
  kernel=$(debugfs -R 'ls -p /boot' "$image/root.img" 2>/dev/null |
    awk -F/ '$6 ~ /^vmlinuz-/ {print $6}' | sort -V | tail -n 1)
  initrd=initrd.img-${kernel#vmlinuz-}
  [ -n "$kernel" ] || die "no /boot/vmlinuz-* in $image/root.img"
  log "building the box from $image ($kernel)"
  cat > "$work/grub.cfg" <<CFG
set root=(hd0,msdos1)
linux /boot/$kernel root=/dev/vda1 rw console=tty0 console=ttyS0,115200 intel_iommu=on quiet
initrd /boot/$initrd
boot
CFG
  grub-mkimage -O i386-pc -o "$work/core.img" -c "$work/grub.cfg" -p '(hd0,msdos1)/boot/grub' \
    biosdisk part_msdos ext2 linux boot
  # A raw disk: MBR + GRUB's core in the gap before sector 2048, then the file system.
  size=$(stat -c %s "$image/root.img")
  truncate -s "${DISK_GB}G" "$work/disk.raw"
  printf 'label: dos\nstart=2048, size=%s, type=83, bootable\n' "$((size / 512))" |
    sfdisk -q "$work/disk.raw"
  [ "$(($(stat -c %s "$work/core.img") / 512 + 1))" -lt 2048 ] || die "GRUB's core is too big"
  dd if=/usr/lib/grub/i386-pc/boot.img of="$work/disk.raw" bs=440 count=1 conv=notrunc status=none
  dd if="$work/core.img" of="$work/disk.raw" bs=512 seek=1 conv=notrunc status=none
  dd if="$image/root.img" of="$work/disk.raw" bs=1M seek=1 conv=notrunc,sparse status=none
  qemu-img convert -O qcow2 "$work/disk.raw" "$work/box.img"
  rm -f "$work/disk.raw"
  printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %s}\n' "$DISK_GB" \
    > "$work/metadata.json"
  cat > "$work/Vagrantfile" <<'VF'
# The avio-kvm nested test host (scripts/vagrant-box.sh): its disk is virtio (/dev/vda1).
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
  end
end
VF
  tar -c -C "$work" -f "$box.tmp" metadata.json Vagrantfile box.img
  mv "$box.tmp" "$box"
  rm -rf "$work"
  log "box built in $(($(date +%s) - started)) s: $(du -sh "$box" | cut -f1)" \
    "(qcow2, $DISK_GB GiB virtual)"
fi

if [ -f "$out/added" ] && vagrant box list 2>/dev/null | grep -q "^$BOX_NAME "; then
  log "box $BOX_NAME is up to date ($box)"
  exit 0
fi
log "adding $box as $BOX_NAME"
vagrant box add --force --name "$BOX_NAME" "$box"
# vagrant-libvirt copies a box's image into libvirt's default pool once, under
# a name of its own: a box added again gets a new copy, the old one is unused.
prefix=$(printf '%s' "$BOX_NAME" | sed 's|/|-VAGRANTSLASH-|')_vagrant_box_image_
if virsh -q pool-info default >/dev/null 2>&1; then
  virsh -q vol-list default 2>/dev/null | awk -v p="$prefix" 'index($1, p) == 1 {print $1}' |
    while read -r volume; do
      log "removing the old copy $volume from libvirt's default pool"
      virsh -q vol-delete --pool default "$volume" >/dev/null
    done
fi
touch "$out/added"
log "box $BOX_NAME added"
