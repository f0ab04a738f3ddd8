"""avio-agent never drives a destructive change by accident, and survives everything.

Real libvirtd, loop devices, udev and booted tiny guests, as in test_agent.py.
Other agents (other test runs) may act on these guests too, so what *this*
agent did is read from its own log; what the guest sees, from its console.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.host.conftest import domain_xml
from tests.host.guestkit import (
    AgentProcess,
    agent_rig,
    grow,
    hpvm,
    poll_for,
    restart_libvirtd,
)

pytestmark = pytest.mark.integration
SECTORS_PER_MB = 2048


BOOT_TIMEOUT = 600  # tolerates a host loaded by other test runs


@pytest.fixture(scope="module")
def rig(module_host):
    yield from agent_rig(module_host, boot_timeout=BOOT_TIMEOUT)


def wait_log(agent: AgentProcess, pattern: str, timeout: float, since: int = 0) -> re.Match:
    """The agent's own log line matching `pattern` (after byte `since`)."""
    match = poll_for(agent.text, pattern, timeout, since)
    if match is None:
        raise TimeoutError(f"no /{pattern}/ in the agent log:\n{agent.text()[-3000:]}")
    return match


def grow_and_see(rig, size_mb: int, timeout: float = 10.0) -> None:
    """Grow the guest's disk; this agent forwards it and the guest reports it."""
    agent, since, mark = rig["agent"], len(rig["agent"].text()), rig["log"].mark()
    grow(rig["image"], rig["disk"], size_mb)
    rig["size_mb"] = size_mb
    wait_log(
        agent, rf"resize guest={rig['name']} .* -> {size_mb << 20} bytes", timeout, since=since
    )
    rig["log"].wait_for(
        rf"^AVIO size sd\w+ {size_mb * SECTORS_PER_MB}$", timeout=timeout, since=mark
    )


def settings_of(name: str) -> tuple[str, ...]:
    """Memory, vCPUs, OS type, autoboot and label as the persistent definition holds them."""
    xml = domain_xml(name)
    found = []
    for pattern in (
        r"<memory[^>]*>(\d+)<",
        r"<vcpu[^>]*>(\d+)<",
        r"<hpvm:os>(\w+)<",
        r"<hpvm:start>(\w+)<",
        r"<title>([^<]*)<",
    ):
        match = re.search(pattern, xml)
        found.append(match.group(0) if match else "")
    autostart = subprocess.run(
        ["virsh", "-c", "qemu:///system", "dominfo", name], capture_output=True, text=True
    ).stdout
    found.append(re.search(r"Autostart:\s*(\w+)", autostart).group(1))
    return tuple(found)


def metric_sum(agent: AgentProcess, name: str) -> float:
    """A metric summed over its labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.metrics_port}/metrics") as reply:
        lines = reply.read().decode().splitlines()
    return sum(float(x.rsplit(" ", 1)[1]) for x in lines if re.match(rf"{name}[ {{]", x))


def defined(name: str) -> bool:
    return (
        subprocess.run(
            ["virsh", "-c", "qemu:///system", "dominfo", name], capture_output=True
        ).returncode
        == 0
    )


# ---- item 5: a config file counts once its writer is done; empty = deleted -------------


def test_half_written_config_is_not_applied_until_closed(rig):
    """A writer that pauses mid-file: the half file (no disk line) is never the desired
    state; the finished file is applied when it is closed."""
    name, agent = rig["name"], rig["agent"]
    config = rig["guests_dir"] / f"{name}.conf"
    full = hpvm("hpvmstatus", "-P", name, "-d").stdout + "-l 'written in two steps'\n"
    before = domain_xml(name, inactive=False)
    since = len(agent.text())
    with open(config, "w") as f:
        f.write("-O linux\n")  # the first line only: no disk
        f.flush()
        time.sleep(2.0)  # the old agent applied this after 0.2 s: disk unplugged
        assert domain_xml(name, inactive=False) == before
        assert f"config {config.name}" not in agent.text()[since:]
        f.write(full)
    wait_log(agent, rf"settings of guest={name} changed", 5.0, since)  # -l, once closed
    assert domain_xml(name, inactive=False) == before
    assert f"unplug guest={name}" not in agent.text()[since:]
    assert f": delete guest={name}" not in agent.text()[since:]
    config.unlink()


def test_empty_config_destroys_nothing(rig):
    name, agent = rig["name"], rig["agent"]
    config = rig["guests_dir"] / f"{name}.conf"
    before = (domain_xml(name), domain_xml(name, inactive=False))
    since = len(agent.text())
    config.write_text("")
    wait_log(agent, rf"config {config} is empty: treated like a deleted file", 5.0, since)
    config.write_text("# nothing but a comment\n\n")
    wait_log(agent, rf"config {config} is empty", 5.0, since + 1)
    time.sleep(0.5)
    assert (domain_xml(name), domain_xml(name, inactive=False)) == before
    config.unlink()


def test_options_a_config_omits_keep_the_guests_settings(rig):
    """`hpvmstatus -d` output names devices only: -r, -c, -O, -B and -l stay as they are."""
    name, agent = rig["name"], rig["agent"]
    hpvm("hpvmmodify", "-P", name, "-c", "2", "-l", "keep me")
    settings = settings_of(name)
    config = rig["guests_dir"] / f"{name}.conf"
    since = len(agent.text())
    devices = hpvm("hpvmstatus", "-P", name, "-d").stdout
    config.write_text(devices + "-r 384M\n")  # only memory is given
    wait_log(agent, rf"settings of guest={name} changed", 5.0, since)
    after = settings_of(name)
    assert after[0] == "<memory unit='KiB'>393216<"
    assert after[1:] == settings[1:], (settings, after)
    config.write_text(devices + "-r 256M\n")
    wait_log(agent, rf"settings of guest={name} changed", 5.0, len(agent.text()))
    config.unlink()


# ---- item 7: which files are read at all ------------------------------------------------


def test_unsafe_files_are_refused_each_logged_once(rig):
    host, agent, guests = rig["host"], rig["agent"], rig["guests_dir"]
    names = {kind: host.guest_name() for kind in ("link", "fifo", "zero", "gw", "big", "user")}
    target = host.tmp / "elsewhere.conf"
    target.write_text("-B manual\n-r 64M\n")
    (guests / f"{names['link']}.conf").symlink_to(target)
    os.mkfifo(guests / f"{names['fifo']}.conf")
    (guests / f"{names['zero']}.conf").symlink_to("/dev/zero")
    gw = guests / f"{names['gw']}.conf"
    gw.write_text("-B manual\n-r 64M\n")
    gw.chmod(0o666)
    (guests / f"{names['big']}.conf").write_text("-B manual\n" + "#" * 2_000_000 + "\n")
    user = guests / f"{names['user']}.conf"
    user.write_text("-B manual\n-r 64M\n")
    os.chown(user, 65534, 65534)
    try:
        agent.stop()
        since = len(agent.text())
        agent.start()  # the startup reconciliation reads every file
        expected = {
            "link": "is a symbolic link",
            "fifo": "not a regular file (a FIFO)",
            "zero": "is a symbolic link",
            "gw": "writable by group or others",
            "big": "larger than 1048576 bytes",
            "user": "owned by uid 65534, not root",
        }
        for kind, reason in expected.items():
            wait_log(
                agent, rf"config .*/{names[kind]}\.conf refused: {re.escape(reason)}", 5.0, since
            )
        grow_and_see(rig, rig["size_mb"] + 8)  # the agent still works
        agent.stop()  # a restart reads them again: logged again, but once per start
        agent.start()
        grow_and_see(rig, rig["size_mb"] + 8)
        text = agent.text()[since:]
        for kind in expected:
            assert text.count(f"/{names[kind]}.conf refused") == 2, kind
            assert not defined(names[kind]), kind
    finally:
        for kind in names:
            (guests / f"{names[kind]}.conf").unlink(missing_ok=True)
        agent.kill()  # whatever state it is in, the next test gets a fresh agent
        agent.start()


# ---- item 8: a bad file at start, a failing handler: logged, counted, the agent goes on ----


def test_bad_files_at_start_do_not_stop_the_agent(rig):
    host, agent, guests = rig["host"], rig["agent"], rig["guests_dir"]
    binary, label = host.guest_name(), host.guest_name()
    (guests / f"{binary}.conf").write_bytes(b"-B manual\n-l caf\xff\n")
    (guests / f"{label}.conf").write_text("-B manual\n-r 64M\n-l 'bell\x07here'\n")
    agent.stop()
    since = len(agent.text())
    try:
        agent.start()  # READY=1 comes (the old agent died here, and at every restart)
    finally:
        (guests / f"{binary}.conf").rename(host.tmp / f"{binary}.conf")
        (guests / f"{label}.conf").rename(host.tmp / f"{label}.conf")
    wait_log(
        agent,
        rf"{binary}\.conf refused: not UTF-8 text \(byte 0xff at offset 16\)",
        5.0,
        since,
    )
    wait_log(agent, rf"ERROR .*{label}", 5.0, since)
    # both are bad input now (a control character in a label is refused as it is parsed)
    assert metric_sum(agent, "avio_configs_refused_total") >= 2
    grow_and_see(rig, rig["size_mb"] + 8)
    assert agent.process.poll() is None
    assert not defined(binary) and not defined(label)


# ---- item 9: the udev netlink buffer overflows for real --------------------------------


def netlink_drops(pid: int) -> int:
    """Messages the kernel dropped for process `pid`'s uevent sockets (/proc/net/netlink)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    drops = 0
    for line in Path("/proc/net/netlink").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[1] == "15" and cols[9] in inodes:  # NETLINK_KOBJECT_UEVENT
            drops += int(cols[8])
    return drops


def test_udev_overflow_reopens_the_monitor_and_reconciles_sizes(rig):
    host, agent, name = rig["host"], rig["agent"], rig["name"]
    filler = host.loop(8)
    agent.stop()
    agent.start("--udev-buffer", "16384")
    since = len(agent.text())
    uevent = Path(f"/sys/block/{Path(filler).name}/uevent")
    size = rig["size_mb"] + 16
    mark = rig["log"].mark()
    agent.process.send_signal(signal.SIGSTOP)  # the agent reads nothing: its buffer fills
    try:
        for _ in range(50):
            for _ in range(20):
                uevent.write_text("change")
            if netlink_drops(agent.process.pid):
                break
            time.sleep(0.1)
        assert netlink_drops(agent.process.pid) > 0
        grow(rig["image"], rig["disk"], size)  # its RESIZE=1 event is lost for sure
        rig["size_mb"] = size
        time.sleep(0.5)
    finally:
        agent.process.send_signal(signal.SIGCONT)
    wait_log(agent, r"udev monitor failed: .*; re-opening it", 20.0, since)
    wait_log(agent, r"udev monitor re-opened; reconciling", 20.0, since)
    wait_log(agent, rf"resize guest={name} .* -> {size << 20} bytes", 20.0, since)
    rig["log"].wait_for(rf"^AVIO size sd\w+ {size * SECTORS_PER_MB}$", timeout=20, since=mark)
    assert agent.metric('avio_source_errors_total{source="udev"}') >= 1
    agent.stop()
    agent.start()


# ---- item 10: remove then add within the debounce window: the final state wins ----------


def test_remove_then_add_within_the_debounce_window_keeps_the_disk(rig):
    agent, name, disk = rig["agent"], rig["name"], rig["disk"]
    agent.stop()
    agent.start("--debounce", "1.0")
    since = len(agent.text())
    uevent = Path(f"/sys/block/{Path(disk).name}/uevent")
    uevent.write_text("remove")
    uevent.write_text("add")
    time.sleep(3.0)
    assert f"unplug guest={name}" not in agent.text()[since:]
    # Other agents on this host may have unplugged it meanwhile: the final state is "there".
    deadline = time.monotonic() + 15
    while f"dev='{disk}'" not in domain_xml(name, inactive=False):
        assert time.monotonic() < deadline, "the disk is not plugged"
        time.sleep(0.2)
    agent.stop()
    agent.start()
    grow_and_see(rig, rig["size_mb"] + 8)


# ---- items 12 and 11: a slow unplug, and libvirtd going away in the middle of it --------


@pytest.fixture(scope="module")
def nic_guest(rig):
    """A second running guest with a NIC; a paused guest never releases a NIC it is asked
    to unplug (PCI hot-unplug needs the guest), so its unplug waits."""
    host = rig["host"]
    bridge = host.bridge()
    name, log = host.boot_guest(f"network:avio_lan:0,1:vswitch:{bridge}", timeout=BOOT_TIMEOUT)
    statements = hpvm("hpvmstatus", "-P", name, "-d").stdout + "-B manual\n"
    nic = next(line for line in statements.splitlines() if line.startswith("network:"))
    config = rig["guests_dir"] / f"{name}.conf"
    return {"name": name, "log": log, "config": config, "with": statements, "nic": nic}


def virsh(*args: str) -> None:
    subprocess.run(["virsh", "-q", "-c", "qemu:///system", *args], check=True, capture_output=True)


def has_nic(name: str, inactive: bool) -> bool:
    return "<interface" in domain_xml(name, inactive=inactive)


def test_an_unplug_waiting_on_one_guest_does_not_delay_another(rig, nic_guest):
    agent, other = rig["agent"], nic_guest["name"]
    since = len(agent.text())
    virsh("suspend", other)
    try:
        nic_guest["config"].write_text(nic_guest["with"].replace(nic_guest["nic"] + "\n", ""))
        time.sleep(1.5)  # the agent asked the paused guest to release its NIC, and waits
        assert has_nic(other, inactive=True)
        grow_and_see(rig, rig["size_mb"] + 8, timeout=10.0)  # not 30 s behind the unplug
    finally:
        virsh("resume", other)
    wait_log(agent, rf"config {other}\.conf: detach guest={other} network:", 40.0, since)
    assert not has_nic(other, inactive=False) and not has_nic(other, inactive=True)


def test_libvirtd_restart_during_an_unplug_leaves_the_guest_consistent(rig, nic_guest):
    """The unplug's wait ends when the connection does; the agent reconnects; once the
    guest has let go of the NIC, the definition follows (no live-gone/defined-kept state
    that every later reconciliation fails on)."""
    agent, other, config = rig["agent"], nic_guest["name"], nic_guest["config"]
    since = len(agent.text())
    config.write_text(nic_guest["with"])
    wait_log(agent, rf"config {other}\.conf: attach guest={other} network:", 30.0, since)
    virsh("suspend", other)
    try:
        since = len(agent.text())
        config.write_text(nic_guest["with"].replace(nic_guest["nic"] + "\n", ""))
        time.sleep(1.5)  # waiting for the paused guest
        restart_libvirtd()
    finally:
        virsh("resume", other)
    wait_log(agent, r"connection to libvirt lost", 20.0, since)
    deadline = time.monotonic() + 30
    while has_nic(other, inactive=False):  # the guest releases it once it runs
        assert time.monotonic() < deadline, "the guest kept its NIC"
        time.sleep(0.2)
    config.write_text(config.read_text() + "# touched\n")  # at the latest, the next apply
    deadline = time.monotonic() + 30
    while has_nic(other, inactive=True):
        assert time.monotonic() < deadline, f"defined NIC kept:\n{agent.text()[since:]}"
        time.sleep(0.2)
    grow_and_see(rig, rig["size_mb"] + 8)  # and the agent is connected again
    config.unlink()


# ---- item 13: two writers of one guest at once --------------------------------------------


def test_hpvmmodify_during_an_agent_change_loses_nothing(rig, nic_guest):
    """The agent unplugs a NIC from a paused guest (its change waits for the guest) while
    `hpvmmodify -c 2 -O hpux` changes the same guest: the command waits for the agent's
    change, then both are in the definition (the old agent's metadata write undid -O)."""
    agent, other, config = rig["agent"], nic_guest["name"], nic_guest["config"]
    since = len(agent.text())
    config.write_text(nic_guest["with"])
    if not has_nic(other, inactive=False):
        wait_log(agent, rf"config {other}\.conf: attach guest={other} network:", 30.0, since)
    virsh("suspend", other)
    result: list[subprocess.CompletedProcess] = []
    try:
        since = len(agent.text())
        config.write_text(nic_guest["with"].replace(nic_guest["nic"] + "\n", ""))
        time.sleep(1.5)  # the agent waits for the paused guest to release the NIC
        writer = threading.Thread(
            target=lambda: result.append(hpvm("hpvmmodify", "-P", other, "-c", "2", "-O", "hpux"))
        )
        writer.start()
        time.sleep(2.0)
    finally:
        virsh("resume", other)
    writer.join(60)
    assert result and result[0].returncode == 0
    wait_log(agent, rf"config {other}\.conf: detach guest={other} network:", 40.0, since)
    xml = domain_xml(other)
    assert "<interface" not in xml
    assert "<hpvm:os>hpux</hpvm:os>" in xml and ">2</vcpu>" in xml, xml
    config.unlink()
