"""Storage is checked again just before it reaches a running guest (issue 10, item 4):
`hpvmstart`, the libvirt hook's `prepare` (autostart, `virsh start`) and the
agent's re-plug of a returning device refuse what is unsafe *now*: a device the
host mounted since the guest was defined, a `/dev/loopN` (like a `/dev/sdX`
after a reboot) that now names another guest's storage.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from agent.cli import hpvmcreate, hpvmstart
from agent.connection import ensure_event_loop
from agent.guests.removal import RemovalWatch
from tests.conftest import REPO, command_env
from tests.host.conftest import domain_xml, mounted, sh
from tests.host.guestkit import BIN, Host, hpvm, new_loop_node

pytestmark = pytest.mark.integration


def create(cli, name: str, *statements: str) -> None:
    argv = ["-P", name, "-O", "linux", "-r", "128M", "-B", "manual"]
    for statement in statements:
        argv += ["-a", statement]
    result = cli(hpvmcreate, argv)
    assert result.code == 0, result.err


def is_active(name: str) -> bool:
    conn = libvirt.open("qemu:///system")
    try:
        return bool(conn.lookupByName(name).isActive())
    finally:
        conn.close()


def test_hpvmstart_refuses_a_disk_the_host_mounted_meanwhile(cli, host):
    dev, name = host.loop(), host.guest_name()
    create(cli, name, f"disk:avio_stor::disk:{dev}")
    with mounted(dev, host.tmp / "mnt"):
        result = cli(hpvmstart, ["-P", name])
    assert result.code == 2, result.err
    assert len(result.err.splitlines()) == 1 and "mounted on the host" in result.err
    assert not is_active(name)


def test_hpvmstart_refuses_a_renumbered_device(cli, host):
    """Guest b's /dev/loopN now names guest a's file, as /dev/sdX can after a reboot."""
    a, b = host.guest_name(), host.guest_name()
    image_a = host.tmp / "a.img"
    with open(image_a, "wb") as f:
        f.truncate(8 * 1024 * 1024)
    dev = own_loop(host)
    create(cli, a, f"disk:avio_stor::file:{image_a}")
    create(cli, b, f"disk:avio_stor::disk:{dev}")
    rebind(dev, image_a)
    result = cli(hpvmstart, ["-P", b])
    assert result.code == 2, result.err
    assert f"already used by guest '{a}'" in result.err
    assert not is_active(b)


def own_loop(host: Host) -> str:
    """A loop device `losetup -f` (other tests) will not take while we rebind it."""
    node = new_loop_node()
    image = host.tmp / f"{Path(node).name}.img"
    with open(image, "wb") as f:
        f.truncate(8 * 1024 * 1024)
    sh("losetup", node, str(image))
    host.loops.append(node)
    return node


def rebind(dev: str, image: Path) -> None:
    sh("losetup", "-d", dev)
    for _ in range(100):  # the kernel clears a loop device asynchronously
        if subprocess.run(["losetup", dev, str(image)], capture_output=True).returncode == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"cannot bind {dev} again")


def run_hook(name: str, xml: str, domains: Path, tmp: Path) -> subprocess.CompletedProcess:
    networks = tmp / "no-networks"
    networks.mkdir(exist_ok=True)
    return subprocess.run(
        [str(REPO / ".venv/bin/avio-libvirt-hook"), name, "prepare", "begin", "-"],
        input=xml,
        capture_output=True,
        text=True,
        env=command_env(
            "/usr/bin:/bin",
            AVIO_LIBVIRT_NETWORKS=str(networks),
            AVIO_LIBVIRT_DOMAINS=str(domains),
        ),
    )


def test_the_hook_refuses_to_start_a_guest_whose_disk_is_mounted(cli, host):
    dev, name = host.loop(), host.guest_name()
    create(cli, name, f"disk:avio_stor::disk:{dev}")
    domains = host.tmp / "domains"
    domains.mkdir()
    xml = domain_xml(name)
    assert run_hook(name, xml, domains, host.tmp).returncode == 0
    with mounted(dev, host.tmp / "mnt"):
        result = run_hook(name, xml, domains, host.tmp)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"avio-libvirt-hook: guest {name}: {dev} is mounted")


def test_the_hook_refuses_storage_another_guest_has(cli, host):
    a, b = host.guest_name(), host.guest_name()
    image = host.tmp / "shared.img"
    with open(image, "wb") as f:
        f.truncate(8 * 1024 * 1024)
    create(cli, a, f"disk:avio_stor::file:{image}")
    dev = own_loop(host)
    create(cli, b, f"disk:avio_stor::disk:{dev}")
    domains = host.tmp / "domains"
    domains.mkdir()
    (domains / f"{a}.xml").write_text(domain_xml(a))  # as libvirt keeps it in /etc/libvirt/qemu
    assert run_hook(b, domain_xml(b), domains, host.tmp).returncode == 0
    rebind(dev, image)  # b's device now is a's file
    result = run_hook(b, domain_xml(b), domains, host.tmp)
    assert result.returncode == 1 and f"already used by guest '{a}'" in result.stderr


def detach_live(name: str, dev: str) -> None:
    """Unplug the disk on `dev` from the running guest (as the agent does when it goes away)."""
    ensure_event_loop()
    conn = libvirt.open("qemu:///system")
    try:
        dom = conn.lookupByName(name)
        root = etree.fromstring(dom.XMLDesc(0).encode())
        disk = next(d for d in root.iterfind("devices/disk") if d.find("source").get("dev") == dev)
        with RemovalWatch(conn, dom) as watch:
            dom.detachDeviceFlags(
                etree.tostring(disk, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_LIVE
            )
            watch.wait(disk.find("alias").get("name"), 30)
    finally:
        conn.close()


def agent_once(guests_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "avio-agent"), "--once", "--guests-dir", str(guests_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=command_env(),
    )


def other_agents() -> bool:
    """Does another avio-agent run on this host (other test runs share the libvirtd)?"""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"avio-agent" in cmdline.read_bytes():
                return True
        except OSError:
            pass
    return False


def test_the_agent_does_not_replug_a_device_the_host_mounted(host):
    dev = host.loop()
    name = host.define_guest(f"disk:avio_stor::disk:{dev}", memory="128M")
    hpvm("hpvmstart", "-P", name)
    guests_dir = host.tmp / "guests"
    guests_dir.mkdir()
    with mounted(dev, host.tmp / "mnt"):
        detach_live(name, dev)
        result = agent_once(guests_dir)
        assert result.returncode == 0, result.stderr
        assert "refused: " + f"{dev} is mounted on the host" in result.stderr
        assert "is back" not in result.stderr
        if not other_agents():  # an agent of another test run may plug it (the old bug)
            assert f"dev='{dev}'" not in domain_xml(name, inactive=False)
    result = agent_once(guests_dir)  # unmounted: the device is plugged back
    assert result.returncode == 0, result.stderr
    assert f"dev='{dev}'" in domain_xml(name, inactive=False), result.stderr
