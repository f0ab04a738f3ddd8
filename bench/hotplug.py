"""Live disk hot-plug on a real booted guest: hpvmmodify vs virt-xml, and guest latency.

For the same loop-device disk, alternately:
  A: `hpvmmodify -P g -a disk:avio_stor::disk:/dev/loopN`   (live + persistent)
  B: `virt-xml g --add-device --disk /dev/loopN,... --update` (live only)
each followed by an unplug. Prints the median wall time of each attach command,
their ratio, and the time from our command's return until the guest reports
the new disk on its console. Needs root and a working libvirtd (make host).

    .venv/bin/python bench/hotplug.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.host.guestkit import ConsoleLog, Host, hpvm


def wait_guest(log: ConsoleLog, pattern: str, since: int) -> float:
    """Seconds until the guest prints `pattern` after byte `since`."""
    start = time.perf_counter()
    log.wait_for(pattern, timeout=30, since=since)
    return time.perf_counter() - start


def virt_xml(*args: str) -> None:
    subprocess.run(
        ["virt-xml", "--connect", "qemu:///system", *args],
        check=True,
        capture_output=True,
        text=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    rounds = parser.parse_args().rounds
    host = Host()
    try:
        boot, spare = host.loop(), host.loop()
        name, log = host.boot_guest(f"disk:avio_stor:0,0,0:disk:{boot}")
        ours, theirs, seen, uevent = [], [], [], []
        for _ in range(rounds):
            mark = log.mark()
            start = time.perf_counter()
            hpvm("hpvmmodify", "-P", name, "-a", f"disk:avio_stor:0,0,1:disk:{spare}")
            ours.append(time.perf_counter() - start)
            uevent.append(wait_guest(log, r"^AVIO uevent add block sd", mark))
            seen.append(uevent[-1] + wait_guest(log, r"^AVIO disk\+ \S+ \d+:0:1:0", mark))
            mark = log.mark()
            hpvm("hpvmmodify", "-P", name, "-d", f"disk:avio_stor:0,0,1:disk:{spare}")
            log.wait_for(r"^AVIO disk- ", timeout=30, since=mark)

            mark = log.mark()
            start = time.perf_counter()
            virt_xml(
                name,
                "--add-device",
                "--update",
                "--disk",
                f"{spare},bus=scsi,target.dev=sdb,address.type=drive,"
                "address.controller=0,address.bus=0,address.target=1,address.unit=0",
            )
            theirs.append(time.perf_counter() - start)
            log.wait_for(r"^AVIO disk\+ \S+ \d+:0:1:0", timeout=30, since=mark)
            mark = log.mark()
            virt_xml(name, "--remove-device", "--update", "--disk", "target=sdb")
            log.wait_for(r"^AVIO disk- ", timeout=30, since=mark)
        mo, mt = statistics.median(ours), statistics.median(theirs)
        print(f"live disk attach on a booted TCG guest, {rounds} alternating rounds:")
        print(f"  hpvmmodify -a (live+config)     median {mo * 1e3:7.1f} ms")
        print(f"  virt-xml --add-device --update  median {mt * 1e3:7.1f} ms")
        print(f"  ratio hpvmmodify/virt-xml {mo / mt:5.2f}")
        for what, values in [
            ("guest kernel's uevent for the disk", uevent),
            ("guest's report (0.2 s sysfs poll)", seen),
        ]:
            print(
                f"  hpvmmodify return -> {what}: median "
                f"{statistics.median(values) * 1e3:6.1f} ms, max {max(values) * 1e3:6.1f} ms"
            )
    finally:
        host.cleanup()


if __name__ == "__main__":
    main()
