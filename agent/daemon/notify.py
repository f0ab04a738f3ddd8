"""systemd's sd_notify protocol (READY=1, STATUS=...), without a library."""

from __future__ import annotations

import os
import socket


def sd_notify(message: str) -> bool:
    """Send `message` to $NOTIFY_SOCKET; False when not run by systemd (or it is gone)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:  # the manager went away: nothing to tell
        return False
    return True
