"""`hpvmstart -P name`: start a guest."""

from __future__ import annotations

import sys

from agent.cli.common import EXIT_OK, connect, guest_locked, run
from agent.cli.options import command_parser
from agent.errors import HostError
from agent.guests.inventory import lookup
from agent.guests.lifecycle import start_guest

PROG = "hpvmstart"


def start(argv: list[str]) -> int:
    options = command_parser(PROG, "Start a guest.").parse_args(argv)
    conn = connect(options.connect)
    dom = lookup(conn, options.name)
    if dom.isActive():
        raise HostError(f"guest '{options.name}' is already running")
    start_guest(conn, dom)
    print(f"{PROG}: Successful start initiation of guest '{options.name}'")
    return EXIT_OK


COMMAND = guest_locked(start)


def main() -> None:
    sys.exit(run(PROG, COMMAND))
