#!/usr/bin/env bash
# Install (or, with --remove, remove) the libvirt qemu hook that runs HOOK,
# the avio-libvirt-hook command of an avio-kvm install. libvirt looks for hook
# scripts when it starts, so it is restarted when the hook is new or changed.
#   install-libvirt-hook.sh /opt/avio-kvm/bin/avio-libvirt-hook
#   install-libvirt-hook.sh --remove
# HOOK may contain any character (spaces, &, quotes): it is written quoted.
# The agent answers the hook when it runs with --hook-socket (its systemd unit).
# AVIO_HOOK_TARGET=FILE installs to FILE instead, without restarting libvirtd
# (for tests).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${AVIO_HOOK_TARGET:-/etc/libvirt/hooks/qemu.d/avio-kvm}

restart_libvirtd() {
  if [ -d /run/systemd/system ]; then
    systemctl restart libvirtd
  elif pid=$(cat /run/libvirtd.pid 2>/dev/null) && kill -0 "$pid" 2>/dev/null; then
    # The host's own libvirtd only (its pid file), not other libvirtd instances.
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    libvirtd -d
    until virsh -q -c qemu:///system version >/dev/null 2>&1; do sleep 0.1; done
  fi
}

if [ "${1:-}" = --remove ]; then
  rm -f "$target"
  exit 0
fi
hook=${1:?usage: install-libvirt-hook.sh PATH-OF-avio-libvirt-hook | --remove}
shopt -u patsub_replacement 2>/dev/null || true # bash 5.2: '&' in a replacement is the match

# One sh word, single-quoted: each ' becomes '\'' (close, escaped quote, reopen).
quote() {
  local q="'\\''"
  printf "'%s'" "${1//\'/$q}"
}

# The hook asks the running agent first, through agent/hook_client.py run by the
# install's own Python (the venv beside the hook) without site-packages; where
# there is none (HOOK is another program), libvirt runs HOOK directly.
run=$(quote "$hook")
python="$(dirname "$(readlink -f "$hook")")/python"
if [ -x "$python" ] &&
  client=$("$python" -c 'import agent.hook_client as c; print(c.__file__)' 2>/dev/null) &&
  [ -f "$client" ]; then
  run="$(quote "$python") -I -S $(quote "$client") $run"
fi
template=$(cat "$repo/scripts/libvirt-qemu-hook")
wanted=${template//@RUN@/"$run"}
if [ "$(cat "$target" 2>/dev/null)" != "$wanted" ]; then
  install -d -m 0755 "$(dirname "$target")"
  printf '%s\n' "$wanted" > "$target.tmp"
  chmod 0755 "$target.tmp"
  mv "$target.tmp" "$target"
  if [ -z "${AVIO_HOOK_TARGET:-}" ]; then
    restart_libvirtd
  fi
fi
