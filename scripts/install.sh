#!/usr/bin/env bash
# Install avio-kvm on this host: the commands into /opt/avio-kvm (a venv) with
# links in /usr/local/bin, the systemd unit, /etc/avio/guests and the libvirt
# qemu hook (vswitch bridges and port VLAN rules for guests libvirt starts
# itself, autostart included). Run as root after scripts/setup-host.sh.
# AVIO_WHEELHOUSE=DIR installs without network: the project from a wheel in
# DIR, its dependencies from Debian (python3-libvirt, python3-pyudev, ...).
# Enable the agent with:
#   systemctl enable --now avio-agent
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=${AVIO_PREFIX:-/opt/avio-kvm}

if [ -n "${AVIO_WHEELHOUSE:-}" ]; then
  # Offline (e.g. the nested test host): the dependencies come from Debian's
  # python3-* packages, the project from a wheel built elsewhere.
  # pip is run from Debian's pip wheel when there is one (python3-pip-whl):
  # bootstrapping pip into the venv (ensurepip) takes minutes on a slow VM.
  pip_wheels=(/usr/share/python-wheels/pip-*.whl)
  if [ -f "${pip_wheels[0]}" ]; then
    python3 -m venv --system-site-packages --without-pip "$prefix"
    pip=("$prefix/bin/python" "${pip_wheels[0]}/pip")
  else
    python3 -m venv --system-site-packages "$prefix"
    pip=("$prefix/bin/pip")
  fi
  "${pip[@]}" install -q --no-index --find-links "$AVIO_WHEELHOUSE" avio-kvm
else
  python3 -m venv "$prefix"
  "$prefix/bin/pip" install -q "$repo"
fi
install -D -m 0644 "$repo/README.md" "$prefix/share/README.md"
# Every console script of pyproject.toml: a link and its bash completion; the man pages.
mapfile -t commands < <("$prefix/bin/python" -c \
  'import sys, tomllib; print(*tomllib.load(open(sys.argv[1], "rb"))["project"]["scripts"], sep="\n")' \
  "$repo/pyproject.toml")
completions=/usr/share/bash-completion/completions
install -D -m 0644 "$repo/scripts/bash-completion/avio-kvm" "$completions/avio-kvm"
for command in "${commands[@]}"; do
  ln -sf "$prefix/bin/$command" "/usr/local/bin/$command"
  ln -sf avio-kvm "$completions/$command"
done
install -D -m 0644 -t /usr/local/share/man/man1 "$repo"/man/*.1m  # man [1m] hpvmcreate
install -D -m 0644 -t /usr/local/share/man/man8 "$repo"/man/*.8
install -D -m 0644 "$repo/systemd/avio-agent.service" /etc/systemd/system/avio-agent.service
install -d -m 0755 /etc/avio/guests
"$repo/scripts/install-libvirt-hook.sh" "$prefix/bin/avio-libvirt-hook"
# QEMU opens each guest disk with Linux native AIO, a context per disk: the kernel's
# default fs.aio-max-nr (65536) ran out at about 650 disks (bench/scale.py), and
# the next guest failed to start. Raised for 4,000 disks; never lowered.
aio_max=1048576
if [ "$(cat /proc/sys/fs/aio-max-nr 2>/dev/null || echo 0)" -lt "$aio_max" ]; then
  printf 'fs.aio-max-nr = %s\n' "$aio_max" >/etc/sysctl.d/60-avio-kvm.conf
  sysctl -q -w "fs.aio-max-nr=$aio_max" || echo "install: could not raise fs.aio-max-nr now" >&2
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
echo "installed in $prefix; start the agent with: systemctl enable --now avio-agent"
