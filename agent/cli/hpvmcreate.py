"""`hpvmcreate`: define a guest from HPVM options."""

from __future__ import annotations

import sys

from agent.accel import detect_virt_type
from agent.cli.common import EXIT_OK, connect, entry_point, guest_locked, warn
from agent.cli.options import create_parser
from agent.devices import dio
from agent.safefile import read_config_bytes
from agent.storage.backing import backing_size
from translators.allocate import complete
from translators.errors import Warnings
from translators.options import config_argv, config_text, guest_from_options
from translators.render import render_domain, to_string
from translators.validate import check_guest, check_sizes

PROG = "hpvmcreate"


def resolve_virt_type(option: str | None) -> str:
    """--virt-type, else $AVIO_VIRT_TYPE, else what the host can run."""
    return option or detect_virt_type()


def create(argv: list[str]) -> int:
    options = create_parser().parse_args(argv)
    warnings = Warnings()
    if options.config:
        # A regular file only (a FIFO or /dev/zero is refused unread), bounded; then text.
        text = config_text(read_config_bytes(options.config, trusted=False), options.config)
        file_argv = config_argv(text, options.name, options.config, warnings)
        options = create_parser().parse_args([*file_argv, *argv])
    guest = guest_from_options(options, warnings)
    warn(PROG, warnings)
    dio.resolve_guest(guest)  # DIO functions: only pool members (their host facts)
    check_guest(guest)
    check_sizes(guest, backing_size)
    if options.print_xml or options.check_only:
        from agent.devices import scsi

        scsi.check_devices(guest.devices)  # attached devices: their host address and type
        # no hypervisor needed: addresses allocated within the guest alone
        guest = complete(guest)
        if options.print_xml:
            xml = to_string(render_domain(guest, resolve_virt_type(options.virt_type)))
            sys.stdout.write(xml)
        return EXIT_OK
    # On the host, omitted MACs and ports are allocated against the other guests.
    # (libvirt is imported only here: --print-xml and -s need no hypervisor.)
    from agent.guests.lifecycle import define_guest

    define_guest(connect(options.connect), guest, resolve_virt_type(options.virt_type))
    return EXIT_OK


COMMAND = guest_locked(create)

main = entry_point(PROG, COMMAND)
