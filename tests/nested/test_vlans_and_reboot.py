"""In L1 (a stock Debian kernel): port VLANs between two L2 guests on one vswitch,
then a reboot of L1: the autoboot guests come back with their vswitch and port
rules, and the agent resumes.

nested-host.sh runs the tests not marked after_reboot, reboots L1, then runs
the after_reboot ones: the guests, vswitch and uplink made before the reboot
are looked up by their fixed names (L1 is disposable).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent import netlink, portfilter
from tests.host.guestkit import ConsoleLog, Host, hpvm
from tests.nested.conftest import boot, sh

pytestmark = pytest.mark.nested

SWITCH = "avnsw"
UPLINK = "avnup0"  # a dummy NIC made by systemd-networkd: a host NIC that survives the reboot
A, B = "avn-a", "avn-b"
ADDRESS = {A: "169.254.90.1", B: "169.254.90.2"}
VG = "avnvg2"


def port_vlan(port: int, vlan: int | str) -> None:
    hpvm("hpvmnet", "-S", SWITCH, "-u", f"portid:{port}:vlanid:{vlan}")


def console(name: str) -> ConsoleLog:
    return ConsoleLog(f"/var/log/libvirt/qemu/{name}-console.log")


def taps(name: str) -> list[str]:
    out = sh("virsh", "-q", "domiflist", name).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def pings(log: ConsoleLog, target: str, verdict: str, since: int) -> int:
    """Wait for two of the guest's own ping reports with `verdict` after `since`."""
    first = log.wait_for(rf"^AVIO ping {re.escape(target)} {verdict}$", timeout=300, since=since)
    second = log.wait_for(
        rf"^AVIO ping {re.escape(target)} {verdict}$", timeout=120, since=first.end()
    )
    return second.end()


def test_port_vlans_on_a_stock_kernel():
    """Same VLAN talks, another VLAN is isolated, -u moves a running guest's port."""
    Path("/etc/systemd/network/50-avnup0.netdev").write_text(
        f"[NetDev]\nName={UPLINK}\nKind=dummy\n"
    )
    sh("networkctl", "reload")
    sh("udevadm", "wait", "--timeout=60", f"/sys/class/net/{UPLINK}")
    hpvm("hpvmnet", "-c", "-S", SWITCH, "-n", UPLINK)
    hpvm("hpvmnet", "-b", "-S", SWITCH)
    port_vlan(1, 10)
    port_vlan(2, 10)
    host = Host()  # no cleanup: the guests must survive the reboot
    b = boot(
        host,
        f"network:avio_lan::vswitch:{SWITCH}:portid:2",
        name=B,
        cmdline=f"avio.ip={ADDRESS[B]}/16",
        auto=True,
    )
    a = boot(
        host,
        f"network:avio_lan::vswitch:{SWITCH}:portid:1",
        name=A,
        cmdline=f"avio.ip={ADDRESS[A]}/16 avio.ping={ADDRESS[B]}",
        auto=True,
    )
    assert b.text()
    assert netlink.master_of(UPLINK) == SWITCH
    assert [portfilter.current(tap) for tap in taps(A) + taps(B)] == ["10", "10"]
    mark = pings(a, ADDRESS[B], "ok", 0)
    port_vlan(2, 20)
    mark = pings(a, ADDRESS[B], "fail", mark)
    port_vlan(2, 10)
    pings(a, ADDRESS[B], "ok", mark)


@pytest.mark.after_reboot
def test_after_reboot_guests_vswitch_and_rules_are_back_and_the_agent_resumes():
    assert sh("systemctl", "is-active", "avio-agent").stdout.strip() == "active"
    a = console(A)
    # The console log is appended to: the second report is this boot's.
    for name in (A, B):
        log = console(name)
        log.wait_for(r"^AVIO ready(?:.|\n)*^AVIO ready", timeout=600)
    since = a.text().rindex("AVIO ready")
    assert netlink.master_of(UPLINK) == SWITCH
    assert [portfilter.current(tap) for tap in taps(A) + taps(B)] == ["10", "10"]
    mark = pings(a, ADDRESS[B], "ok", since)
    port_vlan(2, 20)
    pings(a, ADDRESS[B], "fail", mark)
    # The agent, restarted by systemd at boot, forwards a resize again.
    host = Host()
    host.guests += [A, B]
    try:
        sh("pvcreate", "-ff", "-y", "/dev/vdb")
        sh("vgcreate", VG, "/dev/vdb")
        sh("lvcreate", "-y", "-L", "8M", "-n", "after", VG)
        b = console(B)
        mark = b.mark()
        hpvm("hpvmmodify", "-P", B, "-a", f"disk:avio_stor:0,0,3:lv:/dev/{VG}/after")
        disk = b.wait_for(r"^AVIO disk\+ (sd\w+) \d+:0:3:0 size=16384", timeout=300, since=mark)
        mark = b.mark()
        sh("lvextend", "-L", "16M", f"{VG}/after")
        b.wait_for(rf"^AVIO size {disk.group(1)} 32768$", timeout=300, since=mark)
    finally:
        host.cleanup()
        hpvm("hpvmnet", "-d", "-F", "-S", SWITCH, check=False)
        sh("vgremove", "-f", VG, check=False)
        Path("/etc/systemd/network/50-avnup0.netdev").unlink(missing_ok=True)
