#!/usr/bin/env bash
# `make demo`: the main job, end to end, on this machine. Run by make after the
# host is set up (Debian packages, libvirtd) and .venv is installed.
#   1. the seed's hpvmcreate examples translated to libvirt XML;
#   2. the seed's `aviotest` guest created for real on a loop-device disk and
#      the vswitch swlan1 (hpvmnet: a Linux bridge whose uplink leads to an
#      "outside host" in a network namespace), booted (a tiny Linux guest),
#      then a second AVIO disk and a NIC hot-plugged; the guest reports what
#      it sees;
#   3. the guest's port put on VLAN 120 live, where the outside host is;
#   4. everything removed again.
# Addresses are link-local (169.254/16) and stay on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
GUEST=aviotest
LOG=/var/log/libvirt/qemu/$GUEST-console.log
WORK=$(mktemp -d /tmp/avio-demo.XXXXXX)
chmod 755 "$WORK"
LOOPS=()
MADE_BRIDGE=""
MADE_VSWITCH=""
MADE_RDISK=""
OUTSIDE=avio-demo-outside

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

cleanup() {
  "$BIN/hpvmremove" -P "$GUEST" -F >/dev/null 2>&1 || true
  [ -n "$MADE_RDISK" ] && rm -f /dev/rdisk/disk1 && rmdir /dev/rdisk 2>/dev/null
  local dev
  for dev in "${LOOPS[@]}"; do losetup -d "$dev" 2>/dev/null || true; done
  [ -n "$MADE_VSWITCH" ] && "$BIN/hpvmnet" -d -F -S swlan1 >/dev/null 2>&1
  [ -n "$MADE_BRIDGE" ] && ip link del swlan1 2>/dev/null
  ip link del avdemo0 2>/dev/null || true
  ip netns del "$OUTSIDE" 2>/dev/null || true
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

say "2. A real guest: the seed's aviotest on a loop device and the vswitch swlan1"
"$BIN/hpvmremove" -P "$GUEST" -F >/dev/null 2>&1 || true
mapfile -t image < <(bash guest/build.sh)
disk1=$(new_loop disk1 64M); LOOPS+=("$disk1")
disk2=$(new_loop disk2 32M); LOOPS+=("$disk2")
if [ ! -e /dev/rdisk/disk1 ]; then
  mkdir -p /dev/rdisk && ln -s "$disk1" /dev/rdisk/disk1 && MADE_RDISK=1
fi
if ! ip link show swlan1 >/dev/null 2>&1 && ! "$BIN/hpvmnet" -S swlan1 >/dev/null 2>&1; then
  # The outside host: a namespace behind the vswitch's uplink, on VLAN 120.
  ip netns del "$OUTSIDE" 2>/dev/null || true
  ip netns add "$OUTSIDE"
  ip link add avdemo0 type veth peer name eth0 netns "$OUTSIDE"
  ip -n "$OUTSIDE" link set eth0 up
  if ip -n "$OUTSIDE" link add link eth0 name eth0.120 type vlan id 120 2>/dev/null; then
    outside_if=eth0.120
  else  # no 802.1Q in this kernel: the link itself tags VLAN 120
    ip netns exec "$OUTSIDE" "$BIN/python" -m tests.host.frames vlan-endpoint eth0 120
    outside_if=eth0
  fi
  ip -n "$OUTSIDE" addr add 169.254.120.9/16 dev "$outside_if"
  ip -n "$OUTSIDE" link set "$outside_if" up
  show "$BIN/hpvmnet" -c -S swlan1 -n avdemo0
  MADE_VSWITCH=1
  show "$BIN/hpvmnet" -b -S swlan1
  echo "(/dev/rdisk/disk1 -> $disk1; swlan1's uplink leads to a host on VLAN 120, 169.254.120.9)"
else
  if ! ip link show swlan1 >/dev/null 2>&1; then
    ip link add swlan1 type bridge && ip link set swlan1 up && MADE_BRIDGE=1
  fi
  echo "(/dev/rdisk/disk1 -> $disk1; swlan1 exists on this host already: no VLAN step)"
fi
show "$BIN/hpvmcreate" -P "$GUEST" -O hpux -a network:avio_lan::vswitch:swlan1 \
  -a hba:avio_stor::disk/dev/rdisk/disk1 -r 256M -B manual \
  --kernel "${image[0]}" --initrd "${image[1]}" \
  --cmdline "console=ttyS0 quiet avio.ip=169.254.120.1/16 avio.ping=169.254.120.9"
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

if [ -n "$MADE_VSWITCH" ]; then
  say "4. VLANs: the guest's first NIC onto VLAN 120, live"
  port=$("$BIN/hpvmstatus" -P "$GUEST" -d | awk -F: '/^network:/ {print $NF; exit}')
  mark=$(log_size)
  wait_for '^AVIO ping 169.254.120.9 fail' "$mark"
  echo "  guest: $(tail -c +"$((mark + 1))" "$LOG" | grep -m1 '^AVIO ping') (port $port: no VLAN)"
  show "$BIN/hpvmnet" -S swlan1 -u "portid:$port:vlanid:120"
  mark=$(log_size)
  wait_for '^AVIO ping 169.254.120.9 ok' "$mark"
  echo "  guest: $(tail -c +"$((mark + 1))" "$LOG" | grep -m1 '^AVIO ping 169.254.120.9 ok')"
  show "$BIN/hpvmnet" -S swlan1
fi

say "5. hpvmstatus in HPVM's own layouts"
show "$BIN/hpvmstatus"
show "$BIN/hpvmstatus" -P "$GUEST"
show "$BIN/hpvmstatus" -P "$GUEST" -V

say "6. Hot-unplug the disk again (waits for the guest to release it)"
mark=$(log_size)
show "$BIN/hpvmmodify" -P "$GUEST" -d "disk:avio_stor::disk:$disk2"
wait_for '^AVIO disk-' "$mark"
guest_says "$mark"

say "7. Clean up: guest removed (its storage is never touched), loop devices, vswitch, outside host gone"
show "$BIN/hpvmremove" -P "$GUEST" -F
