"""`hpvmresume -P name`: a guest suspended by hpvmsuspend runs on where it stopped."""

from __future__ import annotations

import sys
import time

from agent.cli.common import EXIT_OK, connect, guest_locked, run
from agent.cli.options import command_parser
from agent.errors import HostError
from agent.guests.inventory import lookup
from agent.guests.lifecycle import start_guest

PROG = "hpvmresume"


def resume(argv: list[str]) -> int:
    options = command_parser(PROG, "Resume a suspended guest.").parse_args(argv)
    conn = connect(options.connect)
    dom = lookup(conn, options.name)
    if dom.isActive():
        raise HostError(f"guest '{options.name}' is running, not suspended")
    if not dom.hasManagedSaveImage(0):
        raise HostError(f"guest '{options.name}' is not suspended (use hpvmstart)")
    start = time.monotonic()
    start_guest(conn, dom)
    print(f"{PROG}: Guest '{options.name}' resumed ({time.monotonic() - start:.1f} s)")
    return EXIT_OK


COMMAND = guest_locked(resume)


def main() -> None:
    sys.exit(run(PROG, COMMAND))
