#!/usr/bin/env bash
# make vagrant-test: the nested test subset in a Vagrant VM, from nothing. Run as root.
#   1. make the box (scripts/vagrant-box.sh: the nested host's image, added as avio-kvm/nested)
#   2. vagrant up --provider=libvirt (provisioned with scripts/setup-host.sh)
#   3. nested-host.sh --ssh-config (vagrant ssh-config) suite: the project installed
#      with scripts/install.sh, tests/nested, a reboot, the after-reboot part
#   4. vagrant destroy -f, always, and the libvirt network Vagrant made
# Exits non-zero on any failure. Not part of .ci/run (CI time): see vagrant/README.md.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
state=$repo/.cache/vagrant-test
NETWORK=avio-vagrant # the Vagrantfile's management network
export VAGRANT_DEFAULT_PROVIDER=libvirt

log() { printf 'vagrant-test: %s %s\n' "$(date +%T)" "$*" >&2; }

# step NAME CMD...: run CMD, log how long it took; returns its status.
step() {
  local name=$1 started status=0
  shift
  started=$(date +%s)
  "$@" || status=$?
  log "$name: $(($(date +%s) - started)) s$([ "$status" = 0 ] || echo ", FAILED ($status)")"
  return "$status"
}

vagrant_() { (cd "$repo/vagrant" && vagrant "$@"); }

cleanup() {
  local status=$?
  trap - EXIT
  # The ssh connection nested-host.sh shares, if a failure left it open.
  if [ -S "$repo/.cache/nested-ssh/ssh.sock" ]; then
    ssh -q -o "ControlPath=$repo/.cache/nested-ssh/ssh.sock" -O exit default 2>/dev/null || true
  fi
  rm -rf "$repo/.cache/nested-ssh"
  step destroy vagrant_ destroy -f || status=1
  # vagrant-libvirt removes its management network with the last VM on it;
  # if a run was killed half-way, it may be left.
  if virsh -q net-info "$NETWORK" >/dev/null 2>&1; then
    virsh -q net-destroy "$NETWORK" >/dev/null 2>&1 || true
    virsh -q net-undefine "$NETWORK" >/dev/null 2>&1 || true
  fi
  rm -rf "$state"
  log "done in $(($(date +%s) - started)) s: $([ "$status" = 0 ] && echo passed || echo FAILED)"
  exit "$status"
}

[ "$(id -u)" -eq 0 ] || {
  log "error: must run as root"
  exit 1
}
started=$(date +%s)
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$state"
step box bash "$repo/scripts/vagrant-box.sh"
export AVIO_VAGRANT_BOX=avio-kvm/nested
# What an interrupted run may have left.
vagrant_ destroy -f >/dev/null 2>&1 || true
step "vagrant up" vagrant_ up --provider=libvirt
vagrant_ ssh-config > "$state/ssh-config"
step "nested suite" bash "$repo/scripts/nested-host.sh" --ssh-config "$state/ssh-config" suite
