"""`hpvmcreate`: define a guest from HPVM options."""

from __future__ import annotations

import os
import sys

from agent.backing import backing_size
from agent.cli.common import EXIT_INPUT, EXIT_OK, fail, run, warn
from translators.allocate import complete
from translators.errors import Warnings
from translators.options import create_parser, guest_from_options
from translators.render import render_domain, to_string
from translators.validate import check_guest, check_sizes

PROG = "hpvmcreate"


def resolve_virt_type(option: str | None) -> str:
    """--virt-type, else $AVIO_VIRT_TYPE, else what the host can run."""
    if option:
        return option
    if os.environ.get("AVIO_VIRT_TYPE") in ("kvm", "qemu"):
        return os.environ["AVIO_VIRT_TYPE"]
    from agent.virt_type import detect_virt_type

    return detect_virt_type()


def create(argv: list[str]) -> int:
    options = create_parser().parse_args(argv)
    warnings = Warnings()
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
    fail(PROG, "creating guests on a hypervisor is not implemented yet (use -s or --print-xml)")
    return EXIT_INPUT


COMMAND = create


def main() -> None:
    sys.exit(run(PROG, COMMAND))
