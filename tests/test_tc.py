"""agent.network.tc's rtnetlink encoding (the kernel side: tests/host/test_port_filter.py)."""

import struct

from agent.network import tc


def test_attributes_round_trip_with_padding():
    data = tc._attr(tc.TCA_KIND, b"bpf\0") + tc._attr(tc.TCA_BPF_NAME, b"avio-port vlan=10\0")
    assert len(data) % 4 == 0
    assert list(tc._attrs(data)) == [
        (tc.TCA_KIND, b"bpf\0"),
        (tc.TCA_BPF_NAME, b"avio-port vlan=10\0"),
    ]


def test_nested_flag_is_ignored_when_reading():
    inner = tc._attr(tc.TCA_BPF_FD, struct.pack("=I", 7))
    data = tc._attr(tc.TCA_OPTIONS | tc.NLA_F_NESTED, inner)
    [(kind, value)] = tc._attrs(data)
    assert kind == tc.TCA_OPTIONS
    assert list(tc._attrs(value)) == [(tc.TCA_BPF_FD, struct.pack("=I", 7))]


def test_a_truncated_attribute_ends_the_walk():
    assert list(tc._attrs(b"\x02\x00\x01\x00")) == []  # length 2 < header: no loop, no error


def test_tcmsg_layout_is_the_kernels():
    assert tc.TCMSG.size == 20 and tc.NLMSGHDR.size == 16
    assert tc._tcmsg(5, 1, tc.INGRESS, 0xC0000300)[4:8] == struct.pack("=i", 5)
