"""`make demo` (scripts/demo.sh) on the real host: what it shows, and that it cleans up.

The demo uses the seed's names (guest `aviotest`, /dev/rdisk/disk1, swlan1), so
it serialises itself with a lock; this test runs it twice: once killed (-9)
after it started avio-agent, then to the end, which must first remove what the
killed run left and then show the agent forwarding a host resize, a new LUN,
and a LUN going away and coming back, as the guest's own console reports them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.host.conftest import require_host

pytestmark = pytest.mark.integration
WORK = Path("/var/tmp/avio-demo")


def start_demo(out: Path) -> subprocess.Popen:
    with open(out, "w") as f:
        return subprocess.Popen(
            ["bash", str(REPO / "scripts/demo.sh")], stdout=f, stderr=subprocess.STDOUT
        )


def wait_output(demo: subprocess.Popen, out: Path, pattern: str, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while True:
        match = re.search(pattern, out.read_text(), re.M)
        if match:
            return match
        if demo.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"demo never printed /{pattern}/:\n{out.read_text()[-3000:]}")
        time.sleep(0.2)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except FileNotFoundError:
        return False


def demo_loops() -> list[str]:
    listing = subprocess.run(
        ["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"], capture_output=True, text=True
    ).stdout
    return [line for line in listing.splitlines() if str(WORK) + "/" in line]


def domain_exists(name: str) -> bool:
    return subprocess.run(["virsh", "dominfo", name], capture_output=True).returncode == 0


def test_demo_shows_the_agent_and_cleans_up_after_a_killed_run(tmp_path):
    require_host()
    rdisk_before = os.path.lexists("/dev/rdisk/disk1")
    # 1. A run killed while its agent runs leaves the agent, the guest and loops behind.
    killed_out = tmp_path / "killed.txt"
    demo = start_demo(killed_out)
    try:
        pid = int(wait_output(demo, killed_out, r"^\(avio-agent pid (\d+);", 600).group(1))
        wait_output(demo, killed_out, r"^  agent: .* ready \(", 120)
    finally:
        demo.send_signal(signal.SIGKILL)
        demo.wait()
    assert alive(pid) and demo_loops() and domain_exists("aviotest")

    # 2. The next run removes all that first, then shows the agent at work.
    out = tmp_path / "demo.txt"
    demo = start_demo(out)
    try:
        rc = demo.wait(900)
    finally:
        if demo.poll() is None:
            demo.kill()
    text = out.read_text()
    assert rc == 0, text[-3000:]
    assert "removing what an interrupted demo left" in text
    assert not alive(pid)
    # the guest's own reports: the grown disk, the new LUN, gone and back
    assert "  guest: AVIO size sda 196608" in text  # 96 MiB in 512-byte sectors
    lun = re.search(r"A new LUN appears on the host \((/dev/loop\d+)\)", text).group(1)
    new = re.search(r"^  guest: AVIO disk\+ (sd[a-z]+) (\S+) size=98304 ", text, re.M)
    assert new, text
    assert f"  guest: AVIO disk- {new.group(1)}" in text
    assert len(re.findall(rf"^  guest: AVIO disk\+ sd[a-z]+ {new.group(2)} ", text, re.M)) == 2
    assert len(re.findall(r"s from the host change to the guest's own report", text)) == 4
    # the agent's own log lines and its counters
    for line in (
        "INFO resize guest=aviotest disk=sda /dev/rdisk/disk1: 67108864 -> 100663296",
        f"attach guest=aviotest disk:avio_stor:0,0,2:disk:{lun}",
        f"backing {lun} is gone (kept in the definition)",
        f"backing {lun} is back",
    ):
        assert line in text, line
    assert re.search(r"^  avio_resizes_forwarded_total [1-9]", text, re.M)
    assert re.search(r"^  avio_forward_latency_seconds_count [1-9]", text, re.M)
    # 3. Nothing is left: agent, guest, loop devices (and the LUN's node), files.
    new_pid = int(re.search(r"^\(avio-agent pid (\d+);", text, re.M).group(1))
    assert not alive(new_pid)
    assert not domain_exists("aviotest")
    assert not demo_loops()
    assert not Path(f"/sys/block/{Path(lun).name}").exists()
    assert not WORK.exists()
    assert os.path.lexists("/dev/rdisk/disk1") == rdisk_before
