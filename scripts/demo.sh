#!/usr/bin/env bash
# `make demo`: the main job, end to end, on this machine. Run by make after the
# host is set up (Debian packages, libvirtd) and .venv is installed.
#   1. the seed's hpvmcreate examples translated to libvirt XML;
#   2. the seed's `aviotest` guest created for real on a loop-device disk and
#      the vswitch swlan1 (hpvmnet: a Linux bridge whose uplink leads to an
#      "outside host" in a network namespace), booted (a tiny Linux guest),
#   3. then a second AVIO disk and a NIC hot-plugged; the guest reports what
#      it sees;
#   4. avio-agent started in the background (as the README says), with a
#      guests directory of the demo's own whose aviotest.conf names a LUN
#      that does not exist yet;
#   5. the guest's disk grown on the host (no command): the guest sees it;
#   6. the new LUN appears on the host: the agent plugs it, the guest sees it;
#   7. the LUN goes away and comes back: the guest sees it go and come back;
#   8. the agent's Prometheus counters;
#   9. the guest's port put on VLAN 120 live, where the outside host is;
#  10. hpvmstatus; 11. an unplug; 12. everything removed again.
# Times printed are from the host change to the guest's own console report.
# Addresses are link-local (169.254/16) and stay on this machine.
#
# Everything the demo makes is recorded under $WORK (/var/tmp/avio-demo): the
# clean-up runs from those records when the demo ends, however it ends, and
# again at the start, so a run that was killed leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
GUEST=aviotest
LOG=/var/log/libvirt/qemu/$GUEST-console.log
WORK=/var/tmp/avio-demo
GUESTS=$WORK/guests
AGENT_LOG=$WORK/agent.log
OUTSIDE=avio-demo-outside
AGENT_PID=""

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

alive() { [ -r "/proc/$1/status" ] && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"; }

# Stop the agent this demo started (its pid file, and its command line names our
# guests directory: never any other avio-agent).
stop_agent() {
  local pid _
  pid=$(cat "$WORK/agent.pid" 2>/dev/null) || return 0
  # (the agent may exit at any moment: nothing here may fail the demo)
  if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "avio-agent --guests-dir $GUESTS "; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      echo "demo: the agent did not stop within 30 s of SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    if [ "$pid" = "$AGENT_PID" ]; then wait "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$WORK/agent.pid"
}

# A loop device node (/dev/loopN) made by `losetup DEV FILE` is removed again
# (LOOP_CTL_REMOVE) once it is detached.
remove_loop_node() {
  [ -e "/sys/block/${1#/dev/}" ] || return 0
  "$BIN/python" - "${1#/dev/loop}" <<'PY'
import errno, fcntl, os, sys, time
fd = os.open("/dev/loop-control", os.O_RDWR)
for _ in range(30):  # busy while udev still looks at it
    try:
        fcntl.ioctl(fd, 0x4C81, int(sys.argv[1]))
        break
    except OSError as err:
        if err.errno != errno.EBUSY:
            break
        time.sleep(0.1)
PY
}

cleanup() {
  local status=${1:-0} -
  set +e
  [ -d "$WORK" ] || return 0
  if [ "$status" -ne 0 ] && [ -s "$AGENT_LOG" ]; then
    echo "demo: failed; the agent's log ends:" >&2
    tail -n 20 "$AGENT_LOG" >&2
  fi
  stop_agent
  "$BIN/hpvmremove" -P "$GUEST" -F >/dev/null 2>&1
  if [ -e "$WORK/made-rdisk" ]; then rm -f /dev/rdisk/disk1; rmdir /dev/rdisk 2>/dev/null; fi
  local dev
  # Every loop device backed by one of our files (also those of a killed run).
  for dev in $(losetup -l -n -O NAME,BACK-FILE | awk -v w="$WORK/" 'index($2, w) == 1 {print $1}'); do
    losetup -d "$dev"
  done
  [ -s "$WORK/lun" ] && remove_loop_node "$(cat "$WORK/lun")"
  [ -e "$WORK/made-vswitch" ] && "$BIN/hpvmnet" -d -F -S swlan1 >/dev/null 2>&1
  [ -e "$WORK/made-bridge" ] && ip link del swlan1 2>/dev/null
  if [ -e "$WORK/made-outside" ]; then
    ip link del avdemo0 2>/dev/null
    ip netns del "$OUTSIDE" 2>/dev/null
  fi
  rm -rf "$WORK"
}

# One demo at a time (they share the guest name, /dev/rdisk/disk1 and swlan1).
exec 9>/run/lock/avio-demo.lock
if ! flock -n 9; then
  echo "demo: another make demo is running; waiting for it"
  flock -w 600 9
fi
if [ -L "$WORK" ] || { [ -e "$WORK" ] && [ "$(stat -c %u "$WORK")" != 0 ]; }; then
  echo "demo: $WORK is not a directory of root's: remove it first" >&2
  exit 1
fi
if [ -d "$WORK" ]; then
  echo "demo: removing what an interrupted demo left ($WORK)"
  cleanup
fi
"$BIN/hpvmremove" -P "$GUEST" -F >/dev/null 2>&1 || true
trap 'cleanup $?' EXIT
trap 'exit 130' INT TERM HUP
mkdir -p "$GUESTS"
chmod 755 "$WORK" "$GUESTS"

new_loop() {
  truncate -s "$2" "$WORK/$1.img"
  losetup -f --show "$WORK/$1.img"
}

# The guest's console from byte $1 on (its serial line ends lines with \r\n).
console() { tail -c +"$(($1 + 1))" "$LOG" 2>/dev/null | tr -d '\r'; }

# Wait until the guest's console shows a line matching $1 (after byte $2).
wait_for() {
  local pattern=$1 since=${2:-0} _
  for _ in $(seq 1 1800); do  # 3 minutes: a TCG guest on a busy host boots slowly
    if console "$since" | grep -qE "$pattern"; then return 0; fi
    sleep 0.1
  done
  echo "demo: the guest never printed /$pattern/" >&2
  return 1
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Like wait_for, timed: prints the seconds from the host change (ms $3) to the
# first console poll that shows the line (polled every 50 ms).
wait_timed() {
  local pattern=$1 since=$2 start=$3 _ ms
  for _ in $(seq 1 1200); do
    if console "$since" | grep -qE "$pattern"; then
      ms=$(($(now_ms) - start))
      printf '  (%d.%02d s from the host change to the guest'"'"'s own report)\n' \
        $((ms / 1000)) $((ms % 1000 / 10))
      return 0
    fi
    sleep 0.05
  done
  echo "demo: the guest never printed /$pattern/" >&2
  return 1
}

guest_says() { console "$1" | grep -E '^AVIO (disk|nic|media|ready|size)' | sed 's/^/  guest: /'; }
log_size() { stat -c %s "$LOG" 2>/dev/null || echo 0; }

# The agent's log: wait for a line matching $1 (after byte $2); show its lines
# about our guest since byte $2.
agent_mark() { stat -c %s "$AGENT_LOG"; }
agent_wait() {
  local pattern=$1 since=$2 _
  for _ in $(seq 1 300); do
    if tail -c +"$((since + 1))" "$AGENT_LOG" | grep -qE "$pattern"; then return 0; fi
    alive "$AGENT_PID" || { echo "demo: avio-agent died:" >&2; cat "$AGENT_LOG" >&2; return 1; }
    sleep 0.1
  done
  echo "demo: the agent never logged /$pattern/" >&2
  return 1
}
agent_says() {
  tail -c +"$(($1 + 1))" "$AGENT_LOG" | grep -E "$GUEST|ready \(" |
    sed -E 's/^[0-9-]+ ([0-9:,]+) [a-z._-]+ /\1 /; s/^/  agent: /'
}

say "1. The seed's examples (HPVM 4.1 AVIO guide) as libvirt XML; both spellings give the same"
a=$(AVIO_VIRT_TYPE=qemu "$BIN/hpvmcreate" -P aviotest -O hpux -a network:aviolan::vswitch:swlan1 \
  -a hba:aviostor::disk/dev/rdisk/disk1 --print-xml)
b=$(AVIO_VIRT_TYPE=qemu "$BIN/hpvmcreate" -P aviotest -O hpux -a network:avio_lan::vswitch:swlan1 \
  -a hba:avio_stor::disk/dev/rdisk/disk1 --print-xml 2>/dev/null)
printf '%s\n' "$a" | grep -E '<controller|<disk|<source|<address type="drive"|<interface|<model'
[ "$a" = "$b" ] && echo "(identical XML for avio_lan/aviolan and avio_stor/aviostor)"

say "2. A real guest: the seed's aviotest on a loop device and the vswitch swlan1"
mapfile -t image < <(bash guest/build.sh)
disk1=$(new_loop disk1 64M)
disk2=$(new_loop disk2 32M)
if [ -L /dev/rdisk/disk1 ] && [ ! -e /dev/rdisk/disk1 ]; then
  rm -f /dev/rdisk/disk1  # a dangling link: names no device
fi
if [ ! -e /dev/rdisk/disk1 ]; then
  touch "$WORK/made-rdisk"
  mkdir -p /dev/rdisk && ln -s "$disk1" /dev/rdisk/disk1
fi
vlan_step=""
if ! ip link show swlan1 >/dev/null 2>&1 && ! "$BIN/hpvmnet" -S swlan1 >/dev/null 2>&1; then
  # The outside host: a namespace behind the vswitch's uplink, on VLAN 120.
  touch "$WORK/made-outside"
  ip netns del "$OUTSIDE" 2>/dev/null || true
  ip netns add "$OUTSIDE"
  ip link add avdemo0 type veth peer name eth0 netns "$OUTSIDE"
  ip -n "$OUTSIDE" link set eth0 up
  if ip -n "$OUTSIDE" link add link eth0 name eth0.120 type vlan id 120 2>/dev/null; then
    outside_if=eth0.120
  else  # no 802.1Q in this kernel: the link itself tags VLAN 120
    ip netns exec "$OUTSIDE" "$BIN/python" -m tests.host.frames vlan-endpoint eth0 120 9>&-
    outside_if=eth0
  fi
  ip -n "$OUTSIDE" addr add 169.254.120.9/16 dev "$outside_if"
  ip -n "$OUTSIDE" link set "$outside_if" up
  touch "$WORK/made-vswitch"
  show "$BIN/hpvmnet" -c -S swlan1 -n avdemo0
  show "$BIN/hpvmnet" -b -S swlan1
  vlan_step=1
  echo "(/dev/rdisk/disk1 -> $disk1; swlan1's uplink leads to a host on VLAN 120, 169.254.120.9)"
else
  if ! ip link show swlan1 >/dev/null 2>&1; then
    touch "$WORK/made-bridge"
    ip link add swlan1 type bridge && ip link set swlan1 up
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

say "4. avio-agent in the background; aviotest's config names a LUN the host does not have yet"
# The new LUN: a loop device number nobody uses (losetup -f hands out the lowest).
for lun in $(shuf -i 900-999); do
  [ -e "/sys/block/loop$lun" ] || [ -e "/dev/loop$lun" ] || break
done
lun=/dev/loop$lun
echo "$lun" >"$WORK/lun"
# The guest's config file: its settings, its devices as hpvmstatus -d prints
# them, plus the LUN; root-owned, mode 0644, written atomically (a rename).
{
  printf '%s\n' "-O hpux" "-r 256M" "-B manual"
  "$BIN/hpvmstatus" -P "$GUEST" -d
  echo "disk:avio_stor::disk:$lun"
} >"$GUESTS/.$GUEST.conf.new"
chmod 644 "$GUESTS/.$GUEST.conf.new"
mv -f "$GUESTS/.$GUEST.conf.new" "$GUESTS/$GUEST.conf"
show cat "$GUESTS/$GUEST.conf"
mport=$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf '$ %s >%s 2>&1 &\n' "$BIN/avio-agent --guests-dir $GUESTS --metrics 127.0.0.1:$mport" "$AGENT_LOG"
: >"$AGENT_LOG"
"$BIN/avio-agent" --guests-dir "$GUESTS" --metrics "127.0.0.1:$mport" >"$AGENT_LOG" 2>&1 9>&- &
AGENT_PID=$!
echo "$AGENT_PID" >"$WORK/agent.pid"
echo "(avio-agent pid $AGENT_PID; it runs until the demo ends)"
agent_wait ' ready \(' 0
agent_says 0

say "5. Host resize, no command: the guest's disk grows on the host (as a SAN LUN grows)"
mark=$(log_size) amark=$(agent_mark)
show truncate -s 96M "$WORK/disk1.img"
start=$(now_ms)
show losetup -c "$disk1"
wait_timed "^AVIO size sda $((96 * 2048))\$" "$mark" "$start"
agent_wait "resize guest=$GUEST " "$amark"
guest_says "$mark"
agent_says "$amark"

say "6. A new LUN appears on the host ($lun): the agent plugs it, no command typed"
mark=$(log_size) amark=$(agent_mark)
truncate -s 48M "$WORK/lun.img"
start=$(now_ms)
show losetup "$lun" "$WORK/lun.img"
wait_timed '^AVIO disk\+ ' "$mark" "$start"
agent_wait "attach guest=$GUEST " "$amark"
guest_says "$mark"
agent_says "$amark"
read -r lun_sd lun_hctl < <(console "$mark" | awk '/^AVIO disk\+ / {print $3, $4; exit}')

say "7. The LUN goes away and comes back"
echo "(losetup -d of a device a guest holds only marks it for release and sends no uevent;"
echo " the demo writes 'remove' to its uevent file, the event a deleted SAN LUN sends)"
mark=$(log_size) amark=$(agent_mark)
show losetup -d "$lun"
start=$(now_ms)
printf '$ echo remove > /sys/block/%s/uevent\n' "${lun#/dev/}"
echo remove >"/sys/block/${lun#/dev/}/uevent"
wait_timed "^AVIO disk- $lun_sd\$" "$mark" "$start"
agent_wait "unplug guest=$GUEST " "$amark"
guest_says "$mark"
agent_says "$amark"
for _ in $(seq 1 300); do  # once the guest let go, the loop device is released
  [ -e "/sys/block/${lun#/dev/}/loop" ] || break
  sleep 0.1
done
if [ -e "/sys/block/${lun#/dev/}/loop" ]; then
  echo "demo: $lun is still held 30 s after the guest let go of it" >&2
  exit 1
fi
echo "The LUN comes back:"
mark=$(log_size) amark=$(agent_mark)
start=$(now_ms)
show losetup "$lun" "$WORK/lun.img"
wait_timed "^AVIO disk\+ sd[a-z]+ $lun_hctl " "$mark" "$start"
agent_wait "plug guest=$GUEST .* is back" "$amark"
guest_says "$mark"
agent_says "$amark"

say "8. The agent's Prometheus counters (http://127.0.0.1:$mport/metrics)"
curl -s "http://127.0.0.1:$mport/metrics" |
  grep -E '^(avio_resizes_forwarded_total|avio_forward_latency_seconds|avio_hotplugs_total)' |
  grep -v _created | sed 's/^/  /'

if [ -n "$vlan_step" ]; then
  say "9. VLANs: the guest's first NIC onto VLAN 120, live"
  port=$("$BIN/hpvmstatus" -P "$GUEST" -d | awk -F: '/^network:/ {print $NF; exit}')
  mark=$(log_size)
  wait_for '^AVIO ping 169.254.120.9 fail' "$mark"
  echo "  guest: $(console "$mark" | grep -m1 '^AVIO ping') (port $port: no VLAN)"
  show "$BIN/hpvmnet" -S swlan1 -u "portid:$port:vlanid:120"
  mark=$(log_size)
  wait_for '^AVIO ping 169.254.120.9 ok' "$mark"
  echo "  guest: $(console "$mark" | grep -m1 '^AVIO ping 169.254.120.9 ok')"
  show "$BIN/hpvmnet" -S swlan1
fi

say "10. hpvmstatus in HPVM's own layouts"
show "$BIN/hpvmstatus"
show "$BIN/hpvmstatus" -P "$GUEST"
show "$BIN/hpvmstatus" -P "$GUEST" -V

say "11. Hot-unplug the disk again (waits for the guest to release it)"
mark=$(log_size)
show "$BIN/hpvmmodify" -P "$GUEST" -d "disk:avio_stor::disk:$disk2"
wait_for '^AVIO disk-' "$mark"
guest_says "$mark"

say "12. Clean up: agent stopped, guest removed (its storage is never touched), loop devices, vswitch, outside host gone"
stop_agent
echo "(avio-agent stopped)"
show "$BIN/hpvmremove" -P "$GUEST" -F
