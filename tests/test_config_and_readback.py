"""Guest config files, and reading domains back into the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import DATA
from translators.errors import HpvmError
from translators.grammar import format_statement
from translators.model import Adapter, DeviceType, StorageType
from translators.options import parse_config_file, parse_config_text
from translators.readback import read_domain


def test_avioclone_config():
    config = parse_config_file(DATA / "avioclone.conf")
    guest = config.guest
    assert guest.name == "avioclone" and guest.os_type == "hpux"
    assert [format_statement(d) for d in guest.devices] == [
        "disk:avio_stor:0,0,3:disk:/dev/rdisk/disk2",
        "network:avio_lan:0,1,0x2A2E5A050ABA:vswitch:swlan1:portid:5",
        "network:avio_lan:0,2,0x2A2E5A050ABC:vswitch:swlan2:portid:9",
    ]


def test_design_example_config():
    text = """
-O hpux
-c 2
-r 2G
-a network:avio_lan::vswitch:swlan1:portid:5
-a disk:avio_stor:0,1,3:disk:/dev/disk/by-id/wwn-0x5000c500a1b2c3d4
"""
    guest = parse_config_text(text, "g1").guest
    assert (guest.vcpus, guest.memory_mb) == (2, 2048)
    assert guest.storage[0].location == "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"
    assert guest.networks[0].portid == 5


def test_hpvmstatus_d_layout_is_a_config():
    text = """[Virtual Machine Devices]

[Storage Interface Details]
disk:scsi:0,0,0:lv:/dev/vg_vmtest/rvmnode2disk
disk:avio_stor:0,4,1:lv:/dev/vg01/rlvol1

[Network Interface Details]
network:lan:0,1,0xB20EBA14E76C:vswitch:localnet
network:avio_lan:0,2,0x66F3F84E37D5:vswitch:vlan1:portid:4

[Misc Interface Details]
serial:com1::tty:console
"""
    config = parse_config_text(text, "ivm1", "ivm1.conf")
    assert len(config.guest.storage) == 2 and len(config.guest.networks) == 2
    assert config.guest.networks[0].mac == "b2:0e:ba:14:e7:6c"
    assert any("serial:com1::tty:console" in w for w in config.warnings)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("-O hpux\n-a disk:avio_stor:0,0,999x:disk:/dev/sdb\n", "g.conf:2:"),
        ("# c\n\n-r lots\n", "g.conf:3:"),
        ("-P other\n", "g.conf:1:"),
        ("-a 'unbalanced\n", "g.conf:1:"),
        ("-Q 1\n", "g.conf:1:"),
    ],
)
def test_config_errors_name_file_and_line(text, where):
    with pytest.raises(HpvmError) as err:
        parse_config_text(text, "g", "g.conf")
    assert str(err.value).startswith(where)


def test_read_virt_install_domain():
    guest = read_domain((DATA / "virt-install-vmx.xml").read_bytes())
    assert (guest.name, guest.vcpus, guest.memory_mb, guest.os_type) == ("vmx", 2, 512, "linux")
    scsi, virtio = guest.storage
    assert (scsi.adapter, scsi.device, scsi.storage) == (
        Adapter.AVIO_STOR,
        DeviceType.DISK,
        StorageType.FILE,
    )
    assert virtio.adapter is Adapter.AVIO_STOR and virtio.location == "/tmp/vi-disk.img"
    assert [(n.adapter, n.vswitch, n.mac) for n in guest.networks] == [
        (Adapter.AVIO_LAN, "br0", "52:54:00:12:34:56"),
        (Adapter.LAN, "br1", "52:54:00:12:34:57"),
    ]
    assert not guest.autoboot


@pytest.mark.parametrize("golden", ["dio.xml", "scsi-passthrough.xml", "seed-aviotest.xml"])
def test_reading_some_kinds_gives_their_devices_as_a_full_read(golden):
    from translators.devices.registry import KINDS

    xml = (Path(__file__).parent / "golden" / golden).read_text()
    full = read_domain(xml)
    for kind in KINDS:
        some = read_domain(xml, kinds=(kind,))
        assert some.of_kind(kind) == full.of_kind(kind), kind.__name__
        assert all(not some.of_kind(other) for other in KINDS if other is not kind)
