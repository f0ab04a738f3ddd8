"""Host resize -> guest, through avio-agent, on a real booted guest with loop devices.

Prints:
  1. uevent received -> blockResize returned (the agent's own per-resize log), p50/p99;
  2. host resize (LOOP_SET_CAPACITY) -> the guest kernel's uevent / the guest's report;
  3. a burst of 1000 resize events over 20 devices: time to settle, libvirt calls made,
     whether every guest disk ends at its device's final size;
  4. the agent's RSS and CPU time while idle for 30 s.
Aims: p99 forward latency under 50 ms, idle CPU near zero, RSS under 60 MB.
Needs root and libvirtd (make host).   .venv/bin/python bench/resize.py [--quick]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import libvirt

from tests.host.guestkit import (
    AgentProcess,
    Host,
    free_port,
)

LOOP_SET_CAPACITY = 0x4C07
MB = 1024 * 1024


def set_capacity(image: Path, dev: str, size: int) -> None:
    """Grow the file, then tell the loop driver (what `losetup -c` does, without a fork)."""
    os.truncate(image, size)
    fd = os.open(dev, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, LOOP_SET_CAPACITY, 0)
    finally:
        os.close(fd)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def forward_latencies(agent: AgentProcess, since: int) -> list[float]:
    text = agent.text()[since:]
    return [float(ms) for ms in re.findall(r"^.* resize guest=.* in ([\d.]+) ms", text, re.M)]


def wait_lines(agent: AgentProcess, since: int, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(forward_latencies(agent, since)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the agent forwarded fewer than {count} resizes")
        time.sleep(0.002)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    resizes, visible_rounds, burst_rounds, idle = (20, 3, 5, 3) if quick else (200, 20, 50, 30)
    host = Host()
    agent = None
    try:
        devs = [host.loop(64) for _ in range(21)]
        images = [host.tmp / f"disk{i}.img" for i in range(21)]
        name, log = host.boot_guest(
            *(f"disk:avio_stor:0,0,{i}:disk:{dev}" for i, dev in enumerate(devs))
        )
        guests = host.tmp / "guests"
        guests.mkdir()
        agent = AgentProcess(guests, host.tmp / "agent.log", free_port())
        agent.start()

        # 1. forward latency, one resize at a time
        size, since = 64 * MB, len(agent.text())
        for n in range(1, resizes + 1):
            size += MB
            set_capacity(images[0], devs[0], size)
            wait_lines(agent, since, n)
        lat = forward_latencies(agent, since)
        print(
            f"uevent -> blockResize returned, {len(lat)} resizes: p50 {percentile(lat, 0.5):.1f}"
            f" ms, p99 {percentile(lat, 0.99):.1f} ms, max {max(lat):.1f} ms (aim: p99 < 50 ms)"
        )

        # 2. host resize -> guest sees it
        kernel_seen, report_seen = [], []
        for _ in range(visible_rounds):
            size += MB
            mark = log.mark()
            start = time.monotonic()
            set_capacity(images[0], devs[0], size)
            log.wait_for(r"^AVIO uevent change block sda", timeout=10, since=mark)
            kernel_seen.append(time.monotonic() - start)
            log.wait_for(rf"^AVIO size sda {size // 512}$", timeout=10, since=mark)
            report_seen.append(time.monotonic() - start)
        print(
            f"host resize -> guest kernel's change uevent: median "
            f"{statistics.median(kernel_seen) * 1e3:.0f} ms; -> guest's report (0.2 s poll): "
            f"median {statistics.median(report_seen) * 1e3:.0f} ms"
        )

        # 3. burst: 1000 resize events over 20 devices
        conn = libvirt.open("qemu:///system")
        dom = conn.lookupByName(name)
        calls_before = agent.metric('avio_libvirt_calls_total{call="blockResize"}')
        final = {}
        start = time.monotonic()
        for round_ in range(burst_rounds):
            for i in range(1, 21):
                final[i] = 64 * MB + (round_ + 1) * MB
                set_capacity(images[i], devs[i], final[i])
        sent = time.monotonic() - start
        targets = {i: f"sd{chr(ord('a') + i)}" for i in range(1, 21)}
        while any(dom.blockInfo(targets[i])[0] != final[i] for i in final):
            if time.monotonic() - start > 60:
                break
            time.sleep(0.005)
        settle = time.monotonic() - start
        calls = agent.metric('avio_libvirt_calls_total{call="blockResize"}') - calls_before
        correct = all(dom.blockInfo(targets[i])[0] == final[i] for i in final)
        print(
            f"burst of {burst_rounds * 20} resize events over 20 devices (sent in "
            f"{sent * 1e3:.0f} ms): settled in {settle * 1e3:.0f} ms, {calls:.0f} blockResize "
            f"calls, final sizes all correct: {correct}"
        )
        conn.close()

        # 4. idle cost, once udevd has delivered the burst's last events
        time.sleep(2 if quick else 10)
        pid = agent.process.pid
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(idle)
        cpu = cpu_seconds(pid) - cpu0
        print(
            f"agent idle for {time.monotonic() - t0:.0f} s: CPU {cpu:.2f} s "
            f"({cpu / idle * 100:.2f} %), RSS {rss_mb(pid):.1f} MB (aim: < 60 MB)"
        )
    finally:
        if agent:
            agent.stop()
        host.cleanup()


if __name__ == "__main__":
    main()
