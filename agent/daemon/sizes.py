"""What to do when a backing device's size differs from what a guest sees (pure)."""

from __future__ import annotations

import os
from enum import StrEnum


class Verdict(StrEnum):
    GROW = "grow"  # forward the new size
    SHRINK = "shrink"  # never forwarded: it would destroy data
    SAME = "same"
    GONE = "gone"  # the device has no capacity any more (removed, cleared)


def decide(host_bytes: int | None, guest_bytes: int) -> Verdict:
    """Compare the host device's size with the guest disk's capacity."""
    if not host_bytes:
        return Verdict.GONE
    if host_bytes > guest_bytes:
        return Verdict.GROW
    if host_bytes < guest_bytes:
        return Verdict.SHRINK
    return Verdict.SAME


def host_size(devnum: int) -> int | None:
    """Size in bytes of block device `devnum` from sysfs, None when it no longer exists."""
    path = f"/sys/dev/block/{os.major(devnum)}:{os.minor(devnum)}/size"
    try:
        with open(path) as f:
            return int(f.read()) * 512
    except (OSError, ValueError):
        return None
