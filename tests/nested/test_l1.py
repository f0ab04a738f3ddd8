"""In L1, a stock Debian 12 kernel under real systemd, with two tiny L2 guests.

nested-host.sh runs the tests not marked after_reboot, reboots L1, then the
after_reboot one, which finds what was made before by its fixed names (L1 is
disposable). What a guest sees is read from its own console report.

* avio-agent, running as the installed systemd unit, forwards an lvextend and
  a dm-linear table reload (device-mapper: no RESIZE=1) to a running guest;
* port VLANs on a stock kernel: two guests on one vswitch, same VLAN ping,
  another VLAN isolated;
* after the reboot the autoboot guests are back, with their vswitch (bridge
  and uplink) and port rules, and the agent forwards resizes again.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from agent.network import netlink, portfilter
from tests.host.guestkit import ConsoleLog, Host
from tests.nested.conftest import agent_active, hpvm, sh, start

pytestmark = pytest.mark.nested

MB = 2048  # 512-byte sectors per MiB
VG, LV, LINEAR = "avnvg", "avnlv", "avnlinear"
SWITCH = "avnsw"
UPLINK = "avnup0"  # a dummy NIC made by systemd-networkd: a host NIC that survives a reboot
A, B = "avn-a", "avn-b"
ADDRESS = {A: "169.254.90.1", B: "169.254.90.2"}
NETDEV = Path("/etc/systemd/network/50-avnup0.netdev")
TABLE = Path("/etc/avio-nested/avnlinear.table")
# The host's storage at boot, before libvirtd autostarts the guests: the VG
# active, the dm-linear device made again from its table.
UNIT = Path("/etc/systemd/system/avn-storage.service")
UNIT_TEXT = f"""[Unit]
Requires=dev-vdb.device dev-vdc.device
After=dev-vdb.device dev-vdc.device
Before=libvirtd.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/sbin/vgchange -ay {VG}
ExecStart=/sbin/dmsetup create {LINEAR} {TABLE}
[Install]
WantedBy=multi-user.target
"""


def console(name: str) -> ConsoleLog:
    return ConsoleLog(f"/var/log/libvirt/qemu/{name}-console.log")


def set_linear(size_mb: int, create: bool = False) -> None:
    TABLE.write_text(f"0 {size_mb * MB} linear /dev/vdc 0\n")
    if create:
        sh("dmsetup", "create", LINEAR, str(TABLE))
        return
    sh("dmsetup", "suspend", LINEAR)
    sh("dmsetup", "reload", LINEAR, str(TABLE))
    sh("dmsetup", "resume", LINEAR)


def port_vlan(port: int, vlan: int | str) -> None:
    hpvm("hpvmnet", "-S", SWITCH, "-u", f"portid:{port}:vlanid:{vlan}")


def bridge_of(nic: str) -> str | None:
    """The bridge `nic` is a port of, as the kernel shows it (sysfs)."""
    master = Path(f"/sys/class/net/{nic}/master")
    return master.resolve().name if master.exists() else None


def taps(name: str) -> list[str]:
    out = sh("virsh", "-q", "domiflist", name).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def pings(log: ConsoleLog, target: str, verdict: str, since: int) -> int:
    """Two of the guest's own ping reports with `verdict` after `since`; returns their end."""
    pattern = rf"^AVIO ping {re.escape(target)} {verdict}$"
    first = log.wait_for(pattern, timeout=600, since=since)
    return log.wait_for(pattern, timeout=300, since=first.end()).end()


def disk_at(log: ConsoleLog, target: int, since: int) -> tuple[str, int]:
    """(name, size in sectors) of the disk at SCSI target `target`, from the guest's report."""
    match = log.wait_for(rf"^AVIO disk (sd\w+) \d+:0:{target}:0 size=(\d+)", since=since)
    return match.group(1), int(match.group(2))


def agent_journal() -> str:
    return sh("journalctl", "-u", "avio-agent", "-o", "cat", "--no-pager").stdout


def grown(log: ConsoleLog, target: int, since: int, grow, size_mb: int) -> None:
    """Grow the device behind `target` with grow(); the guest reports the new size."""
    disk, _ = disk_at(log, target, since)
    mark = log.mark()
    grow()
    log.wait_for(rf"^AVIO size {disk} {size_mb * MB}$", timeout=600, since=mark)
    assert re.search(rf"resize guest={A} .*-> {size_mb * 1024 * 1024} bytes", agent_journal())


@pytest.fixture(scope="module")
def guests():
    """Storage, the vswitch and two running autoboot guests; left in place for the reboot."""
    sh("pvcreate", "-ff", "-y", "/dev/vdb")
    sh("vgcreate", VG, "/dev/vdb")
    sh("lvcreate", "-y", "-L", "8M", "-n", LV, VG)
    TABLE.parent.mkdir(exist_ok=True)
    set_linear(8, create=True)
    UNIT.write_text(UNIT_TEXT)
    sh("systemctl", "daemon-reload")
    sh("systemctl", "enable", UNIT.name)
    # At reboot libvirt-guests asks guests to shut down (ACPI, which the tiny
    # guest ignores) for 300 s by default: 5 s, then they are powered off.
    Path("/etc/default/libvirt-guests").write_text("ON_SHUTDOWN=shutdown\nSHUTDOWN_TIMEOUT=5\n")
    NETDEV.write_text(f"[NetDev]\nName={UPLINK}\nKind=dummy\n")
    sh("networkctl", "reload")
    sh("udevadm", "wait", "--timeout=120", f"/sys/class/net/{UPLINK}")
    hpvm("hpvmnet", "-c", "-S", SWITCH, "-n", UPLINK)
    hpvm("hpvmnet", "-b", "-S", SWITCH)
    port_vlan(1, 10)
    port_vlan(2, 10)
    return start(
        Host(),
        {
            A: (
                [
                    f"disk:avio_stor:0,0,1:lv:/dev/{VG}/{LV}",
                    f"disk:avio_stor:0,0,2:disk:/dev/mapper/{LINEAR}",
                    f"network:avio_lan::vswitch:{SWITCH}:portid:1",
                ],
                f"avio.ip={ADDRESS[A]}/16 avio.ping={ADDRESS[B]}",
            ),
            B: ([f"network:avio_lan::vswitch:{SWITCH}:portid:2"], f"avio.ip={ADDRESS[B]}/16"),
        },
    )


def test_the_agent_runs_as_the_installed_systemd_unit():
    agent_active()
    shown = sh(
        "systemctl",
        "show",
        "avio-agent",
        "-p",
        "Type",
        "-p",
        "ProtectSystem",
        "-p",
        "CapabilityBoundingSet",
        "-p",
        "UnitFileState",
    ).stdout
    assert "Type=notify" in shown and "ProtectSystem=strict" in shown
    assert "UnitFileState=enabled" in shown and "cap_net_admin cap_bpf" in shown
    assert (
        "/opt/avio-kvm/bin/avio-libvirt-hook"
        in Path("/etc/libvirt/hooks/qemu.d/avio-kvm").read_text()
    )


def test_l1_has_an_isolated_e1000e_and_a_scsi_tape_and_changer():
    """What pass-through needs: the e1000e alone in its IOMMU group (intel-iommu), and
    scsi_debug's tape (ptype=1) and changer (ptype=8)."""
    (nic,) = [
        dev
        for dev in Path("/sys/bus/pci/devices").iterdir()
        if (dev / "driver").exists() and (dev / "driver").resolve().name == "e1000e"
    ]
    assert [dev.name for dev in (nic / "iommu_group/devices").iterdir()] == [nic.name]
    driver = Path("/sys/bus/pseudo/drivers/scsi_debug")
    try:
        for ptype in ("1", "8"):
            # A new host is scanned asynchronously, with the ptype of the moment it
            # is scanned: wait for its device before the next ptype is set.
            (driver / "ptype").write_text(ptype)
            (driver / "add_host").write_text("1")
            deadline = time.monotonic() + 120
            while ptype not in scsi_debug_types():
                assert time.monotonic() < deadline, scsi_debug_types()
                time.sleep(0.1)
        assert sorted(scsi_debug_types()) == ["1", "8"]
    finally:
        (driver / "add_host").write_text("-2")


def scsi_debug_types() -> list[str]:
    """The SCSI peripheral type of every scsi_debug device."""
    return [
        (dev / "type").read_text().strip()
        for dev in Path("/sys/bus/scsi/devices").glob("*:*:*:*")
        if (dev / "model").read_text().strip() == "scsi_debug"
    ]


def test_lvextend_reaches_the_running_guest(guests):
    grown(guests[A], 1, 0, lambda: sh("lvextend", "-L", "24M", f"{VG}/{LV}"), 24)


def test_dm_linear_reload_reaches_the_running_guest(guests):
    grown(guests[A], 2, 0, lambda: set_linear(20), 20)


def test_port_vlans_on_a_stock_kernel(guests):
    """Same VLAN talks, another VLAN is isolated; -u moves a running guest's port."""
    log = guests[A]
    assert bridge_of(UPLINK) == SWITCH
    assert [portfilter.current(tap) for tap in taps(A) + taps(B)] == ["10", "10"]
    mark = pings(log, ADDRESS[B], "ok", 0)
    port_vlan(2, 20)
    mark = pings(log, ADDRESS[B], "fail", mark)
    port_vlan(2, 10)
    pings(log, ADDRESS[B], "ok", mark)


@pytest.mark.after_reboot
def test_after_reboot_guests_vswitch_and_rules_are_back_and_the_agent_resumes():
    host = Host()
    host.guests += [A, B]
    try:
        agent_active()
        logs = {name: console(name) for name in (A, B)}
        for log in logs.values():  # the console log is appended to: this boot's report
            log.wait_for(r"^AVIO ready(?:.|\n)*^AVIO ready", timeout=1800)
        text = logs[A].text()
        report = text.index("AVIO ready") + len("AVIO ready")  # this boot's report follows
        since = text.rindex("AVIO ready")
        assert disk_at(logs[A], 1, report)[1] == 24 * MB
        assert disk_at(logs[A], 2, report)[1] == 20 * MB
        assert bridge_of(UPLINK) == SWITCH
        assert [portfilter.current(tap) for tap in taps(A) + taps(B)] == ["10", "10"]
        mark = pings(logs[A], ADDRESS[B], "ok", since)
        port_vlan(2, 20)
        pings(logs[A], ADDRESS[B], "fail", mark)
        grown(logs[A], 1, report, lambda: sh("lvextend", "-L", "32M", f"{VG}/{LV}"), 32)
        grown(logs[A], 2, report, lambda: set_linear(28), 28)
    finally:
        host.cleanup()
        hpvm("hpvmnet", "-d", "-F", "-S", SWITCH, check=False)
        sh("systemctl", "disable", UNIT.name, check=False)
        sh("dmsetup", "remove", LINEAR, check=False)
        sh("vgremove", "-f", VG, check=False)
        NETDEV.unlink(missing_ok=True)


def test_netlink_reads_link_attributes_with_debians_pyroute2():
    """Found in L1, whose install takes the dependencies from Debian (AVIO_WHEELHOUSE)."""
    sh("ip", "link", "add", "avnprobe", "type", "bridge")
    try:
        sh("ip", "link", "add", "avnprobe0", "master", "avnprobe", "type", "dummy")
        assert bridge_of("avnprobe0") == "avnprobe"
        assert netlink.master_of("avnprobe0") == "avnprobe"
    finally:
        sh("ip", "link", "del", "avnprobe0", check=False)
        sh("ip", "link", "del", "avnprobe", check=False)
