#!/usr/bin/env bash
# The recipe of the nested test host (L1): Debian 12 from Debian packages only
# (mmdebstrap), with systemd, openssh, libvirt/QEMU, LVM, the stock Debian
# kernel and the project's Debian dependencies. nested-host.sh caches the
# result under a hash of this file, so any change here rebuilds the image.
#
#   image.sh OUTDIR    -> OUTDIR/root.img (ext4, raw), vmlinuz, initrd.img, id_ed25519
set -euo pipefail
out=${1:?usage: image.sh OUTDIR}
mirror=${AVIO_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${AVIO_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}

PACKAGES=(
  systemd-sysv udev dbus openssh-server linux-image-amd64 initramfs-tools
  libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils
  lvm2 dmsetup kmod iproute2 iputils-ping procps e2fsprogs util-linux
  python3 python3-venv python3-pip-whl python3-setuptools-whl
  python3-libvirt python3-pyudev python3-pyroute2 python3-lxml
  python3-watchdog python3-prometheus-client python3-pytest python3-hypothesis
  libxml2-utils busybox-static
  # What scripts/setup-host.sh installs (the Vagrant box's provisioner finds it
  # all there, offline) and what Vagrant needs in a box (sudo, rsync).
  libvirt-dev pkg-config cpio virtinst bash-completion sudo rsync
)

# Vagrant's well-known insecure public key (the vagrant package's keys/vagrant.pub):
# the box (make vagrant-box) is this image, and Vagrant logs in with it first.
VAGRANT_KEY='ssh-rsa AAAAB3NzaC1yc2EAAAABIwAAAQEA6NF8iallvQVp22WDkTkyrtvp9eWW6A8YVr+kz4TjGYe7gHzIw+niNltGEFHzD8+v1I2YJ6oXevct1YeS0o9HZyN1Q9qgCgzUFtdOKLv6IedplqoPkcmF0aYet2PkEDo3MlTBckFXPITAMzF8dJSIFo9D8HfdOV0IAdx4O7PtixWKn5y2hMNG0zQPyUecp4pzC6kivAIhyfHilFR61RGL+GPXQ2MWZWFYbAGjyiYJnAmCP3NOTd0jMZEnDkbUvxhMmBYSdETk1rRgm+R4LOzFUGaHqHDLKLX+FIPKcF96hrucXzcWyLbIbEgE98OHlnVYCzRdK8jlqm8tehUc9c9WhQ== vagrant insecure public key'

# Runs inside the new root (mmdebstrap --customize-hook): L1's own settings.
customize() {
  local root=$1
  echo avio-l1 > "$root/etc/hostname"
  # By label: the same file system is /dev/vda in L1 and /dev/vda1 in the box.
  printf 'LABEL=l1root / ext4 rw,errors=remount-ro 0 1\n' > "$root/etc/fstab"
  # The management NIC (virtio) by DHCP from QEMU's user network; the e1000e
  # is left alone for pass-through.
  cat > "$root/etc/systemd/network/10-mgmt.network" <<'NET'
[Match]
Driver=virtio_net
[Network]
DHCP=ipv4
LinkLocalAddressing=no
NET
  chroot "$root" systemctl enable systemd-networkd ssh libvirtd virtlogd
  # e2scrub_reap alone took ~50 s of a TCG boot.
  chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    e2scrub_reap.service fstrim.timer man-db.timer systemd-networkd-wait-online.service
  # An initrd with only what mounts the root disk (virtio, ext4): the generic
  # one (MODULES=most, ~40 MB) is decompressed and probed at every TCG boot.
  printf '%s\n' virtio_pci virtio_blk ext4 > "$root/etc/initramfs-tools/modules"
  printf 'MODULES=list\n' > "$root/etc/initramfs-tools/conf.d/avio-nested.conf"
  chroot "$root" update-initramfs -u -k all
  install -d -m 0700 "$root/root/.ssh"
  cat "$out/id_ed25519.pub" > "$root/root/.ssh/authorized_keys"
  sed -i 's/^#\?PermitRootLogin.*/PermitRootLogin prohibit-password/; s/^#\?UseDNS.*/UseDNS no/' \
    "$root/etc/ssh/sshd_config"
  # The `vagrant` user of a Vagrant box: the insecure key, passwordless sudo.
  chroot "$root" useradd -m -s /bin/bash -G sudo,libvirt vagrant
  install -d -m 0700 "$root/home/vagrant/.ssh"
  printf '%s\n' "$VAGRANT_KEY" > "$root/home/vagrant/.ssh/authorized_keys"
  chroot "$root" chown -R vagrant:vagrant /home/vagrant/.ssh
  chmod 0600 "$root/home/vagrant/.ssh/authorized_keys"
  printf 'vagrant ALL=(ALL) NOPASSWD: ALL\nDefaults:vagrant !requiretty\n' > \
    "$root/etc/sudoers.d/vagrant"
  chmod 0440 "$root/etc/sudoers.d/vagrant"
  # Serial console login is not needed; keep the boot quiet and fast.
  sed -i 's/^#\?DefaultTimeoutStopSec=.*/DefaultTimeoutStopSec=20s/' "$root/etc/systemd/system.conf"
  # The modules the nested tests use, loaded at boot.
  printf '%s\n' dm_mod dm_linear 8021q bridge vfio_pci scsi_debug dummy veth > \
    "$root/etc/modules-load.d/avio-nested.conf"
  printf 'options scsi_debug add_host=0\n' > "$root/etc/modprobe.d/avio-nested.conf"
  # libvirt's default NAT network (a private range) is never started.
  rm -f "$root/etc/libvirt/qemu/networks/autostart/default.xml"
}

if [ "$out" = --customize ]; then
  out=$AVIO_IMAGE_OUT
  customize "${2:?}"
  exit 0
fi
mkdir -p "$out"
rm -f "$out/id_ed25519" "$out/id_ed25519.pub"
ssh-keygen -q -t ed25519 -N '' -C avio-nested -f "$out/id_ed25519"
root=$(mktemp -d "$out/root.XXXXXX")
trap 'rm -rf "$root"' EXIT
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
export AVIO_IMAGE_OUT=$out
mmdebstrap --mode=root --variant=apt --quiet \
  --aptopt='APT::Install-Recommends "false"' \
  --include="$(IFS=,; echo "${PACKAGES[*]}")" \
  --customize-hook="\"$self\" --customize \"\$1\"" \
  bookworm "$root" \
  "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
  "deb $security bookworm-security main"
cp "$root"/boot/vmlinuz-* "$out/vmlinuz"
cp "$root"/boot/initrd.img-* "$out/initrd.img"
chmod 0644 "$out/vmlinuz" "$out/initrd.img"
mkfs.ext4 -q -F -d "$root" -L l1root "$out/root.img.tmp" 6G
mv "$out/root.img.tmp" "$out/root.img"
