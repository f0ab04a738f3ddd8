"""The few tc operations the port rules need, over a raw rtnetlink socket (stdlib only).

A clsact qdisc on a tap, a named bpf filter (direct action) on its ingress or
egress, the names of the bpf filters there, and the qdisc's removal. pyroute2
does all this too, but takes 80-300 ms to import: the libvirt hook sets port
rules at every guest start, and the agent would carry it for nothing.
Messages as in linux/rtnetlink.h, linux/pkt_sched.h and linux/pkt_cls.h.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator

RTM_NEWQDISC, RTM_DELQDISC, RTM_NEWTFILTER, RTM_GETTFILTER = 36, 37, 44, 46
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED = 0x8000
TCA_KIND, TCA_OPTIONS = 1, 2
TCA_BPF_CLASSID, TCA_BPF_FD, TCA_BPF_NAME, TCA_BPF_FLAGS = 3, 6, 7, 8
TCA_BPF_FLAG_ACT_DIRECT = 1
CLSACT_HANDLE = 0xFFFF0000
CLSACT_PARENT = 0xFFFFFFF1  # TC_H_CLSACT
INGRESS = 0xFFFFFFF2  # clsact ingress: frames the tap receives
EGRESS = 0xFFFFFFF3  # clsact egress: frames the tap sends
ETH_P_ALL = 0x0003

NLMSGHDR = struct.Struct("=IHHII")
TCMSG = struct.Struct("=BxxxiIII")
NLATTR = struct.Struct("=HH")


class TcError(OSError):
    """The kernel refused a tc request (errno, strerror)."""


def _attr(kind: int, data: bytes) -> bytes:
    size = NLATTR.size + len(data)
    return NLATTR.pack(size, kind) + data + b"\0" * (-size % 4)


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + NLATTR.size <= len(data):
        size, kind = NLATTR.unpack_from(data, offset)
        if size < NLATTR.size:
            return
        yield kind & ~NLA_F_NESTED, data[offset + NLATTR.size : offset + size]
        offset += size + (-size % 4)


def _tcmsg(ifindex: int, handle: int, parent: int, info: int = 0) -> bytes:
    return TCMSG.pack(socket.AF_UNSPEC, ifindex, handle, parent, info)


class _Rtnl:
    """One rtnetlink socket: a request, then its acknowledgement or its dump."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, kind: int, flags: int, body: bytes) -> list[bytes]:
        """Send one message; the payloads of the replies (a dump's parts), or TcError."""
        self.seq += 1
        header = NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | flags, self.seq, 0)
        self.sock.send(header + body)
        replies: list[bytes] = []
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + NLMSGHDR.size <= len(data):
                size, kind_, _flags, seq, _pid = NLMSGHDR.unpack_from(data, offset)
                payload = data[offset + NLMSGHDR.size : offset + size]
                offset += max(size + (-size % 4), NLMSGHDR.size)
                if seq != self.seq:
                    continue
                if kind_ == NLMSG_DONE:
                    return replies
                if kind_ == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", payload)
                    if code:
                        raise TcError(-code, os.strerror(-code))
                    return replies
                replies.append(payload)
                if not flags & NLM_F_DUMP:
                    return replies


def _clsact(ifindex: int) -> bytes:
    """The body of a request about the link's clsact qdisc."""
    return _tcmsg(ifindex, CLSACT_HANDLE, CLSACT_PARENT) + _attr(TCA_KIND, b"clsact\0")


def add_clsact(ifindex: int) -> None:
    """A clsact qdisc on the link, unless it has one."""
    rtnl = _Rtnl()
    try:
        rtnl.request(RTM_NEWQDISC, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, _clsact(ifindex))
    except TcError as err:
        if err.errno != errno.EEXIST:
            raise
    finally:
        rtnl.close()


def delete_clsact(ifindex: int) -> None:
    """Remove the link's clsact qdisc and its filters (none there: no error)."""
    rtnl = _Rtnl()
    try:
        rtnl.request(RTM_DELQDISC, NLM_F_ACK, _clsact(ifindex))
    except TcError as err:
        if err.errno not in (errno.ENOENT, errno.EINVAL):
            raise
    finally:
        rtnl.close()


def replace_bpf(ifindex: int, parent: int, fd: int, name: str, priority: int) -> None:
    """Put a direct-action bpf filter (program `fd`, `name`) at `priority` under `parent`."""
    options = (
        _attr(TCA_BPF_FD, struct.pack("=I", fd))
        + _attr(TCA_BPF_NAME, name.encode() + b"\0")
        + _attr(TCA_BPF_FLAGS, struct.pack("=I", TCA_BPF_FLAG_ACT_DIRECT))
        + _attr(TCA_BPF_CLASSID, struct.pack("=I", 1))
    )
    info = (priority << 16) | socket.htons(ETH_P_ALL)
    body = (
        _tcmsg(ifindex, 1, parent, info)
        + _attr(TCA_KIND, b"bpf\0")
        + _attr(TCA_OPTIONS | NLA_F_NESTED, options)
    )
    rtnl = _Rtnl()
    try:
        rtnl.request(RTM_NEWTFILTER, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, body)
    finally:
        rtnl.close()


def bpf_names(ifindex: int, parent: int) -> set[str]:
    """The names of the bpf filters under `parent` (TcError without a clsact qdisc)."""
    rtnl = _Rtnl()
    try:
        replies = rtnl.request(RTM_GETTFILTER, NLM_F_DUMP, _tcmsg(ifindex, 0, parent))
    finally:
        rtnl.close()
    names = set()
    for payload in replies:
        for kind, value in _attrs(payload[TCMSG.size :]):
            if kind != TCA_OPTIONS:
                continue
            for option, data in _attrs(value):
                if option == TCA_BPF_NAME:
                    names.add(data.rstrip(b"\0").decode(errors="replace"))
    return names
