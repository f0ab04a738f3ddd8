"""Facts about host backing stores: sizes of files and block devices."""

from __future__ import annotations

import os
import stat


def backing_size(path: str) -> int | None:
    """Size in bytes of a file or block device, or None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISBLK(st.st_mode):
        with open(path, "rb") as dev:
            return dev.seek(0, os.SEEK_END)
    if stat.S_ISDIR(st.st_mode):
        return None
    return st.st_size
