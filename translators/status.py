"""`hpvmstatus` layouts, as captured from real HPVM hosts (HPVM-REFERENCE.md section 3).

Pure formatting: the host layer gathers a `GuestStatus` per guest from libvirt.
The tables' framing is here; each kind gives its rows (`Device.status_row`,
`status_lines`) and the section they go in (`Device.SECTION`).
"""

from __future__ import annotations

from dataclasses import dataclass

from translators.layout import table
from translators.model import Device, Guest

OS_NAMES = {"hpux": "HPUX", "linux": "LINUX", "windows": "WINDOWS", "openvms": "OPENVMS"}
VM_TABLE = [  # (title, width, right-aligned)
    ("Virtual Machine Name", 20, False),
    ("VM #", 5, True),
    ("OS Type", 7, False),
    ("State", 9, False),
    ("#VCPUs", 6, True),
    ("#Devs", 5, True),
    ("#Nets", 5, True),
    ("Memory", 7, True),
    ("Runsysid", 8, True),
]


@dataclass
class GuestStatus:
    """What `hpvmstatus` shows of one guest: its model plus live facts."""

    guest: Guest
    number: int
    state: str  # "On (OS)", "Off", ...
    runsysid: int = 0


def os_name(guest: Guest) -> str:
    return OS_NAMES.get(guest.os_type, guest.os_type.upper())


def memory_text(megabytes: int) -> str:
    """`2 GB` when whole gigabytes, else `512 MB` (HPVM's table style)."""
    if megabytes % 1024 == 0:
        return f"{megabytes // 1024} GB"
    return f"{megabytes} MB"


def format_vm_table(statuses: list[GuestStatus]) -> str:
    """`hpvmstatus` with no options: the `[Virtual Machines]` table."""
    rows = [
        [
            s.guest.name,
            str(s.number),
            os_name(s.guest),
            s.state,
            str(s.guest.vcpus),
            str(len(_section(s.guest, "storage"))),
            str(len(_section(s.guest, "network"))),
            memory_text(s.guest.memory_mb),
            str(s.runsysid),
        ]
        for s in statuses
    ]
    return "\n".join(["[Virtual Machines]", *table(VM_TABLE, rows)]) + "\n"


STORAGE_TABLE = [
    ("Device", 7, False),
    ("Adaptor", 10, False),
    ("Bus", 3, True),
    ("Dev", 3, True),
    ("Ftn", 3, True),
    ("Tgt", 3, True),
    ("Lun", 3, True),
    ("Storage", 9, False),
    ("Device", 25, False),
]
NETWORK_TABLE = [
    ("Interface", 9, False),
    ("Adaptor", 10, False),
    ("Name/Num", 10, False),
    ("PortNum", 7, False),
    ("Bus", 3, True),
    ("Dev", 3, True),
    ("Ftn", 3, True),
    ("Mac Address", 17, False),
]


def _section(guest: Guest, section: str) -> list[Device]:
    """The devices whose rows go in one section ("storage" or "network"), kind by kind."""
    return [d for d in guest.devices if section == d.SECTION]


def format_details(status: GuestStatus) -> str:
    """`hpvmstatus -P name`: the tabular detail sections."""
    g = status.guest
    lines = ["[Virtual Machine Details]"]
    lines += table(VM_TABLE[:4], [[g.name, str(status.number), os_name(g), status.state]])
    lines += [
        "",
        "[Authorized Administrators]",
        "Oper Groups:",
        "Admin Groups:",
        "Oper Users:",
        "Admin Users:",
    ]
    lines += [
        "",
        "[Virtual CPU Details]",
        "#vCPUs Entitlement Maximum",
        "====== =========== =======",
        f"{g.vcpus:>2}       10.0%  100.0%",
    ]
    lines += [
        "",
        "[Memory Details]",
        "Total    Reserved",
        "Memory   Memory",
        "=======  ========",
        f" {memory_text(g.memory_mb)}     64 MB",
    ]
    lines += ["", "[Storage Interface Details]", "Guest                                 Physical"]
    lines += table(STORAGE_TABLE, [d.status_row() for d in _section(g, "storage")])
    lines += ["", "[Network Interface Details]"]
    lines += table(NETWORK_TABLE, [d.status_row() for d in _section(g, "network")])
    lines += ["", "[Misc Interface Details]", "Guest                                 Physical"]
    lines += table(STORAGE_TABLE, [["serial", "com1", "", "", "", "", "", "tty", "console"]])
    return "\n".join(lines) + "\n"


def format_verbose_devices(guest: Guest) -> str:
    """The key:value device blocks of `hpvmstatus -P name -V`, as in the seed."""
    lines = ["[Storage Interface Details]"]
    for d in _section(guest, "storage"):
        lines += d.status_lines()
    lines.append("[Network Interface Details]")
    for d in _section(guest, "network"):
        lines += d.status_lines()
    return "\n".join(lines) + "\n"


def format_statements(guest: Guest) -> str:
    """`hpvmstatus -P name -d`: `[Virtual Machine Devices]`, re-usable as a config file."""
    lines = ["[Virtual Machine Devices]", "", "[Storage Interface Details]"]
    lines += [d.format() for d in _section(guest, "storage")]
    lines += ["", "[Network Interface Details]"]
    lines += [d.format() for d in _section(guest, "network")]
    return "\n".join(lines) + "\n"
