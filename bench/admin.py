"""An HPVM admin's day, timed on a running tiny guest: online migration and
suspend/resume.

1. hpvmmigrate -o between two libvirt hosts on this machine
   (tests/host/libvirt_pair.py), back and forth: total time and downtime
   (libvirt's completed-job statistics) per move;
2. hpvmsuspend / hpvmresume of a guest with 256 MB: wall time of each command.

    .venv/bin/python bench/admin.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.host.guestkit import BIN, ConsoleLog, Host, free_port, hpvm
from tests.host.libvirt_pair import LibvirtHost


def create(uri: str, host: Host, memory: str) -> str:
    disk = f"disk:avio_stor:0,0,3:disk:{host.loop(16)}"
    return host.define_guest(disk, memory=memory, connect=uri)


def migrations(rounds: int) -> list[tuple[float, float]]:
    """(seconds, downtime ms) of each online move."""
    hook = BIN / "avio-libvirt-hook"
    a, b = LibvirtHost(free_port(), 49200, hook), LibvirtHost(free_port(), 49300, hook)
    host = Host()
    found = []
    try:
        a.start()
        b.start()
        name = create(a.uri, host, "256M")
        hpvm("hpvmstart", "--connect", a.uri, "-P", name)
        ConsoleLog(f"/var/log/libvirt/qemu/{name}-console.log").wait_for("^AVIO ready", 180)
        here, there = a, b
        for _ in range(rounds * 2):
            out = hpvm(
                "hpvmmigrate", "--connect", here.uri, "-P", name, "-h", there.uri, "-o", "-D"
            ).stdout
            match = re.search(r"online, ([\d.]+) s(?:, downtime (\d+) ms)?", out)
            found.append((float(match[1]), float(match[2] or "nan")))
            here, there = there, here
    finally:
        a.stop()
        b.stop()
        host.cleanup()
    return found


def suspend_resume(rounds: int) -> list[tuple[float, float]]:
    host = Host()
    try:
        name, _ = host.boot_guest(f"disk:avio_stor:0,0,3:disk:{host.loop(16)}")
        found = []
        for _ in range(rounds):
            start = time.perf_counter()
            hpvm("hpvmsuspend", "-P", name)
            middle = time.perf_counter()
            hpvm("hpvmresume", "-P", name)
            found.append((middle - start, time.perf_counter() - middle))
        return found
    finally:
        host.cleanup()


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    moves = migrations(rounds)
    took, down = median([m[0] for m in moves]), median([m[1] for m in moves])
    print(
        f"hpvmmigrate -o, 256 MB guest, {len(moves)} moves: median {took:.2f} s, "
        f"downtime median {down:.0f} ms "
        f"(all: {', '.join(f'{s:.1f} s/{d:.0f} ms' for s, d in moves)})"
    )
    times = suspend_resume(rounds)
    print(
        f"hpvmsuspend / hpvmresume, 256 MB guest ({rounds}x): median "
        f"{median([t[0] for t in times]):.2f} s / {median([t[1] for t in times]):.2f} s"
    )


if __name__ == "__main__":
    main()
