"""Bad input against a real libvirtd: exit 2 or 1, one line, domain XML unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import hpvmcreate, hpvmmodify, hpvmremove, hpvmstart
from tests.host.conftest import domain_xml, sh


@pytest.fixture
def defined_guest(cli, loopdev, bridge, guest_name):
    """A defined (stopped) guest with one AVIO disk at target 3 and one NIC."""
    name, disk, br = guest_name(), loopdev(), bridge()
    result = cli(
        hpvmcreate,
        [
            "-P",
            name,
            "-O",
            "linux",
            "-r",
            "128M",
            "-a",
            f"disk:avio_stor:0,0,3:disk:{disk}",
            "-a",
            f"network:avio_lan::vswitch:{br}",
        ],
    )
    assert result.code == 0, result.err
    return name, disk, br


def test_created_guest_reads_back(cli, defined_guest):
    name, disk, br = defined_guest
    xml = domain_xml(name)
    assert f"dev='{disk}'" in xml and f"bridge='{br}'" in xml and "urn:avio-kvm:hpvm:1" in xml


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("missing device", 2, "does not exist"),
        ("mounted device", 2, "mounted"),
        ("device of another guest", 2, "already used by guest"),
        ("duplicate target", 2, "already used"),
        ("129th AVIO device", 2, "more than 128 AVIO"),
        ("unknown device to delete", 2, "no such device"),
        ("bus without bridge on a running guest", 1, "does not exist in the running guest"),
    ],
)
def test_bad_modify_changes_nothing(
    cli, defined_guest, loopdev, guest_name, tmp_path, case, code, words
):
    name = defined_guest[0]
    argv: list[str]
    if case == "missing device":
        argv = ["-a", "disk:avio_stor::disk:/dev/avio-missing"]
    elif case == "mounted device":
        dev = loopdev()
        sh("mkfs.ext4", "-q", dev)
        (tmp_path / "m").mkdir()
        sh("mount", dev, str(tmp_path / "m"))
        argv = ["-a", f"disk:avio_stor::disk:{dev}"]
    elif case == "device of another guest":
        other, dev = guest_name(), loopdev()
        assert cli(hpvmcreate, ["-P", other, "-a", f"disk:avio_stor::disk:{dev}"]).code == 0
        argv = ["-a", f"disk:avio_stor::disk:{dev}"]
    elif case == "duplicate target":
        argv = ["-a", f"disk:avio_stor:0,0,3:disk:{loopdev()}"]
    elif case == "129th AVIO device":
        argv = [a for i in range(128) for a in ("-a", f"disk:avio_stor::file:/nonexistent/{i}")]
    elif case == "unknown device to delete":
        argv = ["-d", "disk:avio_stor::disk:/dev/avio-missing"]
    else:
        assert cli(hpvmstart, ["-P", name]).code == 0
        argv = ["-a", f"disk:avio_stor:2,0,0:disk:{loopdev()}"]
    before = (domain_xml(name), domain_xml(name, inactive=False))
    result = cli(hpvmmodify, ["-P", name, *argv])
    try:
        assert result.code == code, result.err
        assert len(result.err.splitlines()) == 1 and words in result.err
        assert result.out == ""
        assert (domain_xml(name), domain_xml(name, inactive=False)) == before
    finally:
        if case == "mounted device":
            sh("umount", str(tmp_path / "m"))


def test_create_refusals_define_nothing(cli, loopdev, guest_name, defined_guest):
    _, disk, _ = defined_guest
    name = guest_name()
    result = cli(hpvmcreate, ["-P", name, "-a", f"disk:avio_stor::disk:{disk}"])
    assert result.code == 2 and "already used by guest" in result.err
    result = cli(hpvmcreate, ["-P", defined_guest[0], "-a", f"disk:avio_stor::disk:{loopdev()}"])
    assert result.code == 2 and "already exists" in result.err


def test_remove_keeps_backing(cli, defined_guest):
    name, disk, _ = defined_guest
    assert cli(hpvmremove, ["-P", name]).code == 0
    result = cli(hpvmremove, ["-P", name])
    assert result.code == 2 and "no guest named" in result.err
    assert sh("losetup", "-l", "-n", "-O", "NAME", disk) == disk


def test_settings_change_persists(cli, defined_guest):
    from agent.cli import hpvmstatus

    name = defined_guest[0]
    result = cli(
        hpvmmodify,
        [
            "-P",
            name,
            "-c",
            "2",
            "-r",
            "256M",
            "-O",
            "hpux",
            "-B",
            "manual",
            "-l",
            "Clone-cluster 01",
        ],
    )
    assert result.code == 0, result.err
    table = cli(hpvmstatus, ["-P", name]).out
    assert f"{name:<20}" in table and "HPUX" in table and " 256 MB" in table
    machine = cli(hpvmstatus, ["-M", "-P", name]).out.strip().split(":")
    assert (machine[0], machine[11], machine[19], machine[20]) == (name, "Manual", "2", "256MB")
    assert "<title>Clone-cluster 01</title>" in domain_xml(name)


def test_modify_of_a_stopped_guest_changes_its_config(cli, defined_guest, loopdev):
    name = defined_guest[0]
    spare = loopdev()
    result = cli(hpvmmodify, ["-P", name, "-a", f"disk:avio_stor::disk:{spare}"])
    assert result.code == 0, result.err
    assert f"dev='{spare}'" in domain_xml(name)
    result = cli(hpvmmodify, ["-P", name, "-d", f"disk:avio_stor::disk:{spare}"])
    assert result.code == 0, result.err
    assert spare not in domain_xml(name)


def test_mac_of_a_host_interface_is_refused(cli, guest_name):
    link = f"avtmac{guest_name()[-5:]}"
    sh("ip", "link", "add", link, "type", "veth", "peer", "name", link + "p")
    sh("udevadm", "settle")  # udev may give a new veth another MAC
    try:
        mac = Path(f"/sys/class/net/{link}/address").read_text().strip()
        statement = f"network:lan:,,{mac.replace(':', '-')}:vswitch:sw1"
        result = cli(hpvmcreate, ["-P", guest_name(), "-a", statement])
        if int(mac[:2], 16) & 0x02 == 0:
            pytest.skip("the veth got a universally administered MAC")
        assert result.code == 2 and f"host interface {link}" in result.err
    finally:
        sh("ip", "link", "del", link)
