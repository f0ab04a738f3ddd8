"""In L1: avio-agent, running as the installed systemd unit, forwards device-mapper
resizes (an lvextend, a dm-linear table reload) to a running L2 guest.

Device-mapper sends no RESIZE=1: the agent re-reads the size on every block
`change` event. The guest's own console report says what it sees.
"""

from __future__ import annotations

import re

import pytest

from tests.host.guestkit import ConsoleLog, Host
from tests.nested.conftest import boot, sh

pytestmark = pytest.mark.nested

VG = "avnvg"
LV = "avnlv"
LINEAR = "avnlinear"
MB = 2048  # 512-byte sectors per MiB


def test_the_agent_runs_as_the_systemd_unit_in_its_sandbox():
    assert sh("systemctl", "is-active", "avio-agent").stdout.strip() == "active"
    shown = sh(
        "systemctl", "show", "avio-agent", "-p", "Type", "-p", "ProtectSystem",
        "-p", "CapabilityBoundingSet", "-p", "UnitFileState",
    ).stdout
    assert "Type=notify" in shown and "ProtectSystem=strict" in shown
    assert "UnitFileState=enabled" in shown
    assert "cap_net_admin cap_bpf" in shown
    hook = sh("cat", "/etc/libvirt/hooks/qemu.d/avio-kvm").stdout
    assert "/opt/avio-kvm/bin/avio-libvirt-hook" in hook


@pytest.fixture(scope="module")
def devices():
    """An LV on /dev/vdb and a dm-linear device on /dev/vdc, 8 MiB each."""
    sh("pvcreate", "-ff", "-y", "/dev/vdb")
    sh("vgcreate", VG, "/dev/vdb")
    sh("lvcreate", "-y", "-L", "8M", "-n", LV, VG)
    sh("dmsetup", "create", LINEAR, "--table", f"0 {8 * MB} linear /dev/vdc 0")
    sh("udevadm", "settle")
    yield f"/dev/{VG}/{LV}", f"/dev/mapper/{LINEAR}"
    sh("dmsetup", "remove", LINEAR, check=False)
    sh("vgremove", "-f", VG, check=False)
    sh("pvremove", "-ff", "-y", "/dev/vdb", check=False)


@pytest.fixture(scope="module")
def guest(devices):
    """One running L2 guest with the LV at target 1 and the dm-linear device at target 2."""
    lv, linear = devices
    host = Host()
    name = host.guest_name()
    log = boot(
        host,
        f"disk:avio_stor:0,0,1:lv:{lv}",
        f"disk:avio_stor:0,0,2:disk:{linear}",
        name=name,
    )
    yield name, log
    host.cleanup()


def disk_named(log: ConsoleLog, target: int) -> str:
    """The guest's name for the disk at SCSI target `target`, from its own report."""
    match = log.wait_for(rf"^AVIO disk (sd\w+) \d+:0:{target}:0 size=(\d+)")
    assert int(match.group(2)) == 8 * MB
    return match.group(1)


def agent_journal() -> str:
    return sh("journalctl", "-u", "avio-agent", "-o", "cat", "--no-pager").stdout


def test_lvextend_reaches_the_running_guest(guest):
    name, log = guest
    disk = disk_named(log, 1)
    mark = log.mark()
    sh("lvextend", "-L", "24M", f"{VG}/{LV}")
    log.wait_for(rf"^AVIO size {disk} {24 * MB}$", timeout=300, since=mark)
    assert re.search(rf"{name}.*{24 * 1024 * 1024}", agent_journal()), agent_journal()


def test_dm_linear_reload_reaches_the_running_guest(guest):
    name, log = guest
    disk = disk_named(log, 2)
    mark = log.mark()
    sh("dmsetup", "suspend", LINEAR)
    sh("dmsetup", "reload", LINEAR, "--table", f"0 {20 * MB} linear /dev/vdc 0")
    sh("dmsetup", "resume", LINEAR)
    log.wait_for(rf"^AVIO size {disk} {20 * MB}$", timeout=300, since=mark)
    assert re.search(rf"{name}.*{20 * 1024 * 1024}", agent_journal()), agent_journal()
