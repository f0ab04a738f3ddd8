"""`hpvmcreate`: define a guest from HPVM options."""

from __future__ import annotations

import sys
from pathlib import Path

import libvirt

from agent.accel import detect_virt_type
from agent.backing import backing_size
from agent.cli.common import EXIT_OK, connect, run, warn
from agent.connection import libvirt_message
from agent.errors import HostError
from agent.hostcheck import check_backing
from agent.inventory import claims, next_number
from translators.allocate import complete
from translators.errors import HpvmError, Warnings
from translators.model import Guest
from translators.options import config_argv, create_parser, guest_from_options
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
        try:
            text = Path(options.config).read_text()
        except OSError as err:
            raise HpvmError(f"cannot read {options.config}: {err.strerror}") from None
        file_argv = config_argv(text, options.name, options.config, warnings)
        options = create_parser().parse_args([*file_argv, *argv])
    guest = guest_from_options(options, warnings)
    warn(PROG, warnings)
    check_guest(guest)
    guest = complete(guest)
    check_sizes(guest, backing_size)
    if options.print_xml:
        sys.stdout.write(to_string(render_domain(guest, resolve_virt_type(options.virt_type))))
        return EXIT_OK
    if options.check_only:
        return EXIT_OK
    conn = connect(options.connect)
    return define(conn, guest, resolve_virt_type(options.virt_type))


def define(conn, guest: Guest, virt_type: str) -> int:
    """Check the guest against the host and define it in libvirt."""
    try:
        conn.lookupByName(guest.name)
    except libvirt.libvirtError:
        pass
    else:
        raise HpvmError(f"guest '{guest.name}' already exists")
    host_claims = claims(conn)
    check_guest(guest, host_claims)
    guest = complete(guest, host_claims)
    for dev in guest.storage:
        check_backing(dev)
    guest.number = next_number(conn)
    xml = to_string(render_domain(guest, virt_type))
    try:
        dom = conn.defineXML(xml)
        dom.setAutostart(1 if guest.autoboot else 0)
    except libvirt.libvirtError as err:
        raise HostError(libvirt_message(err)) from None
    return EXIT_OK


COMMAND = create


def main() -> None:
    sys.exit(run(PROG, COMMAND))
