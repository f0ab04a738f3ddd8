#!/bin/busybox sh
# /init of the tiny test guest (busybox). Loads the storage and network
# drivers, configures NICs from the kernel command line and reports on the
# serial console, one fact per line prefixed "AVIO ", what disks and NICs it
# sees, then every change. It never triggers a SCSI rescan: what it reports
# the kernel found on its own.
#
# Kernel command line:
#   avio.ip=ADDR/PREFIX          address for eth0 (tests use 169.254.0.0/16 only)
#   avio.ip.ethN=ADDR/PREFIX     address for ethN
#   avio.vlan=ID:ADDR/PREFIX     also an 802.1Q interface eth0.ID at ADDR (the guest
#                                tags its own frames; a vswitch port must drop them)
#   avio.ping=ADDR[,ADDR...]     ping each ADDR once a second, report ok/fail
#   avio.peek=1                  report the first bytes of each disk it finds at start
#                                ("AVIO head sda <printable text>")
#   avio.tick=N                  report the guest's uptime every N seconds (a resumed
#                                guest goes on counting; a rebooted one starts over)
# A line typed on the console is reported as "AVIO typed <line>".
# shellcheck shell=sh

/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/bin

say() { echo "AVIO $*"; }

while read -r module; do
  insmod "/lib/modules/$module.ko" 2>/dev/null
done < /modules.order
# The report loop opens sr* to read the media size; never lock the tray for
# that, or the host could not change media.
echo 0 > /proc/sys/dev/cdrom/lock

cmdline_value() {
  read -r words < /proc/cmdline
  for word in $words; do
    case "$word" in "$1="*) echo "${word#*=}"; return 0 ;; esac
  done
  return 1
}

configure_nic() {
  nic=$1
  ip link set "$nic" up 2>/dev/null
  address=$(cmdline_value "avio.ip.$nic") || {
    [ "$nic" = eth0 ] && address=$(cmdline_value avio.ip)
  }
  [ -n "$address" ] && ip addr add "$address" dev "$nic" 2>/dev/null
  address=""
  [ "$nic" = eth0 ] && vlan=$(cmdline_value avio.vlan) && {
    ip link add link eth0 name "eth0.${vlan%%:*}" type vlan id "${vlan%%:*}"
    ip addr add "${vlan#*:}" dev "eth0.${vlan%%:*}"
    ip link set "eth0.${vlan%%:*}" up
  }
}

# PCI network functions (what DIO passes through) and each NIC's link state:
# "pci 00:13.0 vendor=0x8086 device=0x10d3 driver=e1000e net=eth1", "link eth1 up".
snapshot_pci() {
  # Builtins only where it runs for every device: this runs every 200 ms.
  for fn in /sys/bus/pci/devices/*; do
    [ -e "$fn/class" ] || continue
    read -r class < "$fn/class"
    case $class in 0x02*) ;; *) continue ;; esac
    address=${fn##*/}
    driver=none
    [ -e "$fn/driver" ] && driver=$(readlink "$fn/driver") && driver=${driver##*/}
    net=none
    for dir in "$fn"/net/* "$fn"/virtio*/net/*; do
      [ -e "$dir" ] && { net=${dir##*/}; break; }
    done
    read -r vendor < "$fn/vendor"
    read -r device < "$fn/device"
    echo "pci_$address pci ${address#0000:} vendor=$vendor device=$device driver=$driver net=$net"
  done
  for nic in /sys/class/net/*; do
    name=${nic##*/}
    [ "$name" = lo ] && continue
    read -r state < "$nic/operstate"
    echo "link_$name link $name $state"
  done
}

# One line per device: "<key> <report line>".
snapshot() {
  for dev in /sys/block/sd* /sys/block/sr*; do
    [ -e "$dev" ] || continue
    name=${dev##*/}
    hctl=$(basename "$(readlink "$dev/device")")
    case $name in
      sr*)
        size=$(blockdev --getsz "/dev/$name" 2>/dev/null) || size=0
        echo "disk_$name disk $name $hctl size=$size type=cdrom" ;;
      *) echo "disk_$name disk $name $hctl size=$(cat "$dev/size") type=disk" ;;
    esac
  done
  for nic in /sys/class/net/*; do
    name=${nic##*/}
    [ "$name" = lo ] && continue
    echo "nic_$name nic $name mac=$(cat "$nic/address")"
  done
  snapshot_pci
  snapshot_scsi
}

# SCSI devices: "scsi_H:C:T:L scsi H:C:T:L type=N class=st0,sg1" (the class devices
# its drivers made: scsi_tape stN, scsi_changer schN, block sdX/srN, scsi_generic sgN).
snapshot_scsi() {
  for dev in /sys/bus/scsi/devices/*:*:*:*; do
    [ -e "$dev/type" ] || continue
    hctl=${dev##*/}
    classes=""
    for class in "$dev"/scsi_tape/* "$dev"/scsi_changer/* "$dev"/block/* "$dev"/scsi_generic/*; do
      [ -e "$class" ] || continue
      name=${class##*/}
      case $name in st[0-9]*[!0-9]*) continue ;; esac # st0l, st0m, st0a: modes of st0
      case $name in nst*) continue ;; esac
      classes=${classes:+$classes,}$name
    done
    read -r type < "$dev/type" # a builtin: this runs every 200 ms, no fork per device
    echo "scsi_$hctl scsi $hctl type=$type class=${classes:-none}"
  done
}

diff_snapshots() {
  old=$1 new=$2
  while read -r key kind name rest; do
    previous=$(grep "^$key " "$old")
    if [ -z "$previous" ]; then
      say "$kind+ $name $rest"
      [ "$kind" = nic ] && configure_nic "$name"
    elif [ "$previous" != "$key $kind $name $rest" ]; then
      case "$kind:$rest" in
        pci:* | link:*) say "$kind $name $rest" ;;
        scsi:*) say "$kind $name $rest" ;; # a SCSI device's drivers bound (or let go)
        *type=cdrom*) say "media $name ${rest#* }" ;;
        *) size=${rest#* size=}; say "size $name ${size%% *}" ;;
      esac
    fi
  done < "$new"
  while read -r key kind name rest; do
    grep -q "^$key " "$new" || say "$kind- $name"
  done < "$old"
}

cat > /bin/avio-uevent <<'HOOK'
#!/bin/sh
case "$SUBSYSTEM" in block|scsi|net)
  echo "AVIO uevent $ACTION $SUBSYSTEM ${DEVNAME:-$DEVPATH} ${SDEV_UA:-} ${RESIZE:+RESIZE=$RESIZE}" ;;
esac
HOOK
chmod +x /bin/avio-uevent
uevent /bin/avio-uevent &

for nic in /sys/class/net/*; do
  [ "${nic##*/}" = lo ] || configure_nic "${nic##*/}"
done
ip link set lo up

# Lines typed on the console: a session of its own, so that the serial line is
# its controlling terminal. Started before "ready", so nothing typed is lost.
# shellcheck disable=SC2016 # expanded by the inner shell
setsid sh -c 'exec < /dev/ttyS0; while read -r line; do echo "AVIO typed $line"; done' &

: > /tmp/old
snapshot > /tmp/now
while read -r _ kind name rest; do say "$kind $name $rest"; done < /tmp/now
cmdline_value avio.peek >/dev/null && for dev in /sys/block/sd*; do
  [ -e "$dev" ] || continue
  say "head ${dev##*/} $(dd if="/dev/${dev##*/}" bs=64 count=1 2>/dev/null | tr -c 'A-Za-z0-9._-' ' ')"
done
mv /tmp/now /tmp/old
say ready

tick=$(cmdline_value avio.tick) && (
  while true; do
    read -r up _ < /proc/uptime
    say "uptime $up"
    sleep "$tick"
  done
) &

targets=$(cmdline_value avio.ping) && for target in $(echo "$targets" | tr , ' '); do
  (
    while true; do
      if ping -c 1 -W 1 "$target" >/dev/null 2>&1; then say "ping $target ok"; else say "ping $target fail"; fi
      sleep 1
    done
  ) &
done

while true; do
  usleep 200000
  snapshot > /tmp/now
  diff_snapshots /tmp/old /tmp/now
  mv /tmp/now /tmp/old
done
