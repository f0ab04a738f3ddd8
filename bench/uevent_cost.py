"""The agent's CPU cost per block uevent with 1 vs 1,000 guest config files.

A loop device no guest uses gets `change` uevents (writes to its uevent file);
the agent's CPU time (utime+stime from /proc) over the burst, minus an idle
baseline of the same length, divided by the number of events it saw, is the
cost of one event. The config files name devices that do not exist; the agent
runs with --no-startup-reconcile so that 1,000 files do not define 1,000 guests.
Aim: the same cost with 1 and with 1,000 files.
Needs root and libvirtd (make host).   .venv/bin/python bench/uevent_cost.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.host.guestkit import AgentProcess, Host, free_port

EVENTS = 40


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(host: Host, files: int) -> tuple[float, float]:
    """(ms of agent CPU per uevent, events seen) with `files` config files."""
    guests = host.tmp / f"guests-{files}"
    guests.mkdir()
    for i in range(files):
        (guests / f"avt-bench-{i:04d}.conf").write_text(
            f"-B manual\n-r 64M\n-a disk:avio_stor::disk:/dev/avt-bench-missing-{i}\n"
        )
    dev = host.loop(8)
    uevent = Path(f"/sys/block/{Path(dev).name}/uevent")
    agent = AgentProcess(guests, host.tmp / f"agent-{files}.log", free_port())
    agent.start("--no-startup-reconcile")
    try:
        uevent.write_text("change")  # first event of the device
        time.sleep(3.0)
        pid = agent.process.pid
        idle0 = cpu_seconds(pid)
        time.sleep(EVENTS * 0.1)
        idle = cpu_seconds(pid) - idle0
        seen0 = agent.metric('avio_events_seen_total{source="block"}')
        busy0 = cpu_seconds(pid)
        for _ in range(EVENTS):
            uevent.write_text("change")
            time.sleep(0.1)  # one at a time: no coalescing
        start = time.monotonic()
        while True:  # until the agent is done with the burst
            before = cpu_seconds(pid)
            time.sleep(1.0)
            if cpu_seconds(pid) - before < 0.05 or time.monotonic() - start > 300:
                break
        elapsed = EVENTS * 0.1 + time.monotonic() - start
        busy = cpu_seconds(pid) - busy0
        seen = agent.metric('avio_events_seen_total{source="block"}') - seen0
    finally:
        agent.stop()
    busy -= idle * elapsed / (EVENTS * 0.1)
    return max(busy, 0.0) * 1e3 / max(seen, 1), seen


def main() -> None:
    host = Host()
    try:
        for files in (1, 1000):
            cost, seen = measure(host, files)
            print(f"{files:5d} config files: {cost:8.2f} ms CPU per uevent ({seen:.0f} events)")
    finally:
        host.cleanup()


if __name__ == "__main__":
    main()
