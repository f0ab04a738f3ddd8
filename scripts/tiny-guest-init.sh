#!/bin/busybox sh
# shellcheck shell=sh
# /init of the tiny test guest (built by scripts/build-tiny-guest.sh).
#
# Loads the storage and network drivers, brings NICs up and reports on the
# serial console, one fact per line prefixed "AVIO ", what it sees:
#   AVIO disk sda 0:0:3:0 size=2048 type=disk      (size in 512-byte sectors)
#   AVIO disk sr0 0:0:5:0 size=0 type=cdrom        (0 = no medium)
#   AVIO nic eth0 mac=2a:2e:5a:05:0a:ba
#   AVIO ready
# then every change, as the kernel sees it on its own (this init never writes
# to a SCSI scan/rescan file):
#   AVIO disk+ sdb 0:0:4:0 size=2048 type=disk    AVIO disk- sdb
#   AVIO size sda 4096                            AVIO media sr0 size=2048
#   AVIO nic+ eth1 mac=...                        AVIO nic- eth1
#   AVIO uevent ACTION SUBSYSTEM DEVPATH [KEY=VALUE...]
#
# Kernel command line:
#   avio.ip=ADDR/PREFIX        address for eth0 (tests use 169.254.0.0/16 only)
#   avio.ip.ethN=ADDR/PREFIX   address for ethN (also applied when ethN is hot-plugged)
#   avio.ping=ADDR             ping ADDR once a second: AVIO ping ADDR ok|fail
#   loglevel=N                 keep kernel messages on the console (default: quiet
#                              after boot, so they do not split AVIO lines)

PATH=/bin
export PATH
/bin/busybox mkdir -p /proc /sys /dev /run /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
[ -c /dev/ttyS0 ] && exec >/dev/ttyS0 2>&1 </dev/null

say() { echo "AVIO $*"; }

read -r cmdline </proc/cmdline
# arg NAME: the value of NAME=VALUE on the kernel command line.
arg() {
  for word in $cmdline; do
    case $word in "$1="*) echo "${word#*=}"; return 0 ;; esac
  done
  return 1
}

# A cdrom's medium change is only seen when the kernel polls the drive:
# virtio-scsi reports it (PARAM_CHANGE, asc 0x28) but the guest driver only
# acts on capacity changes. Poll every cdrom (also hot-plugged ones) twice a
# second; the media-change uevent then triggers a revalidation (below).
echo 500 >/sys/module/block/parameters/events_dfl_poll_msecs 2>/dev/null

while read -r module; do
  case $module in
    scsi_mod) insmod /lib/modules/scsi_mod.ko scan=sync ;;
    *) insmod "/lib/modules/$module.ko" ;;
  esac || say "insmod $module failed"
done </lib/modules/order
echo 500 >/sys/module/block/parameters/events_dfl_poll_msecs 2>/dev/null
# Opening a cdrom must neither lock its tray (the host could not change the
# medium) nor close it (that would race libvirt's open/insert/close).
echo 0 >/proc/sys/dev/cdrom/lock
echo 0 >/proc/sys/dev/cdrom/autoclose
arg loglevel >/dev/null || echo 1 >/proc/sys/kernel/printk

# A cdrom's medium size: sysfs keeps a stale (or 0x1fffff) capacity when the
# tray is empty, so open the drive as udev's cdrom_id would (which also makes
# the kernel revalidate it): 0 when there is no medium. Kept in
# /run/avio/media.NAME, refreshed on the kernel's media-change uevents.
mkdir -p /run/avio
cat >/bin/avio-media <<'MEDIA'
#!/bin/sh
size=$(blockdev --getsz "/dev/$1" 2>/dev/null) || size=0
echo "$size" >"/run/avio/media.$1.new" && mv -f "/run/avio/media.$1.new" "/run/avio/media.$1"
MEDIA
# The uevent hook: log the event (and refresh a cdrom's medium size).
cat >/bin/avio-uevent <<'HOOK'
#!/bin/sh
extra=""
for key in DEVNAME DISK_MEDIA_CHANGE DISK_EJECT_REQUEST RESIZE SDEV_UA SDEV_MEDIA_CHANGE INTERFACE; do
  eval "value=\${$key-}"
  [ -n "$value" ] && extra="$extra $key=$value"
done
echo "AVIO uevent $ACTION $SUBSYSTEM $DEVPATH$extra"
case "$SUBSYSTEM:$DEVNAME:$DISK_MEDIA_CHANGE$DISK_EJECT_REQUEST" in
  block:sr*:?*) avio-media "$DEVNAME" ;;
esac
HOOK
chmod 0755 /bin/avio-uevent /bin/avio-media
uevent /bin/avio-uevent &

# nic_up NAME: bring a NIC up with its avio.ip[.NAME] address.
nic_up() {
  ip link set "$1" up
  address=$(arg "avio.ip.$1") || { [ "$1" = eth0 ] && address=$(arg avio.ip); } || address=""
  [ -n "$address" ] && ip addr add "$address" dev "$1"
}
ip link set lo up

# Let every SCSI device found by the (synchronous) scan get its sd/sr block
# device: sd probes asynchronously. At most 5 s.
tries=0
while [ $tries -lt 25 ]; do
  pending=0
  for sdev in /sys/class/scsi_device/*; do
    [ -e "$sdev/device/type" ] || continue
    read -r type <"$sdev/device/type"
    case $type in 0 | 5) [ -e "$sdev"/device/block ] || pending=1 ;; esac
  done
  [ $pending = 0 ] && break
  tries=$((tries + 1))
  usleep 200000
done

# Current state, kept in shell variables st_NAME ("disk HCTL SIZE TYPE" or
# "nic MAC"); names lists the devices known. Polling uses shell builtins only.
names=""
# poll PLUS: compare sysfs with the known state and report the differences,
# "disk"/"nic" lines prefixed with PLUS ("" for the boot report, "+" later).
poll() {
  plus=$1
  seen=" "
  for dev in /sys/block/sd* /sys/block/sr*; do
    name=${dev##*/}
    size=""
    case $name in
      sr*)
        type=cdrom
        [ -e "/run/avio/media.$name" ] || avio-media "$name"
        read -r size 2>/dev/null <"/run/avio/media.$name"
        ;;
      *)
        type=disk
        read -r size 2>/dev/null <"$dev/size"
        ;;
    esac
    [ -n "$size" ] || continue
    hctl=""
    for h in "$dev"/device/scsi_device/*; do hctl=${h##*/}; done
    update "$name" "disk $hctl $size $type" "disk$plus $name $hctl size=$size type=$type"
  done
  for dev in /sys/class/net/*; do
    name=${dev##*/}
    [ "$name" = lo ] && continue
    read -r mac 2>/dev/null <"$dev/address" || continue
    update "$name" "nic $mac" "nic$plus $name mac=$mac" && nic_up "$name"
  done
  for name in $names; do
    case $seen in *" $name "*) continue ;; esac
    eval "old=\$st_$name"
    say "${old%% *}- $name"
    unset "st_$name"
    case $name in sr*) rm -f "/run/avio/media.$name" ;; esac
  done
  names=$seen
}

# update NAME STATE LINE: record NAME's state; say LINE and succeed if NAME
# is new, report a size or medium change otherwise.
update() {
  name=$1 new=$2 line=$3
  case $name in *[!a-zA-Z0-9_]*) return 1 ;; esac
  seen="$seen$name "
  eval "old=\${st_$name-}"
  eval "st_$name=\$new"
  [ "$old" = "$new" ] && return 1
  if [ -n "$old" ]; then
    # shellcheck disable=SC2086 # split "disk HCTL SIZE TYPE" into fields
    set -- $old
    old_hctl=$2
    # shellcheck disable=SC2086
    set -- $new
    if [ "$1" = disk ] && [ "$2" = "$old_hctl" ]; then
      case $4 in
        cdrom) say "media $name size=$3" ;;
        *) say "size $name $3" ;;
      esac
      return 1
    fi
    say "${old%% *}- $name"
  fi
  say "$line"
}

poll ""
say ready

if target=$(arg avio.ping); then
  while :; do
    if ping -c 1 -W 1 "$target" >/dev/null 2>&1; then
      say "ping $target ok"
    else
      say "ping $target fail"
    fi
    sleep 1
  done &
fi

while :; do
  usleep 200000
  poll +
done
