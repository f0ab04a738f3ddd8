"""The tiny test guest: building it, reading its console report, running the commands."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.conftest import REPO

BIN = Path(sys.executable).parent


def build_tiny_guest() -> tuple[Path, Path]:
    """Kernel and initramfs of the tiny guest (cached by guest/build.sh)."""
    out = subprocess.run(
        ["bash", str(REPO / "guest/build.sh")], check=True, capture_output=True, text=True
    ).stdout.split()
    return Path(out[0]), Path(out[1])


def hpvm(command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run an hpvm* console script; with check, a non-zero exit fails with its stderr."""
    result = subprocess.run(
        [str(BIN / command), *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "AVIO_VIRT_TYPE": "qemu"},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{command} {' '.join(args)} -> {result.returncode}: {result.stderr}")
    return result


class ConsoleLog:
    """The guest's serial console log, as virtlogd writes it."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def text(self) -> str:
        try:
            return self.path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def mark(self) -> int:
        return len(self.text())

    def wait_for(self, pattern: str, timeout: float = 60.0, since: int = 0) -> re.Match:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern, re.MULTILINE)
        while True:
            match = regex.search(self.text(), since)
            if match:
                return match
            if time.monotonic() > deadline:
                tail = "\n".join(self.text().splitlines()[-30:])
                raise TimeoutError(f"no /{pattern}/ in {self.path} after {timeout} s:\n{tail}")
            time.sleep(0.05)


class Host:
    """Loop devices, bridges and guests made by one test module; all removed by cleanup()."""

    def __init__(self) -> None:
        # qemu runs as libvirt-qemu: media files must sit in a directory it can enter.
        self.tmp = Path(tempfile.mkdtemp(prefix="avio-test-"))
        self.tmp.chmod(0o755)
        self.loops: list[str] = []
        self.bridges: list[str] = []
        self.guests: list[str] = []

    def loop(self, size_mb: int = 8) -> str:
        image = self.tmp / f"disk{len(self.loops)}.img"
        with open(image, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        dev = subprocess.run(
            ["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True
        ).stdout.strip()
        self.loops.append(dev)
        return dev

    def bridge(self, name: str | None = None) -> str:
        name = name or f"avtbr{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        self.bridges.append(name)
        return name

    def guest_name(self) -> str:
        name = f"avt-{uuid.uuid4().hex[:8]}"
        self.guests.append(name)
        return name

    def cleanup(self) -> None:
        for name in self.guests:
            hpvm("hpvmremove", "-P", name, "-F", check=False)
            Path(f"/var/log/libvirt/qemu/{name}-console.log").unlink(missing_ok=True)
            Path(f"/var/log/libvirt/qemu/{name}.log").unlink(missing_ok=True)
        for dev in self.loops:
            subprocess.run(["losetup", "-d", dev], capture_output=True)
        for name in self.bridges:
            subprocess.run(["ip", "link", "del", name], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
