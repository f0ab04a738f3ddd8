"""A vswitch port's VLAN rule, enforced by two tc BPF programs on the guest's tap.

HPVM's model (HPVM-REFERENCE section 7): a port on VLAN V carries V untagged
to the guest and tagged on the uplink; a port with no VLAN reaches only
untagged traffic; frames the guest tags itself are dropped. The bridge itself
does not filter VLANs (it need not have CONFIG_BRIDGE_VLAN_FILTERING, and its
filtering could not drop guest-tagged frames); each guest tap gets

- on ingress (frames from the guest): drop anything tagged, push V if the
  port has a VLAN;
- on egress (frames to the guest): pass only frames tagged V (popping the
  tag), or, on a port with no VLAN, only untagged frames.

The uplink carries every VLAN as it is (a trunk). Each program is named after
its rule, so `current()` reads back what a tap enforces.
"""

from __future__ import annotations

import os
import socket

from agent.errors import HostError
from agent.network import bpf, tc
from agent.network.bpf import (
    Program,
    and_imm,
    call,
    exit_,
    jump_if_equal,
    jump_if_not_equal,
    load_word,
    mov,
    mov_imm,
)

# struct __sk_buff field offsets (linux/bpf.h), all u32.
SKB_PROTOCOL = 16
SKB_VLAN_PRESENT = 20
SKB_VLAN_TCI = 24

TC_ACT_OK = 0
TC_ACT_SHOT = 2
VLAN_ID_MASK = 0x0FFF
ETH_P_8021Q = socket.htons(0x8100)  # protocols as the kernel holds them (network order)
ETH_P_8021AD = socket.htons(0x88A8)

INGRESS = tc.INGRESS  # clsact: frames the tap receives, i.e. from the guest
EGRESS = tc.EGRESS  # clsact: frames the tap sends, i.e. to the guest
PRIORITY = 49152  # tc's default first priority; one filter per direction
NAME_PREFIX = "avio-port vlan="

CTX, RESULT, SCRATCH = 6, 0, 2  # r6 keeps the context across helper calls


def _drop_if_tagged() -> Program:
    """Tagged frames (offloaded tag or in-band 802.1Q/802.1ad) go to `drop`."""
    return [
        load_word(SCRATCH, CTX, SKB_VLAN_PRESENT),
        jump_if_not_equal(SCRATCH, 0, "drop"),
        load_word(SCRATCH, CTX, SKB_PROTOCOL),
        jump_if_equal(SCRATCH, ETH_P_8021Q, "drop"),
        jump_if_equal(SCRATCH, ETH_P_8021AD, "drop"),
    ]


def _verdicts() -> Program:
    return [mov_imm(RESULT, TC_ACT_OK), exit_(), "drop", mov_imm(RESULT, TC_ACT_SHOT), exit_()]


def from_guest(vlan: int | None) -> Program:
    """Tap ingress: drop guest-tagged frames; tag the rest with the port's VLAN."""
    program: Program = [mov(CTX, 1), *_drop_if_tagged()]
    if vlan is not None:
        program += [
            mov(1, CTX),
            mov_imm(2, ETH_P_8021Q),
            mov_imm(3, vlan),
            call(bpf.SKB_VLAN_PUSH),
            jump_if_not_equal(RESULT, 0, "drop"),
        ]
    return program + _verdicts()


def to_guest(vlan: int | None) -> Program:
    """Tap egress: only the port's VLAN (untagged on the way out), or only untagged frames."""
    program: Program = [mov(CTX, 1)]
    if vlan is not None:
        program += [
            load_word(SCRATCH, CTX, SKB_VLAN_PRESENT),
            jump_if_equal(SCRATCH, 0, "drop"),
            load_word(SCRATCH, CTX, SKB_VLAN_TCI),
            and_imm(SCRATCH, VLAN_ID_MASK),
            jump_if_not_equal(SCRATCH, vlan, "drop"),
            mov(1, CTX),
            call(bpf.SKB_VLAN_POP),
            jump_if_not_equal(RESULT, 0, "drop"),
        ]
    # After the pop a second (inner) tag would surface: the guest gets no tagged frame.
    return program + _drop_if_tagged() + _verdicts()


def _label(vlan: int | None) -> str:
    """A rule as `current()` reports it: the VLAN id, or 'none'."""
    return "none" if vlan is None else str(vlan)


def rule_name(vlan: int | None) -> str:
    return f"{NAME_PREFIX}{_label(vlan)}"


def _attach(index: int, parent: int, program: Program, name: str) -> None:
    fd = bpf.load_tc_program(bpf.assemble(program), "avio_port")
    try:
        tc.replace_bpf(index, parent, fd, name, PRIORITY)
    finally:
        os.close(fd)


def _index(tap: str) -> int | None:
    try:
        return socket.if_nametoindex(tap)
    except OSError:
        return None


def apply(tap: str, vlan: int | None) -> None:
    """Make `tap` an access port of `vlan` (None: untagged only)."""
    attach(tap, ingress=from_guest(vlan), egress=to_guest(vlan), name=rule_name(vlan))


def ensure(tap: str, vlan: int | None) -> None:
    """`apply`, unless the tap enforces that rule already."""
    if current(tap) != _label(vlan):
        apply(tap, vlan)


def attach(tap: str, ingress: Program, egress: Program, name: str) -> None:
    """Put the two programs on `tap`, replacing its rule one direction at a time."""
    index = _index(tap)
    if index is None:
        return  # the guest stopped meanwhile: its tap is gone
    try:
        tc.add_clsact(index)
        # Egress first: a frame for the old VLAN is never passed to the guest.
        _attach(index, EGRESS, egress, name)
        _attach(index, INGRESS, ingress, name)
    except tc.TcError as err:
        raise HostError(f"cannot set the VLAN rule on {tap}: {err.strerror}") from None


def remove(tap: str) -> None:
    """Take the rule off `tap` (its clsact qdisc, with both programs)."""
    index = _index(tap)
    if index is not None:
        tc.delete_clsact(index)


def current(tap: str) -> str | None:
    """The rule a tap enforces ('10', 'none'), or None without a (complete) rule."""
    index = _index(tap)
    if index is None:
        return None
    names = []
    for parent in (INGRESS, EGRESS):
        try:
            names.append(tc.bpf_names(index, parent))
        except tc.TcError:
            return None
    common = names[0] & names[1]
    if len(common) != 1:
        return None
    name = common.pop()
    return name[len(NAME_PREFIX) :] if name.startswith(NAME_PREFIX) else None
