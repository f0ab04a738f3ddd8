"""`hpvmstatus` layouts, as captured from real HPVM hosts (HPVM-REFERENCE.md section 3).

Pure formatting: the host layer gathers a `GuestStatus` per guest from libvirt.
"""

from __future__ import annotations

from dataclasses import dataclass

from translators.grammar import dashed_mac, format_statement
from translators.layout import table
from translators.model import Guest

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
            str(len(s.guest.storage)),
            str(len(s.guest.networks)),
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


def _num(value: int | None) -> str:
    return "" if value is None else str(value)


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
    lines += table(
        STORAGE_TABLE,
        [
            [
                str(d.device),
                str(d.adapter),
                _num(d.bus),
                _num(d.slot),
                "0",
                _num(d.target),
                "0",
                str(d.storage),
                d.location,
            ]
            for d in g.storage
        ],
    )
    lines += ["", "[Network Interface Details]"]
    lines += table(
        NETWORK_TABLE,
        [
            [
                "vswitch",
                str(n.adapter),
                n.vswitch,
                _num(n.portid),
                _num(n.bus),
                _num(n.slot),
                "0",
                dashed_mac(n.mac) if n.mac else "",
            ]
            for n in g.networks
        ],
    )
    lines += ["", "[Misc Interface Details]", "Guest                                 Physical"]
    lines += table(STORAGE_TABLE, [["serial", "com1", "", "", "", "", "", "tty", "console"]])
    return "\n".join(lines) + "\n"


def format_verbose_devices(guest: Guest) -> str:
    """The key:value device blocks of `hpvmstatus -P name -V`, as in the seed."""
    lines = ["[Storage Interface Details]"]
    for d in guest.storage:
        lines += [
            f"Guest Device type :{d.device}",
            f"Guest Adaptor type :{d.adapter}",
            f"Bus :{_num(d.bus)}",
            f"Device :{_num(d.slot)}",
            "Function :0",
            f"Target :{_num(d.target)}",
            "Lun :0",
            f"Physical Storage type :{d.storage}",
            f"Physical device :{d.location}",
        ]
    lines.append("[Network Interface Details]")
    for n in guest.networks:
        lines += [
            "Physical Storage type :vswitch",
            f"Guest Adaptor type :{n.adapter}",
            f"Backing :{n.vswitch}",
            f"Vswitch Port :{_num(n.portid)}",
            f"Bus :{_num(n.bus)}",
            f"Device :{_num(n.slot)}",
            "Function :0",
            f"Mac Address :{dashed_mac(n.mac) if n.mac else ''}",
        ]
    return "\n".join(lines) + "\n"


def format_statements(guest: Guest) -> str:
    """`hpvmstatus -P name -d`: `[Virtual Machine Devices]`, re-usable as a config file."""
    lines = ["[Virtual Machine Devices]", "", "[Storage Interface Details]"]
    lines += [format_statement(d) for d in guest.storage]
    lines += ["", "[Network Interface Details]"]
    lines += [format_statement(n) for n in guest.networks]
    return "\n".join(lines) + "\n"
