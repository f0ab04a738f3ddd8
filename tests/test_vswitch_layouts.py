"""hpvmnet's pure parts: -u parsing, libvirt network round trip, HPVM layouts."""

from __future__ import annotations

import pytest

from tests.conftest import compare_golden
from translators.errors import HpvmError
from translators.vswitch import (
    PortRow,
    SwitchRow,
    VSwitch,
    format_ports,
    format_switches,
    parse_port_vlan,
    read_network,
    render_network,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("portid:5:vlanid:120", (5, 120)),
        ("portid:6:vlanid:none", (6, None)),
        ("portid:7:vlanid:1", (7, 1)),
        ("portid:8:vlanid:4094", (8, 4094)),
        ("PORTID:7:VLANID:4094", (7, 4094)),
    ],
)
def test_port_vlan(text, expected):
    assert parse_port_vlan(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("portid:5:vlanid:4095", "VLAN id must be 1-4094"),
        ("portid:5:vlanid:0", "VLAN id"),
        ("portid:512:vlanid:10", "port id"),
        ("port:5:vlan:10", "-u takes"),
        ("portid:x:vlanid:10", "port id"),
    ],
)
def test_bad_port_vlan(text, words):
    with pytest.raises(HpvmError, match=words):
        parse_port_vlan(text)


def test_network_round_trip():
    v = VSwitch("swlan1", 3, "eth1", True, {5: 120, 9: 30})
    assert read_network(render_network(v)) == v
    assert read_network("<network><name>default</name></network>") is None


def test_layouts_golden():
    rows = [
        SwitchRow(VSwitch("localnet", 1), "Up", None, None),
        SwitchRow(VSwitch("vlan02", 2, "lan3", True), "Up", "00:00:00:00:00:00", "192.0.2.12"),
    ]
    ports = [
        PortRow(5, "Active", "lan", 120, 1, "nfstest01"),
        PortRow(6, "Active", "lan", None, 1, "linuxvm1"),
    ]
    compare_golden("hpvmnet.txt", format_switches(rows) + "\n" + format_ports(ports))
