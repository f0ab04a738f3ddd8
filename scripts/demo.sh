#!/usr/bin/env bash
# `make demo`: the main job, end to end, on this machine. Run by make after the
# host is set up (Debian packages, libvirtd) and .venv is installed.
#   1. the seed's hpvmcreate examples translated to libvirt XML;
#   2. the seed's `aviotest` guest created for real on a loop-device disk and
#      a bridge for vswitch swlan1, booted (a tiny Linux guest), then a second
#      AVIO disk and a NIC hot-plugged; the guest reports what it sees;
#   3. everything removed again.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
GUEST=aviotest
LOG=/var/log/libvirt/qemu/$GUEST-console.log
WORK=$(mktemp -d /tmp/avio-demo.XXXXXX)
chmod 755 "$WORK"
LOOPS=()
MADE_BRIDGE=""
MADE_RDISK=""

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

cleanup() {
  "$BIN/hpvmremove" -P "$GUEST" -F >/dev/null 2>&1 || true
  [ -n "$MADE_RDISK" ] && rm -f /dev/rdisk/disk1 && rmdir /dev/rdisk 2>/dev/null
  local dev
  for dev in "${LOOPS[@]}"; do losetup -d "$dev" 2>/dev/null || true; done
  [ -n "$MADE_BRIDGE" ] && ip link del swlan1 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

new_loop() {
  truncate -s "$2" "$WORK/$1.img"
  losetup -f --show "$WORK/$1.img"
}

# Wait until the guest's console shows a line matching $1 (after byte $2).
wait_for() {
  local pattern=$1 since=${2:-0} _
  for _ in $(seq 1 600); do
    if tail -c +"$((since + 1))" "$LOG" 2>/dev/null | grep -qE "$pattern"; then return 0; fi
    sleep 0.1
  done
  echo "demo: the guest never printed /$pattern/" >&2
  return 1
}

guest_says() { tail -c +"$(($1 + 1))" "$LOG" | grep -E '^AVIO (disk|nic|media|ready)' | sed 's/^/  guest: /'; }
log_size() { stat -c %s "$LOG" 2>/dev/null || echo 0; }

say "1. The seed's examples (HPVM 4.1 AVIO guide) as libvirt XML; both spellings give the same"
a=$(AVIO_VIRT_TYPE=qemu "$BIN/hpvmcreate" -P aviotest -O hpux -a network:aviolan::vswitch:swlan1 \
  -a hba:aviostor::disk/dev/rdisk/disk1 --print-xml)
b=$(AVIO_VIRT_TYPE=qemu "$BIN/hpvmcreate" -P aviotest -O hpux -a network:avio_lan::vswitch:swlan1 \
  -a hba:avio_stor::disk/dev/rdisk/disk1 --print-xml 2>/dev/null)
printf '%s\n' "$a" | grep -E '<controller|<disk|<source|<address type="drive"|<interface|<model'
[ "$a" = "$b" ] && echo "(identical XML for avio_lan/aviolan and avio_stor/aviostor)"

say "2. A real guest: the seed's aviotest on a loop device and a bridge for swlan1"
"$BIN/hpvmremove" -P "$GUEST" -F >/dev/null 2>&1 || true
mapfile -t image < <(bash guest/build.sh)
disk1=$(new_loop disk1 64M); LOOPS+=("$disk1")
disk2=$(new_loop disk2 32M); LOOPS+=("$disk2")
if [ ! -e /dev/rdisk/disk1 ]; then
  mkdir -p /dev/rdisk && ln -s "$disk1" /dev/rdisk/disk1 && MADE_RDISK=1
fi
if ! ip link show swlan1 >/dev/null 2>&1; then
  ip link add swlan1 type bridge && ip link set swlan1 up && MADE_BRIDGE=1
fi
echo "(/dev/rdisk/disk1 -> $disk1, vswitch swlan1 = Linux bridge swlan1)"
show "$BIN/hpvmcreate" -P "$GUEST" -O hpux -a network:avio_lan::vswitch:swlan1 \
  -a hba:avio_stor::disk/dev/rdisk/disk1 \
  -r 256M -B manual --kernel "${image[0]}" --initrd "${image[1]}" --cmdline "console=ttyS0 quiet"
rm -f "$LOG"
show "$BIN/hpvmstart" -P "$GUEST"
wait_for '^AVIO ready'
echo "The guest booted and reports:"
guest_says 0

say "3. Hot-plug a second AVIO disk and an AVIO NIC into the running guest"
mark=$(log_size)
show "$BIN/hpvmmodify" -P "$GUEST" -a "disk:avio_stor::disk:$disk2" -a network:avio_lan::vswitch:swlan1
wait_for '^AVIO disk\+' "$mark"
wait_for '^AVIO nic\+' "$mark"
echo "The guest saw, without any rescan:"
guest_says "$mark"

say "4. hpvmstatus in HPVM's own layouts"
show "$BIN/hpvmstatus"
show "$BIN/hpvmstatus" -P "$GUEST"
show "$BIN/hpvmstatus" -P "$GUEST" -V

say "5. Hot-unplug the disk again (waits for the guest to release it)"
mark=$(log_size)
show "$BIN/hpvmmodify" -P "$GUEST" -d "disk:avio_stor::disk:$disk2"
wait_for '^AVIO disk-' "$mark"
guest_says "$mark"

say "6. Clean up: guest removed (its storage is never touched), loop devices and bridge gone"
show "$BIN/hpvmremove" -P "$GUEST" -F
