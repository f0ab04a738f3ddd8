"""A small eBPF assembler (pure) and the `bpf(BPF_PROG_LOAD)` call for tc programs.

Only what the vswitch port rules need: 64-bit moves, 32-bit context loads,
conditional jumps to labels, AND, helper calls and exit. No compiler, no
object files: each program is a list of instructions built in Python.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from dataclasses import dataclass, replace

from agent.errors import HostError

# Opcodes (linux/bpf_common.h, linux/bpf.h).
MOV64_REG = 0xBF  # dst = src
MOV64_IMM = 0xB7  # dst = imm
AND64_IMM = 0x57  # dst &= imm
LOAD_WORD = 0x61  # dst = *(u32 *)(src + off)
JEQ_IMM = 0x15  # if dst == imm goto off
JNE_IMM = 0x55  # if dst != imm goto off
CALL = 0x85  # r0 = helper imm (r1-r5 arguments, clobbered)
EXIT = 0x95  # return r0

# Helpers (enum bpf_func_id).
SKB_VLAN_PUSH = 18
SKB_VLAN_POP = 19

PROG_TYPE_SCHED_CLS = 3
_PROG_LOAD = 5
_SYSCALL_NUMBER = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351}
_LICENSE = b"Dual MIT/GPL"


@dataclass(frozen=True)
class Insn:
    """One instruction; `off` may name a label, resolved by `assemble`."""

    code: int
    dst: int = 0
    src: int = 0
    off: int | str = 0
    imm: int = 0


def mov(dst: int, src: int) -> Insn:
    return Insn(MOV64_REG, dst, src)


def mov_imm(dst: int, imm: int) -> Insn:
    return Insn(MOV64_IMM, dst, imm=imm)


def load_word(dst: int, src: int, offset: int) -> Insn:
    return Insn(LOAD_WORD, dst, src, offset)


def and_imm(dst: int, imm: int) -> Insn:
    return Insn(AND64_IMM, dst, imm=imm)


def jump_if_equal(dst: int, imm: int, label: str) -> Insn:
    return Insn(JEQ_IMM, dst, off=label, imm=imm)


def jump_if_not_equal(dst: int, imm: int, label: str) -> Insn:
    return Insn(JNE_IMM, dst, off=label, imm=imm)


def call(helper: int) -> Insn:
    return Insn(CALL, imm=helper)


def exit_() -> Insn:
    return Insn(EXIT)


Program = list[Insn | str]  # a str is a label for the next instruction


def resolve(program: Program) -> list[Insn]:
    """The instructions with label jumps turned into relative offsets."""
    labels: dict[str, int] = {}
    count = 0
    for item in program:
        if isinstance(item, str):
            labels[item] = count
        else:
            count += 1
    resolved = []
    for item in program:
        if isinstance(item, str):
            continue
        if isinstance(item.off, str):
            if item.off not in labels:
                raise ValueError(f"unknown label {item.off!r}")
            item = replace(item, off=labels[item.off] - len(resolved) - 1)
        resolved.append(item)
    return resolved


def assemble(program: Program) -> bytes:
    """The program as the kernel takes it: 8 bytes per instruction, host byte order."""
    order = "<" if struct.pack("=H", 1) == b"\x01\x00" else ">"
    out = bytearray()
    for insn in resolve(program):
        regs = (insn.src << 4) | insn.dst if order == "<" else (insn.dst << 4) | insn.src
        out += struct.pack(f"{order}BBhi", insn.code, regs, insn.off, insn.imm)
    return bytes(out)


def load_tc_program(code: bytes, name: str) -> int:
    """Load a tc classifier program; returns its file descriptor (the caller closes it)."""
    number = _SYSCALL_NUMBER.get(platform.machine())
    if number is None:
        raise HostError(f"loading BPF programs is not supported on {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(_LICENSE)
    log = ctypes.create_string_buffer(16384)
    attr = bytearray(128)
    struct.pack_into(
        "=IIQQIIQII",
        attr,
        0,
        PROG_TYPE_SCHED_CLS,
        len(code) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(license_),
        1,  # log level: the verifier says why it refuses
        len(log),
        ctypes.addressof(log),
        0,
        0,
    )
    attr[48 : 48 + 15] = name.encode()[:15].ljust(15, b"\0")
    buffer = ctypes.create_string_buffer(bytes(attr), len(attr))
    fd = libc.syscall(number, _PROG_LOAD, buffer, len(attr))
    if fd < 0:
        errno = ctypes.get_errno()
        detail = log.value.decode(errors="replace").strip().splitlines()
        verifier = f" (verifier: {detail[-1]})" if detail else ""
        raise HostError(f"the kernel refused BPF program {name}: {os.strerror(errno)}{verifier}")
    return fd
