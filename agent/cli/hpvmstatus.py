"""`hpvmstatus`: guests and their devices in HPVM's own layouts, from live libvirt state."""

from __future__ import annotations

import sys

from agent.cli.common import EXIT_OK, connect, entry_point
from agent.cli.options import add_flags, command_parser
from agent.guests.inventory import Entry, HostView, lookup
from translators.status import (
    GuestStatus,
    format_details,
    format_statements,
    format_verbose_devices,
    format_vm_table,
    os_name,
)

PROG = "hpvmstatus"
MACHINE_FIELDS = 21


def _status(entry: Entry, numbers: dict[str, int]) -> GuestStatus:
    return GuestStatus(entry.current, numbers[entry.guest.name], entry.state)


def _numbers(all_entries: list[Entry]) -> dict[str, int]:
    """VM numbers from our metadata; guests not made by us get the next free ones."""
    numbers = {e.guest.name: e.guest.number for e in all_entries if e.guest.number is not None}
    following = max(numbers.values(), default=0)
    for entry in all_entries:
        if entry.guest.name not in numbers:
            following += 1
            numbers[entry.guest.name] = following
    return numbers


def machine_line(status: GuestStatus, entry: Entry) -> str:
    """`-M`: one colon-separated line (fields 0 name, 10 state, 11 boot, 19 vCPUs, 20 memory)."""
    g = status.guest
    fields = [""] * MACHINE_FIELDS
    fields[0] = g.name
    fields[1] = str(status.number)
    fields[2] = entry.dom.UUIDString()
    fields[3] = os_name(g)
    fields[4] = g.label or ""
    fields[5] = str(len(g.storage))
    fields[6] = str(len(g.networks))
    fields[10] = "On" if entry.active else "Off"
    fields[11] = "Auto" if g.autoboot else "Manual"
    fields[19] = str(g.vcpus)
    fields[20] = f"{g.memory_mb // 1024}GB" if g.memory_mb % 1024 == 0 else f"{g.memory_mb}MB"
    return ":".join(fields)


def status(argv: list[str]) -> int:
    parser = command_parser(
        PROG, "Show guests in HPVM's layouts.", "one guest", guest_required=False
    )
    add_flags(
        parser,
        ("-V", "verbose", "with -P: verbose device blocks"),
        ("-d", "statements", "with -P: the guest's resource statements (a valid config file)"),
        ("-M", "machine", "machine-readable"),
    )
    options = parser.parse_args(argv)
    conn = connect(options.connect)
    all_entries = HostView(conn).entries
    numbers = _numbers(all_entries)
    if options.name:
        lookup(conn, options.name)
        all_entries = [e for e in all_entries if e.guest.name == options.name]
    statuses = [(_status(e, numbers), e) for e in all_entries]
    if options.machine:
        for s, e in statuses:
            print(machine_line(s, e))
    elif not options.name:
        sys.stdout.write(format_vm_table([s for s, _ in statuses]))
    else:
        ((current, _),) = statuses
        if options.statements:
            sys.stdout.write(format_statements(current.guest))
        elif options.verbose:
            sys.stdout.write(format_verbose_devices(current.guest))
        else:
            sys.stdout.write(format_details(current))
    return EXIT_OK


COMMAND = status

main = entry_point(PROG, COMMAND)
