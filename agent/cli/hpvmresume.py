"""`hpvmresume -P name`: a guest suspended by hpvmsuspend runs on where it stopped."""

from __future__ import annotations

import time

from agent.cli.common import EXIT_OK, entry_point, guest_locked
from agent.cli.hpvmstart import stopped_guest
from agent.errors import HostError
from agent.guests.lifecycle import start_guest

PROG = "hpvmresume"


def resume(argv: list[str]) -> int:
    description = "Resume a suspended guest."
    conn, dom = stopped_guest(PROG, description, argv, "is running, not suspended")
    if not dom.hasManagedSaveImage(0):
        raise HostError(f"guest '{dom.name()}' is not suspended (use hpvmstart)")
    start = time.monotonic()
    start_guest(conn, dom)
    print(f"{PROG}: Guest '{dom.name()}' resumed ({time.monotonic() - start:.1f} s)")
    return EXIT_OK


COMMAND = guest_locked(resume)

main = entry_point(PROG, COMMAND)
