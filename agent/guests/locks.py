"""One lock per guest, shared by the hpvm* commands and the agent (fcntl.flock).

Every writer of a guest's definition (hpvmcreate, hpvmmodify, hpvmremove,
hpvmstart and the agent's actions) holds `/run/avio/lock/NAME` while it reads,
plans and writes, so two writers never overwrite each other's change. The
libvirt hook takes no lock: it runs inside `virDomainCreate`, whose caller may
hold the guest's lock, and it only reads.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from agent.errors import HostError

LOCK_DIR = Path(os.environ.get("AVIO_LOCK_DIR", "/run/avio/lock"))
WAIT = 120.0  # an agent unplug may hold a guest for up to 30 s
_held = threading.local()


@contextmanager
def guest_lock(name: str, timeout: float = WAIT) -> Iterator[None]:
    """Hold guest `name`'s lock (waiting up to `timeout` s; HostError when it stays busy).

    Re-entrant within one thread.
    """
    held: set[str] = _held.__dict__.setdefault("names", set())
    if name in held:
        yield
        return
    LOCK_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = LOCK_DIR / quote(name, safe="")[:200]
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise HostError(
                        f"guest '{name}' is busy: another command or the agent is changing it"
                    ) from None
                time.sleep(0.02)
        held.add(name)
        try:
            yield
        finally:
            held.discard(name)
    finally:
        os.close(fd)  # releases the lock
