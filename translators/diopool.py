"""The DIO pool (`hpvmhwmgmt -p dio`): the host PCI functions guests may be given.

Pure: the pool's record (JSON text <-> `Pool`), finding a member by address or
label, and the `-l` table. The host layer (agent/devices/) reads sysfs, binds
drivers and keeps the file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from translators.devices.dio import LABEL, ROLES, parse_function
from translators.errors import HpvmError
from translators.layout import table

VERSION = 1

POOL_TABLE = [  # (title, width, right-aligned)
    ("H/W Path", 12, False),
    ("Label", 12, False),
    ("Vendor:Device", 13, False),
    ("Driver", 10, False),
    ("Group", 5, True),
    ("Guest", 20, False),
]


@dataclass
class Member:
    """One pooled PCI function, as it was when it was pooled."""

    address: str  # DDDD:BB:DD.F
    vendor: str  # 0x8086
    device: str  # 0x10d3
    role: str  # translators.devices.dio.ROLES
    host_driver: str | None = None  # the driver `-d` gives it back to
    label: str | None = None
    hwmac: str | None = None  # a physical NIC's own MAC
    group: str | None = None  # its IOMMU group
    parent: str | None = None  # the PF of a VF made by `-n`


@dataclass
class Pool:
    members: list[Member] = field(default_factory=list)

    def find(self, name: str) -> Member | None:
        """The member with this address (any spelling) or label."""
        address = parse_function(name)
        for member in self.members:
            if member.address == address or (member.label is not None and member.label == name):
                return member
        return None

    def add(self, member: Member) -> None:
        """Add a member; its address and label must be new."""
        if self.find(member.address) is not None:
            raise HpvmError(f"{member.address} is already in the DIO pool")
        if member.label is not None:
            check_label(member.label)
            taken = self.find(member.label)
            if taken is not None:
                raise HpvmError(f"label '{member.label}' is already used by {taken.address}")
        self.members.append(member)

    def remove(self, member: Member) -> None:
        self.members = [m for m in self.members if m.address != member.address]


def check_label(label: str) -> str:
    if not LABEL.fullmatch(label):
        raise HpvmError(
            f"bad label '{label}' (a letter, then letters, digits, '_', '.', '-'; at most 32)"
        )
    return label


def loads(text: str) -> Pool:
    """The pool of its JSON record; an empty text is an empty pool."""
    if not text.strip():
        return Pool()
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError("not a DIO pool record of version 1")
    members = []
    for item in data.get("members", []):
        member = Member(**item)
        if parse_function(member.address) != member.address or member.role not in ROLES:
            raise ValueError(f"bad member {item!r}")
        members.append(member)
    return Pool(members)


def dumps(pool: Pool) -> str:
    return (
        json.dumps({"version": VERSION, "members": [asdict(m) for m in pool.members]}, indent=2)
        + "\n"
    )


def format_table(pool: Pool, drivers: dict[str, str | None], guests: dict[str, str]) -> str:
    """`hpvmhwmgmt -p dio -l`: one row per member with its driver now and the guest using it."""
    rows = [
        [
            m.address,
            m.label or "",
            f"{m.vendor.removeprefix('0x')}:{m.device.removeprefix('0x')}",
            drivers.get(m.address) or "(none)",
            m.group or "",
            guests.get(m.address, ""),
        ]
        for m in sorted(pool.members, key=lambda m: m.address)
    ]
    return "\n".join(["[DIO Pool]", *table(POOL_TABLE, rows)]) + "\n"
