"""`hpvmmodify`: change a guest; devices change live on a running guest and persist."""

from __future__ import annotations

import sys

from agent.cli.common import EXIT_OK, connect, guest_locked, run, warn
from agent.cli.options import modify_parser
from agent.guests.inventory import HostView, lookup
from agent.guests.lifecycle import change_devices, plan_devices
from agent.guests.settings import GuestSettings, apply_settings
from translators.errors import Warnings
from translators.options import statements
from translators.render import render_domain, to_string

PROG = "hpvmmodify"


def modify(argv: list[str]) -> int:
    options = modify_parser().parse_args(argv)
    warnings = Warnings()
    add = statements(options.add, warnings)
    delete = statements(options.delete, warnings)
    change = statements(options.modify, warnings)
    warn(PROG, warnings)
    conn = connect(options.connect)
    dom = lookup(conn, options.name)
    host = HostView(conn)
    if options.print_xml:
        before, after, _ = plan_devices(conn, dom, add, delete, change, host)
        sys.stdout.write(to_string(render_domain(after, before.virt_type or "qemu")))
        return EXIT_OK
    change_devices(conn, dom, add, delete, change, host)
    settings = GuestSettings(
        vcpus=options.vcpus,
        memory_mb=options.memory,
        os_type=options.os_type,
        label=options.label,
        autoboot=None if options.boot_attr is None else options.boot_attr == "auto",
    )
    if apply_settings(conn, dom, settings) and dom.isActive():
        warn(PROG, ["vCPU, memory and boot settings take effect at the next start"])
    return EXIT_OK


COMMAND = guest_locked(modify)


def main() -> None:
    sys.exit(run(PROG, COMMAND))
