"""The vswitch port VLAN rules, run on a small model of the eBPF machine (no host needed).

The kernel runs the same bytes in tests/host/test_port_filter.py; here every
(port VLAN, frame) pair is checked against HPVM's rule.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.network import bpf
from agent.network.portfilter import (
    SKB_PROTOCOL,
    SKB_VLAN_PRESENT,
    SKB_VLAN_TCI,
    TC_ACT_OK,
    TC_ACT_SHOT,
    from_guest,
    to_guest,
)

IPV4 = 0x0800


@dataclass
class Frame:
    """A frame as tc sees it: `tags` outermost first; the outermost is offloaded
    (skb->vlan_tci) unless `in_band`."""

    tags: list[int] = field(default_factory=list)
    in_band: bool = False

    def field(self, offset: int) -> int:
        offloaded = bool(self.tags) and not self.in_band
        inner = self.tags[1:] if offloaded else self.tags
        if offset == SKB_VLAN_PRESENT:
            return int(offloaded)
        if offset == SKB_VLAN_TCI:
            return self.tags[0] if offloaded else 0
        if offset == SKB_PROTOCOL:
            return socket.htons(0x8100 if inner else IPV4)
        raise AssertionError(f"program read __sk_buff offset {offset}")


def run(code: bytes, frame: Frame) -> int:
    """Execute `code` (as assembled) on `frame`; returns the verdict, mutating the frame."""
    insns = [struct.unpack("=BBhi", code[i : i + 8]) for i in range(0, len(code), 8)]
    regs = [0] * 11
    regs[1] = "ctx"
    pc = 0
    for _ in range(1000):
        op, packed, off, imm = insns[pc]
        dst, src = packed & 0xF, packed >> 4
        pc += 1
        if op == bpf.MOV64_REG:
            regs[dst] = regs[src]
        elif op == bpf.MOV64_IMM:
            regs[dst] = imm
        elif op == bpf.AND64_IMM:
            regs[dst] &= imm
        elif op == bpf.LOAD_WORD:
            assert regs[src] == "ctx"
            regs[dst] = frame.field(off)
        elif op in (bpf.JEQ_IMM, bpf.JNE_IMM):
            if (regs[dst] == imm) == (op == bpf.JEQ_IMM):
                pc += off
        elif op == bpf.CALL and imm == bpf.SKB_VLAN_PUSH:
            assert regs[1] == "ctx" and regs[2] == socket.htons(0x8100)
            frame.tags.insert(0, regs[3])
            frame.in_band = False
            regs[0:6] = [0, None, None, None, None, None]
        elif op == bpf.CALL and imm == bpf.SKB_VLAN_POP:
            assert regs[1] == "ctx"
            frame.tags.pop(0)
            frame.in_band = False  # the kernel moves an inner tag to the offload slot
            regs[0:6] = [0, None, None, None, None, None]
        elif op == bpf.EXIT:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")
    raise AssertionError("program did not finish")


def send(vlan: int | None, frame: Frame) -> int:
    return run(bpf.assemble(from_guest(vlan)), frame)


def deliver(vlan: int | None, frame: Frame) -> int:
    return run(bpf.assemble(to_guest(vlan)), frame)


vlans = st.integers(1, 4094)


@given(vlans)
def test_a_port_tags_what_its_guest_sends(vlan):
    frame = Frame()
    assert send(vlan, frame) == TC_ACT_OK and frame.tags == [vlan]


def test_a_port_without_vlan_sends_untagged():
    frame = Frame()
    assert send(None, frame) == TC_ACT_OK and frame.tags == []


@given(st.one_of(st.none(), vlans), vlans, st.booleans())
def test_frames_a_guest_tags_itself_are_dropped(port, tag, in_band):
    assert send(port, Frame([tag], in_band)) == TC_ACT_SHOT


@given(vlans, st.integers(0, 7))
def test_a_port_passes_its_vlan_untagged_whatever_the_priority(vlan, pcp):
    frame = Frame([vlan | pcp << 13])
    assert deliver(vlan, frame) == TC_ACT_OK and frame.tags == []


@given(vlans, vlans)
def test_a_port_drops_other_vlans(port, other):
    if port != other:
        assert deliver(port, Frame([other])) == TC_ACT_SHOT


@given(vlans)
def test_a_vlan_port_drops_untagged_frames(vlan):
    assert deliver(vlan, Frame()) == TC_ACT_SHOT


@given(vlans, vlans)
def test_a_port_drops_double_tagged_frames(vlan, inner):
    assert deliver(vlan, Frame([vlan, inner])) == TC_ACT_SHOT


@given(vlans, st.booleans())
def test_a_port_without_vlan_gets_untagged_frames_only(tag, in_band):
    assert deliver(None, Frame()) == TC_ACT_OK
    assert deliver(None, Frame([tag], in_band)) == TC_ACT_SHOT


def test_labels_resolve_to_relative_offsets():
    program = [bpf.jump_if_equal(2, 0, "end"), bpf.mov_imm(0, 1), "end", bpf.exit_()]
    assert [i.off for i in bpf.resolve(program)] == [1, 0, 0]
    with pytest.raises(ValueError, match="unknown label"):
        bpf.resolve([bpf.jump_if_equal(2, 0, "nowhere")])
