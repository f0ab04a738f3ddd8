"""Helpers for tests that boot the tiny guest (scripts/build-tiny-guest.sh).

The guest reports on its serial console, one fact per line prefixed ``AVIO ``
(see scripts/tiny-guest-init.sh); `ConsoleLog` waits for those lines in the
console log file libvirt (virtlogd) writes.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-tiny-guest.sh"


def build_tiny_guest(timeout: float = 600.0) -> tuple[Path, Path]:
    """Build (or take from the cache) the tiny guest: (kernel, initramfs) paths.

    Honours ``AVIO_GUEST_CACHE`` like the script does. Raises RuntimeError
    with the script's stderr when it fails.
    """
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    paths = result.stdout.split()
    if result.returncode != 0 or len(paths) < 2:
        raise RuntimeError(f"{BUILD_SCRIPT} failed ({result.returncode}):\n{result.stderr.strip()}")
    kernel, initrd = Path(paths[-2]), Path(paths[-1])
    for path in (kernel, initrd):
        if not path.is_file():
            raise RuntimeError(f"{BUILD_SCRIPT} printed {path}, which does not exist")
    return kernel, initrd


class ConsoleLog:
    """The guest's serial console log file, read as it grows.

    Positions (`mark`, ``since``) are byte offsets into the file. Only
    complete lines are looked at, so a pattern never matches a line the guest
    is still writing; carriage returns are dropped.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def _read(self, since: int = 0) -> tuple[str, int]:
        """The complete lines from byte ``since`` on, and the offset just after them."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return "", 0
        if since > len(data):  # the file was truncated (a new boot): start over
            since = 0
        end = data.rfind(b"\n", since) + 1
        if end <= since:
            return "", since
        text = data[since:end].decode("utf-8", errors="replace").replace("\r", "")
        return text, end

    def lines(self, since: int | None = None) -> list[str]:
        """The complete lines logged so far (after position ``since`` if given)."""
        return self._read(since or 0)[0].splitlines()

    def mark(self) -> int:
        """The current end of the log: pass it as ``since`` to look only at later output."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def wait_for(
        self, regex: str | re.Pattern[str], timeout: float = 60.0, since: int | None = None
    ) -> re.Match[str]:
        """Wait until a complete line (after position ``since``) matches ``regex``.

        ``regex`` is searched with re.MULTILINE over the lines, so ``^`` and
        ``$`` anchor at line boundaries. Raises TimeoutError quoting the last
        30 lines of the log.
        """
        pattern = re.compile(regex, re.MULTILINE) if isinstance(regex, str) else regex
        deadline = time.monotonic() + timeout
        start = since or 0
        while True:
            text, _ = self._read(start)
            match = pattern.search(text)
            if match:
                return match
            if time.monotonic() >= deadline:
                tail = "\n".join(self.lines()[-30:])
                raise TimeoutError(
                    f"no line matching {pattern.pattern!r} in {self.path} "
                    f"within {timeout:g} s; last lines:\n{tail}"
                )
            time.sleep(0.1)
