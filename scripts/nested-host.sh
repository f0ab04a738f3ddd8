#!/usr/bin/env bash
# A real Debian 12 host inside QEMU (L1), with an IOMMU, where the hardware
# paths of avio-kvm are tested (make test-nested). Run as root.
#
#   nested-host.sh build         build the L1 image (cached under .cache/nested/<recipe hash>)
#   nested-host.sh up            boot L1 (building the image first if needed), wait for ssh
#   nested-host.sh exec CMD...   run CMD in L1 as root (ssh; stdin is passed through)
#   nested-host.sh install       copy the project into L1 (/srv/avio-kvm), install it with
#                                scripts/install.sh, enable avio-agent.service
#   nested-host.sh reboot        reboot L1 and wait until it answers again
#   nested-host.sh test          up, install, the nested test subset, reboot, its after-reboot
#                                part, down; exits non-zero on any failure, cleans up always
#   nested-host.sh down          stop L1 and remove its run state
#   nested-host.sh image-dir     print the cached image's folder (make vagrant-box)
#   nested-host.sh --ssh-config FILE [--ssh-host HOST] exec|install|reboot|suite
#                                the same steps on another host reached over ssh, e.g.
#                                the Vagrant VM (`vagrant ssh-config` writes FILE; HOST
#                                defaults to `default`; commands run with sudo there)
#   nested-host.sh suite         install, the nested subset, reboot, its after-reboot
#                                part (what `test` runs between up and down)
#
# L1: q35 + intel-iommu (interrupt remapping), -cpu max, 2 vCPUs, 4 GiB, KVM
# where it works (agent/accel.py decides) else TCG; a virtio root disk (the cached
# image with snapshot=on: it stays pristine), two extra virtio disks
# (vdb, vdc) for LVM and device-mapper, an e1000e reserved for pass-through,
# and a virtio NIC on QEMU's user network with restrict=on (L1 reaches
# nothing, not even this host) on a link-local /24, its ssh port forwarded to
# 127.0.0.1 only. Environment: AVIO_NESTED_MEMORY (MiB, default 4096),
# AVIO_NESTED_CPUS (default 2), AVIO_NESTED_ACCEL (kvm|tcg), AVIO_NESTED_TIMEOUT
# (seconds L1 may take to answer after a boot, default 900).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
recipe=$repo/scripts/nested/image.sh
cache=$repo/.cache/nested
run=$repo/.cache/nested-run
ssh_config=""
ssh_host=default
if [ "${1:-}" = --ssh-config ]; then
  ssh_config=${2:?usage: nested-host.sh --ssh-config FILE [--ssh-host HOST] COMMAND}
  shift 2
  if [ "${1:-}" = --ssh-host ]; then
    ssh_host=${2:?}
    shift 2
  fi
  [ -f "$ssh_config" ] || {
    echo "nested-host: error: no ssh config $ssh_config" >&2
    exit 2
  }
  ssh_config=$(realpath "$ssh_config")
  # Its own run state (the shared ssh connection), beside L1's.
  run=$repo/.cache/nested-ssh
  mkdir -p "$run"
fi
memory=${AVIO_NESTED_MEMORY:-4096}
cpus=${AVIO_NESTED_CPUS:-2}
boot_timeout=${AVIO_NESTED_TIMEOUT:-900}
L1_NET=169.254.120
L1_REPO=/srv/avio-kvm
L1_GUEST=/var/lib/avio-nested/tiny-guest

log() { printf 'nested-host: %s %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

image_dir() {
  local hash
  hash=$(sha256sum "$recipe" | cut -c1-16)
  echo "$cache/$hash"
}

cmd_build() {
  local dir started
  dir=$(image_dir)
  if [ -f "$dir/root.img" ]; then
    log "image cached: $dir ($(du -sh --apparent-size "$dir/root.img" | cut -f1) apparent," \
      "$(du -sh "$dir/root.img" | cut -f1) on disk)"
    return 0
  fi
  command -v mmdebstrap >/dev/null || {
    log "installing mmdebstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      mmdebstrap >/dev/null
  }
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  started=$(date +%s)
  log "building the L1 image (mmdebstrap, Debian 12) into $dir"
  bash "$recipe" "$dir.tmp"
  # Older images (other recipes) are of no further use.
  find "$cache" -mindepth 1 -maxdepth 1 -not -name "$(basename "$dir").tmp" -exec rm -rf {} +
  mv "$dir.tmp" "$dir"
  log "image built in $(($(date +%s) - started)) s: $(du -sh "$dir/root.img" | cut -f1) on disk" \
    "(ext4 $(du -sh --apparent-size "$dir/root.img" | cut -f1), kernel + initrd" \
    "$(du -shc "$dir/vmlinuz" "$dir/initrd.img" | tail -n 1 | cut -f1))"
}

running() {
  # A host reached by --ssh-config is not ours to watch: it is up if it answers.
  [ -n "$ssh_config" ] && return 0
  [ -f "$run/qemu.pid" ] && kill -0 "$(cat "$run/qemu.pid")" 2>/dev/null
}

# One ssh connection to L1, shared by every command (a key exchange costs
# seconds under TCG); dropped when L1 reboots or stops.
ssh_l1() {
  if [ -n "$ssh_config" ]; then
    # The command as one string, run by root through sudo (Vagrant logs in as vagrant).
    ssh -q -F "$ssh_config" -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=15 \
      -o ServerAliveCountMax=40 -o ControlMaster=auto -o "ControlPath=$run/ssh.sock" \
      -o ControlPersist=600 "$ssh_host" sudo -n bash -c "$(printf '%q' "$*")"
    return
  fi
  ssh -q -i "$run/id_ed25519" -p "$(cat "$run/ssh_port")" \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
    -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=40 \
    -o ControlMaster=auto -o "ControlPath=$run/ssh.sock" -o ControlPersist=600 \
    root@127.0.0.1 "$@"
}

ssh_close() {
  [ -S "$run/ssh.sock" ] || return 0
  ssh -q -o "ControlPath=$run/ssh.sock" -O exit "${ssh_config:+$ssh_host}${ssh_config:-root@127.0.0.1}" \
    2>/dev/null || true
  rm -f "$run/ssh.sock"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

accel() {
  if [ -n "${AVIO_NESTED_ACCEL:-}" ]; then
    echo "$AVIO_NESTED_ACCEL"
  elif [ "$(PYTHONPATH=$repo python3 -c \
    'from agent.accel import detect_virt_type; print(detect_virt_type())')" = kvm ]; then
    echo kvm
  else
    echo tcg
  fi
}

# wait_for_l1 [OLD_BOOT_ID]: until L1 answers over ssh (with another boot id).
wait_for_l1() {
  local old=${1:-} deadline boot_id
  deadline=$(($(date +%s) + boot_timeout))
  while :; do
    running || die "L1 stopped; its console: $run/console.log"
    boot_id=$(ssh_l1 cat /proc/sys/kernel/random/boot_id 2>/dev/null) || boot_id=""
    if [ -n "$boot_id" ] && [ "$boot_id" != "$old" ]; then
      return 0
    fi
    [ "$(date +%s)" -lt "$deadline" ] || die "L1 did not answer in $boot_timeout s (console: $run/console.log)"
    sleep 1
  done
}

cmd_up() {
  local dir started mode
  if running; then
    log "L1 is already up (ssh port $(cat "$run/ssh_port"))"
    return 0
  fi
  cmd_build
  dir=$(image_dir)
  rm -rf "$run" && mkdir -p "$run"
  cp "$dir/id_ed25519" "$run/id_ed25519"
  truncate -s 2G "$run/disk1.img" "$run/disk2.img"
  free_port > "$run/ssh_port"
  mode=$(accel)
  log "booting L1 ($mode, $cpus vCPUs, $memory MiB; ssh on 127.0.0.1:$(cat "$run/ssh_port"))"
  started=$(date +%s)
  # snapshot=on: L1 writes to a temporary overlay in $run (kept across its
  # reboots, dropped with QEMU); the cached image stays pristine.
  TMPDIR=$run qemu-system-x86_64 -name avio-nested-l1 -accel "$mode" -machine q35 -cpu max \
    -smp "$cpus" -m "$memory" \
    -device intel-iommu,intremap=on \
    -drive "file=$dir/root.img,format=raw,if=virtio,snapshot=on,cache=unsafe" \
    -drive "file=$run/disk1.img,format=raw,if=virtio,cache=unsafe" \
    -drive "file=$run/disk2.img,format=raw,if=virtio,cache=unsafe" \
    -netdev "user,id=mgmt,restrict=on,net=$L1_NET.0/24,host=$L1_NET.2,dhcpstart=$L1_NET.15,hostfwd=tcp:127.0.0.1:$(cat "$run/ssh_port")-:22" \
    -device virtio-net-pci,netdev=mgmt \
    -netdev "user,id=pt,restrict=on,net=169.254.121.0/24" \
    -device e1000e,netdev=pt \
    -kernel "$dir/vmlinuz" -initrd "$dir/initrd.img" \
    -append "console=ttyS0 root=/dev/vda rw intel_iommu=on quiet" \
    -serial "file:$run/console.log" -display none -monitor none \
    -daemonize -pidfile "$run/qemu.pid"
  wait_for_l1
  echo $(($(date +%s) - started)) > "$run/boot_seconds"
  log "L1 up in $(cat "$run/boot_seconds") s"
}

cmd_exec() {
  running || die "L1 is not up (nested-host.sh up)"
  ssh_l1 "$@"
}

cmd_install() {
  local wheels tiny
  running || die "L1 is not up (nested-host.sh up)"
  [ -x "$repo/.venv/bin/python" ] || die "no $repo/.venv (make venv)"
  wheels=$run/wheels
  rm -rf "$wheels"
  log "building the project's wheel"
  "$repo/.venv/bin/python" -m pip wheel -q --no-deps -w "$wheels" "$repo" >/dev/null
  mapfile -t tiny < <(bash "$repo/guest/build.sh")
  log "copying the project, its wheel and the tiny guest into L1"
  ssh_l1 "rm -rf $L1_REPO && mkdir -p $L1_REPO/.wheels $L1_GUEST"
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard |
    tar -c --null -T - -f -) | ssh_l1 "tar -x -C $L1_REPO -f -"
  tar -c -C "$wheels" -f - . | ssh_l1 "tar -x -C $L1_REPO/.wheels -f -"
  tar -c -C "$(dirname "${tiny[0]}")" -f - "$(basename "${tiny[0]}")" "$(basename "${tiny[1]}")" |
    ssh_l1 "tar -x -C $L1_GUEST -f -"
  log "installing in L1 (scripts/install.sh)"
  ssh_l1 "AVIO_WHEELHOUSE=$L1_REPO/.wheels $L1_REPO/scripts/install.sh"
  # L1 runs under TCG: after its boot the agent's start (Python's imports, the
  # libvirt connection, the first reconcile while libvirtd boots the autoboot
  # guests) took longer than the unit's 90 s. An L1-only drop-in.
  ssh_l1 "mkdir -p /etc/systemd/system/avio-agent.service.d && printf '%s\n' \
    '[Service]' 'TimeoutStartSec=600' > /etc/systemd/system/avio-agent.service.d/nested.conf"
  # KVM for the L2 guests: udev loads kvm_amd or kvm_intel for the CPU at boot,
  # but on a loaded host its worker for cpu0 was killed after 180 s ("taking a
  # long time") and L2 fell back to TCG inside TCG. Loaded now and at each boot.
  ssh_l1 "m=\$(grep -m1 -o -w -e svm -e vmx /proc/cpuinfo | sed 's/svm/kvm_amd/; s/vmx/kvm_intel/'); \
    [ -z \"\$m\" ] || { modprobe \$m && echo \$m > /etc/modules-load.d/avio-nested-kvm.conf; }"
  log "enabling and (re)starting avio-agent.service (a second install runs the new code)"
  ssh_l1 "systemctl enable avio-agent && systemctl restart avio-agent && systemctl is-active avio-agent"
}

cmd_reboot() {
  local old started
  running || die "L1 is not up (nested-host.sh up)"
  old=$(ssh_l1 cat /proc/sys/kernel/random/boot_id)
  started=$(date +%s)
  ssh_l1 systemctl reboot || true
  ssh_close
  wait_for_l1 "$old"
  log "L1 rebooted in $(($(date +%s) - started)) s"
}

cmd_down() {
  local pid
  [ -f "$run/console.log" ] && cp "$run/console.log" "$repo/.cache/nested-console.log"
  ssh_close
  if running; then
    pid=$(cat "$run/qemu.pid")
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    log "L1 stopped"
  fi
  rm -rf "$run"
}

# pytest_in_l1 NAME ARGS...: the nested subset (or part of it) in L1; its
# output is shown here, its exit status returned.
pytest_in_l1() {
  local name=$1
  shift
  log "L1: pytest $*"
  ssh_l1 "cd $L1_REPO && AVIO_NESTED=1 AVIO_TINY_GUEST=$L1_GUEST \
    /opt/avio-kvm/bin/python -m pytest -p no:cacheprovider -v --durations=0 $*" |
    tee "$repo/.cache/nested-$name.log"
}

# l1_panicked: L1's kernel died (its last words are on its serial console).
l1_panicked() {
  [ -f "$run/console.log" ] && grep -q "Kernel panic" "$run/console.log"
}

# diagnose: after a failed test step, what L1 knows (bounded: CI shows the tail).
# shellcheck disable=SC2016 # expanded in L1
diagnose() {
  log "diagnostics from L1"
  if l1_panicked; then
    log "L1's kernel panicked (nested virtualization: L2 under KVM in L1 under TCG):"
    grep -E "BUG:|Kernel panic|RIP:|Comm:" "$run/console.log" | tail -n 8 | cut -c1-200
    return 0
  fi
  ssh_l1 'for f in /var/log/libvirt/qemu/*-console.log; do
      [ -f "$f" ] || continue
      echo "--- $f: boots $(grep -c "^AVIO ready" "$f"), last events:"
      grep -E "^AVIO (ready|disk|size|scsi|pci|nic|link)" "$f" | tail -n 12
    done
    for f in /var/log/libvirt/qemu/*.log; do
      case $f in *-console.log) continue ;; esac
      echo "--- $f:"; tail -n 6 "$f"
    done
    echo "--- avio-agent:"; journalctl -u avio-agent -o short-monotonic --no-pager | tail -n 40
    echo "--- kernel:"; dmesg | tail -n 20' 2>&1 | cut -c1-300 || true
}

# step NAME CMD...: run CMD, log how long it took; returns its status.
step() {
  local name=$1 started status=0
  shift
  started=$(date +%s)
  "$@" || status=$?
  log "$name: $(($(date +%s) - started)) s"
  return "$status"
}

# The nested subset on a host that is up: install, tests, reboot, after-reboot tests.
cmd_suite() {
  local failed=0
  step install cmd_install
  step "tests before the reboot" pytest_in_l1 before -m "'not after_reboot'" tests/nested || {
    failed=1
    diagnose
    ! l1_panicked || return 1 # nothing more can run there
  }
  step reboot cmd_reboot
  step "tests after the reboot" pytest_in_l1 after -m after_reboot tests/nested || {
    failed=1
    diagnose
  }
  [ -z "$ssh_config" ] || ssh_close
  return "$failed"
}

cmd_test() {
  local started failed=0
  started=$(date +%s)
  trap 'cmd_down' EXIT
  trap 'exit 130' INT TERM
  cmd_up
  cmd_suite || failed=1
  log "nested tests done in $(($(date +%s) - started)) s (L1 boot $(cat "$run/boot_seconds") s):" \
    "$([ "$failed" = 0 ] && echo passed || echo FAILED)"
  return "$failed"
}

if [ -n "$ssh_config" ]; then
  case "${1:-}" in
    exec | install | reboot | suite) ;;
    *)
      echo "usage: nested-host.sh --ssh-config FILE [--ssh-host HOST] exec CMD...|install|reboot|suite" >&2
      exit 2
      ;;
  esac
fi
case "${1:-}" in
  build | up | install | reboot | down | test | suite)
    [ "$(id -u)" -eq 0 ] || die "must run as root"
    "cmd_$1"
    ;;
  image-dir)
    image_dir
    ;;
  exec)
    shift
    [ $# -gt 0 ] || die "usage: nested-host.sh exec CMD..."
    cmd_exec "$@"
    ;;
  *)
    echo "usage: nested-host.sh [--ssh-config FILE [--ssh-host HOST]]" \
      "build|up|exec CMD...|install|reboot|suite|test|down|image-dir" >&2
    exit 2
    ;;
esac
