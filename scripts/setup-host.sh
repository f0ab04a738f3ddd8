#!/usr/bin/env bash
# Prepare a Debian host for avio-kvm: install the Debian packages it needs
# (only those missing) and start virtlogd, libvirtd and systemd-udevd (only
# if they are not running). Idempotent and quiet when there is nothing to do.
# Used by `make test`, `make demo`, CI and the Vagrant provisioner.
#
#   scripts/setup-host.sh                packages + daemons
#   scripts/setup-host.sh --packages     packages only
#   scripts/setup-host.sh --test-tools   also the tools the test suite uses
#                                        (vagrant, vagrant-libvirt, shellcheck,
#                                        groff and man for the man pages)
set -euo pipefail

PACKAGES=(
  qemu-system-x86 libvirt-daemon-system libvirt-clients libvirt-dev
  pkg-config udev busybox-static cpio kmod iproute2 virtinst
  python3-venv libxml2-utils procps bash-completion
)
TEST_PACKAGES=(shellcheck vagrant vagrant-libvirt groff-base man-db)
TEST_PACKAGES+=(btrfs-progs) # btrfs shows an anonymous device in mountinfo: tests/host/test_hostcheck.py

log() { printf 'setup-host: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root" >&2
  exit 1
fi

missing_packages() {
  local pkg
  for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed; then
      printf '%s\n' "$pkg"
    fi
  done
}

install_packages() {
  local missing
  mapfile -t missing < <(missing_packages)
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

have_systemd() { [ -d /run/systemd/system ]; }

running() { pgrep -x "$1" >/dev/null 2>&1; }

start_daemon() {
  # start_daemon NAME UNIT COMMAND...
  local name=$1 unit=$2
  shift 2
  running "$name" && return 0
  if have_systemd; then
    log "starting $unit"
    systemctl start "$unit"
  else
    log "starting $name"
    "$@"
  fi
}

wait_for_libvirtd() {
  local _
  for _ in $(seq 1 50); do
    virsh -q -c qemu:///system version >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "libvirtd did not answer on qemu:///system" >&2
  return 1
}

start_daemons() {
  start_daemon systemd-udevd systemd-udevd.service /lib/systemd/systemd-udevd --daemon
  start_daemon virtlogd virtlogd.service virtlogd -d
  start_daemon libvirtd libvirtd.service libvirtd -d
  wait_for_libvirtd
}

case "${1:-}" in
  --test-tools) PACKAGES+=("${TEST_PACKAGES[@]}") ;;
  --packages | "") ;;
  *) log "unknown option $1" >&2; exit 2 ;;
esac
install_packages
if [ "${1:-}" != "--packages" ]; then
  start_daemons
fi
