"""hpvmmigrate between two real libvirt hosts on this machine (tests/host/libvirt_pair.py).

A running tiny guest moves online and keeps running: its uptime goes on, it
answers on its console, its port keeps its VLAN rule (the target's qemu hook)
and the agent watching the target forwards a resize of its disk. Refusals
leave the guest where it was.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from agent.network import portfilter
from tests.host.conftest import require_host
from tests.host.guestkit import (
    BIN,
    AgentProcess,
    ConsoleLog,
    Host,
    free_port,
    grow,
    hpvm,
)
from tests.host.libvirt_pair import LibvirtHost

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pair():
    require_host()
    hook = BIN / "avio-libvirt-hook"
    source = LibvirtHost(free_port(), 49200, hook)
    target = LibvirtHost(free_port(), 49300, hook)
    unreachable = Path(tempfile.mkdtemp(prefix="avio-unreachable-"))
    unreachable.chmod(0o755)
    target.hide(unreachable)  # storage only the source can see
    host = Host()
    try:
        source.start()
        target.start()
        yield source, target, host, unreachable
    finally:
        source.stop()
        target.stop()
        host.cleanup()
        shutil.rmtree(unreachable, ignore_errors=True)


def virsh(uri: str, *args: str) -> str:
    return subprocess.run(
        ["virsh", "-q", "-c", uri, *args], capture_output=True, text=True
    ).stdout.strip()


def create(uri: str, host: Host, *statements: str, cmdline: str = "") -> str:
    return host.define_guest(*statements, memory="128M", cmdline=cmdline, connect=uri)


def vswitch(name: str, *uris: str) -> None:
    for uri in uris:
        hpvm("hpvmnet", "--connect", uri, "-c", "-S", name)
        hpvm("hpvmnet", "--connect", uri, "-b", "-S", name)
        hpvm("hpvmnet", "--connect", uri, "-S", name, "-u", "portid:3:vlanid:10")


def test_a_running_guest_moves_online_and_keeps_working(pair):
    source, target, host, _ = pair
    switch = f"avmg{free_port() % 10000}"
    vswitch(switch, source.uri, target.uri)
    disk = host.loop(16)
    name = create(
        source.uri,
        host,
        f"disk:avio_stor:0,0,3:disk:{disk}",
        f"network:lan::vswitch:{switch}:portid:3",
        cmdline="avio.tick=1",
    )
    log = ConsoleLog(f"/var/log/libvirt/qemu/{name}-console.log")
    try:
        hpvm("hpvmstart", "--connect", source.uri, "-P", name)
        log.wait_for(r"^AVIO uptime", timeout=180)
        before = float(re.findall(r"^AVIO uptime ([\d.]+)", log.text(), re.M)[-1])
        mark = log.mark()

        moved = hpvm("hpvmmigrate", "--connect", source.uri, "-P", name, "-h", target.uri, "-o")
        assert "Guest migrated successfully (online" in moved.stdout

        assert virsh(target.uri, "domstate", name) == "running"
        assert "Persistent:     yes" in virsh(target.uri, "dominfo", name)
        # the guest runs on: its uptime goes on counting, it never started again
        log.wait_for(r"^AVIO uptime", since=log.mark(), timeout=60)
        after = float(re.findall(r"^AVIO uptime ([\d.]+)", log.text(), re.M)[-1])
        assert after >= before and "AVIO ready" not in log.text()[mark:]
        # it answers on its console, through the target
        answer = subprocess.run(
            [str(BIN / "hpvmconsole"), "--connect", target.uri, "-P", name, "-c", "CO"],
            input="where are you\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "AVIO typed where are you" in answer.stdout, answer.stderr
        # its port's VLAN rule came along (the target's hook, before the guest ran there)
        tap = virsh(target.uri, "domiflist", name).split()[0]
        assert portfilter.current(tap) == "10"
        # the source keeps its definition, not runnable
        assert virsh(source.uri, "domstate", name) == "shut off"
        again = hpvm("hpvmstart", "--connect", source.uri, "-P", name, check=False)
        assert again.returncode == 1 and "not runnable here: migrated to" in again.stderr
        bypass = subprocess.run(  # nor through libvirt itself: the source's qemu hook refuses
            ["virsh", "-c", source.uri, "start", name], capture_output=True, text=True
        )
        assert bypass.returncode != 0 and "not runnable here" in bypass.stderr
        # the agent watching the target forwards a host resize of the guest's disk
        agent = AgentProcess(host.tmp / "guests", host.tmp / "agent.log", free_port())
        (host.tmp / "guests").mkdir(exist_ok=True)
        agent.start("--connect", target.uri)
        try:
            mark = log.mark()
            grow(host.tmp / "disk0.img", disk, 24)
            log.wait_for(rf"^AVIO size sda {24 * 2048}$", since=mark, timeout=30)
        finally:
            agent.stop()
    finally:
        for uri in (source.uri, target.uri):
            hpvm("hpvmremove", "--connect", uri, "-P", name, "-F", check=False)
            hpvm("hpvmnet", "--connect", uri, "-d", "-F", "-S", switch, check=False)


def test_refusals_leave_the_guest_where_it_was(pair):
    source, target, host, unreachable = pair
    # a name taken on the target
    name = create(source.uri, host)
    create_there = ["--connect", target.uri, "-P", name, "-O", "linux", "-r", "64M"]
    hpvm("hpvmcreate", *create_there)
    taken = hpvm("hpvmmigrate", "--connect", source.uri, "-P", name, "-h", target.uri, check=False)
    assert taken.returncode == 1 and "a guest named" in taken.stderr
    # a vswitch the target lacks
    switch = f"avmo{free_port() % 10000}"
    hpvm("hpvmnet", "--connect", source.uri, "-c", "-S", switch)
    lone = create(source.uri, host, f"network:lan::vswitch:{switch}")
    missing = hpvm(
        "hpvmmigrate", "--connect", source.uri, "-P", lone, "-h", target.uri, check=False
    )
    assert missing.returncode == 1 and "vswitch validation failed" in missing.stderr
    assert virsh(target.uri, "list", "--all", "--name").split() == [name]
    hpvm("hpvmnet", "--connect", source.uri, "-d", "-F", "-S", switch, check=False)
    # a running guest without -o, and storage the target cannot reach
    image = unreachable / "only-here.img"
    image.write_bytes(b"\0" * (4 << 20))
    hidden = create(source.uri, host, f"disk:avio_stor:0,0,1:file:{image}")
    hpvm("hpvmstart", "--connect", source.uri, "-P", hidden)
    offline = hpvm(
        "hpvmmigrate", "--connect", source.uri, "-P", hidden, "-h", target.uri, check=False
    )
    assert offline.returncode == 1 and "use -o" in offline.stderr
    unreachable_run = hpvm(
        "hpvmmigrate", "--connect", source.uri, "-P", hidden, "-h", target.uri, "-o", check=False
    )
    assert unreachable_run.returncode == 1, unreachable_run.stdout
    assert "the guest stays here" in unreachable_run.stderr
    assert virsh(source.uri, "domstate", hidden) == "running"
    assert hidden not in virsh(target.uri, "list", "--all", "--name").split()


def test_offline_migration_with_a_new_name_and_no_copy_left(pair):
    source, target, host, _ = pair
    name = create(source.uri, host)
    new = host.guest_name()
    done = hpvm(
        "hpvmmigrate", "--connect", source.uri, "-P", name, "-h", target.uri, "-N", new, "-D"
    )
    assert "Guest migrated successfully (offline" in done.stdout
    assert virsh(target.uri, "domstate", new) == "shut off"
    assert name not in virsh(source.uri, "list", "--all", "--name").split()
