"""avio-agent with a real libvirtd, a real booted guest and loop devices.

The agent runs as a process of the test; the only thing the tests do to the
guest's storage is on the host side (resize, detach, attach a loop device, edit
a config file). What counts is what the guest itself reports on its console.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.host.conftest import domain_xml
from tests.host.guestkit import (
    BIN,
    agent_rig,
    grow,
    hpvm,
    new_loop_node,
    restart_libvirtd,
)

pytestmark = pytest.mark.integration
SECTORS_PER_MB = 2048


@pytest.fixture(scope="module")
def rig(module_host):
    yield from agent_rig(module_host)


def guest_size_after(rig, mark: int, size_mb: int, timeout: float) -> float:
    """Seconds until the guest reports its disk at `size_mb` (after console byte `mark`)."""
    start = time.monotonic()
    rig["log"].wait_for(
        rf"^AVIO size sd\w+ {size_mb * SECTORS_PER_MB}$", timeout=timeout, since=mark
    )
    return time.monotonic() - start


def resize(rig, size_mb: int) -> int:
    mark = rig["log"].mark()
    grow(rig["image"], rig["disk"], size_mb)
    rig["size_mb"] = size_mb
    return mark


def test_grow_reaches_the_guest_within_2s(rig):
    mark = resize(rig, 96)
    guest_size_after(rig, mark, 96, timeout=2.0)
    assert rig["agent"].metric("avio_resizes_forwarded_total") >= 1


def test_shrink_is_refused_and_the_guest_keeps_its_size(rig):
    refused = rig["agent"].metric("avio_resizes_refused_total")
    mark = resize(rig, 80)
    time.sleep(1.5)
    assert not re.search(r"^AVIO size", rig["log"].text()[mark:], re.M)
    assert rig["agent"].metric("avio_resizes_refused_total") == refused + 1
    assert "refused shrink" in rig["agent"].text()
    mark = resize(rig, 112)  # grown past the guest's size again: forwarded
    guest_size_after(rig, mark, 112, timeout=2.0)


def test_ten_quick_resizes_end_at_the_last_size(rig):
    mark = rig["log"].mark()
    for size in range(120, 220, 10):
        grow(rig["image"], rig["disk"], size)
    guest_size_after(rig, mark, 210, timeout=3.0)
    time.sleep(0.5)
    sizes = re.findall(r"^AVIO size sd\w+ (\d+)$", rig["log"].text()[mark:], re.M)
    assert sizes[-1] == str(210 * SECTORS_PER_MB)
    rig["size_mb"] = 210


def test_grows_in_a_row_ask_libvirt_for_the_size_once(rig):
    """The agent knows the size it set: the next grow is one blockResize, no blockInfo."""
    agent = rig["agent"]
    asked = agent.metric('avio_libvirt_calls_total{call="blockInfo"}')
    resized = agent.metric('avio_libvirt_calls_total{call="blockResize"}')
    for _ in range(3):
        size = rig["size_mb"] + 4  # 222 at the end: the next tests grow to 230
        mark = resize(rig, size)
        guest_size_after(rig, mark, size, timeout=3.0)
    assert agent.metric('avio_libvirt_calls_total{call="blockResize"}') == resized + 3
    assert agent.metric('avio_libvirt_calls_total{call="blockInfo"}') <= asked + 1


def test_change_event_without_resize_flag_is_acted_on(rig):
    """As device-mapper does: a plain `change` uevent, no RESIZE=1."""
    agent = rig["agent"]
    agent.stop()
    mark = resize(rig, 230)  # while no agent runs: the kernel's RESIZE=1 event is missed
    agent.start("--no-startup-reconcile")
    time.sleep(0.5)
    assert not re.search(r"^AVIO size", rig["log"].text()[mark:], re.M)
    Path(f"/sys/block/{Path(rig['disk']).name}/uevent").write_text("change")
    guest_size_after(rig, mark, 230, timeout=2.0)
    agent.stop()
    agent.start()


def test_agent_killed_resize_while_down_then_started(rig):
    agent = rig["agent"]
    agent.kill()
    mark = resize(rig, 240)
    time.sleep(0.5)
    agent.start()
    guest_size_after(rig, mark, 240, timeout=5.0)


def test_once_reconciles_and_exits(rig):
    agent = rig["agent"]
    agent.stop()
    mark = resize(rig, 245)
    result = subprocess.run(
        [str(BIN / "avio-agent"), "--once", "--guests-dir", str(rig["guests_dir"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "resize guest=" in result.stderr
    guest_size_after(rig, mark, 245, timeout=5.0)
    agent.start()


def test_libvirtd_restart_does_not_lose_the_next_resize(rig):
    restart_libvirtd()
    time.sleep(1.0)
    mark = resize(rig, 250)
    guest_size_after(rig, mark, 250, timeout=10.0)
    assert "connection to libvirt lost" in rig["agent"].text()


def test_device_gone_unplugs_and_its_return_replugs(rig):
    log, name, host = rig["log"], rig["name"], rig["host"]
    dev = host.loop(16)
    image = host.tmp / f"disk{len(host.loops) - 1}.img"
    mark = log.mark()
    hpvm("hpvmmodify", "-P", name, "-a", f"disk:avio_stor:0,0,6:disk:{dev}")
    added = log.wait_for(r"^AVIO disk\+ (sd\w+) \d+:0:6:0", timeout=20, since=mark)
    # The host lets go of the device: `losetup -d` of a busy loop device only marks
    # it (autoclear, no uevent), so the test sends the `remove` uevent a removed
    # LUN sends; once the guest lets go, the loop device really is cleared.
    mark = log.mark()
    subprocess.run(["losetup", "-d", dev], check=True)
    Path(f"/sys/block/{Path(dev).name}/uevent").write_text("remove")
    log.wait_for(rf"^AVIO disk- {added.group(1)}$", timeout=20, since=mark)
    assert f"dev='{dev}'" not in domain_xml(name, inactive=False)
    assert f"dev='{dev}'" in domain_xml(name)  # still configured
    for _ in range(50):
        if not Path(f"/sys/block/{Path(dev).name}/loop").exists():
            break
        time.sleep(0.1)
    mark = log.mark()
    subprocess.run(["losetup", dev, str(image)], check=True)  # the LUN comes back
    log.wait_for(r"^AVIO disk\+ sd\w+ \d+:0:6:0 size=32768", timeout=20, since=mark)


def test_a_device_a_config_names_is_plugged_when_it_appears(rig):
    log, name, host = rig["log"], rig["name"], rig["host"]
    image = host.tmp / "late.img"
    image.write_bytes(b"")
    with open(image, "r+b") as f:
        f.truncate(24 * 1024 * 1024)
    dev = new_loop_node()
    config = rig["guests_dir"] / f"{name}.conf"
    config.write_text(
        hpvm("hpvmstatus", "-P", name, "-d").stdout + f"disk:avio_stor:0,0,7:disk:{dev}\n"
    )
    time.sleep(1.0)
    assert "waiting for " + dev in rig["agent"].text()
    mark = log.mark()
    subprocess.run(["losetup", dev, str(image)], check=True)
    host.loops.append(dev)
    log.wait_for(r"^AVIO disk\+ sd\w+ \d+:0:7:0 size=49152", timeout=20, since=mark)


def test_config_edits_add_and_remove_disks_live(rig):
    log, name, host = rig["log"], rig["name"], rig["host"]
    config = rig["guests_dir"] / f"{name}.conf"
    base = hpvm("hpvmstatus", "-P", name, "-d").stdout
    dev = host.loop(8)
    mark = log.mark()
    config.write_text(base + f"-a disk:avio_stor:0,0,9:disk:{dev}\n")
    added = log.wait_for(r"^AVIO disk\+ (sd\w+) \d+:0:9:0 size=16384", timeout=20, since=mark)
    mark = log.mark()
    config.write_text(base)
    log.wait_for(rf"^AVIO disk- {added.group(1)}$", timeout=20, since=mark)
    # The guest lets go before the agent has updated the persistent definition:
    # the agent's own line says the change is complete.
    done = f"config {config.name}: detach guest={name} "
    deadline = time.monotonic() + 20
    while done not in rig["agent"].text():
        assert time.monotonic() < deadline, "the agent never logged the detach"
        time.sleep(0.1)
    before = (domain_xml(name), domain_xml(name, inactive=False))
    config.write_text(base + f"-a disk:avio_stor:0,0,9:disk:{dev}\n-r lots\n")
    time.sleep(1.5)
    assert f"{config}:" in rig["agent"].text() and "bad memory size 'lots'" in rig["agent"].text()
    assert (domain_xml(name), domain_xml(name, inactive=False)) == before
    config.unlink()


def test_device_mapper_resize(rig):
    """LVM/multipath: a dm device grown by reload + resume emits no RESIZE=1."""
    if subprocess.run(["dmsetup", "targets"], capture_output=True).returncode != 0:
        pytest.skip(
            "this kernel has no device-mapper (dmsetup finds no driver): the LVM and "
            "multipath path cannot be tested here"
        )
    log, name, host = rig["log"], rig["name"], rig["host"]
    lower = host.loop(64)
    dm = f"avt-dm-{name[-8:]}"
    table = "0 {} linear " + lower + " 0"
    subprocess.run(
        ["dmsetup", "create", dm, "--table", table.format(32 * SECTORS_PER_MB)], check=True
    )
    try:
        mark = log.mark()
        hpvm("hpvmmodify", "-P", name, "-a", f"disk:avio_stor:0,0,10:lv:/dev/mapper/{dm}")
        added = log.wait_for(r"^AVIO disk\+ (sd\w+) \d+:0:10:0", timeout=20, since=mark)
        mark = log.mark()
        subprocess.run(
            ["dmsetup", "reload", dm, "--table", table.format(48 * SECTORS_PER_MB)], check=True
        )
        subprocess.run(["dmsetup", "resume", dm], check=True)
        log.wait_for(
            rf"^AVIO size {added.group(1)} {48 * SECTORS_PER_MB}$", timeout=2.0, since=mark
        )
        hpvm("hpvmmodify", "-P", name, "-d", f"disk:avio_stor:0,0,10:lv:/dev/mapper/{dm}")
    finally:
        subprocess.run(["dmsetup", "remove", "--retry", dm], capture_output=True)
