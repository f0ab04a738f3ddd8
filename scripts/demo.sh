#!/usr/bin/env bash
# `make demo`: what a newcomer should see first. Runs from the repo root with
# the project's .venv already installed by make.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export AVIO_VIRT_TYPE="${AVIO_VIRT_TYPE:-qemu}"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

say "The seed's first example (HPVM 4.1 AVIO guide), translated to libvirt XML"
show "$BIN/hpvmcreate" -P aviotest -O hpux -a network:aviolan::vswitch:swlan1 \
  -a hba:aviostor::disk/dev/rdisk/disk1 --print-xml

say "The second spelling (avio_lan/avio_stor) gives the same XML"
a=$("$BIN/hpvmcreate" -P aviotest -O hpux -a network:aviolan::vswitch:swlan1 \
  -a hba:aviostor::disk/dev/rdisk/disk1 --print-xml 2>/dev/null)
b=$("$BIN/hpvmcreate" -P aviotest -O hpux -a network:avio_lan::vswitch:swlan1 \
  -a hba:avio_stor::disk/dev/rdisk/disk1 --print-xml 2>/dev/null)
if [ "$a" = "$b" ]; then echo "identical"; else echo "DIFFERENT"; exit 1; fi

say "The seed's avioclone guest: disk at target 3, two AVIO NICs with the seed's MACs and ports"
show "$BIN/hpvmcreate" -P avioclone -O hpux \
  -a disk:avio_stor:0,0,3:disk:/dev/rdisk/disk2 \
  -a network:avio_lan:0,1,2a-2e-5a-05-0a-ba:vswitch:swlan1:portid:5 \
  -a network:avio_lan:0,2,2a-2e-5a-05-0a-bc:vswitch:swlan2:portid:9 --print-xml

say "Rules are checked before anything is touched (exit status 2, one line)"
set +e
show "$BIN/hpvmcreate" -P aviotest -a network:avio_lan::vswitch:localnet -s
echo "exit status $?"
show "$BIN/hpvmcreate" -P aviotest -a tape:avio_stor::disk:/dev/st0 -s
echo "exit status $?"
set -e
