"""The libvirt qemu hook: a host "reboot" (bridges gone, libvirt autostarting
guests) brings guests up on their vswitch with their port VLAN, no agent running.

The hook is installed for this module (scripts/install-libvirt-hook.sh, which
restarts libvirtd) and removed afterwards. Addresses are link-local only.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.daemon.hook_service import DEFAULT_SOCKET
from agent.network import netlink, portfilter
from tests.conftest import REPO
from tests.host.conftest import require_host
from tests.host.guestkit import AgentProcess, ConsoleLog, Host, free_port, restart_libvirtd
from tests.host.test_vswitch import Net, port_vlan, sh, taps, vlan_host

pytestmark = pytest.mark.integration
AUTOSTARTED = Path("/run/libvirt/qemu/autostarted")  # libvirt autostarts once per boot


INSTALLED = Path("/etc/libvirt/hooks/qemu.d/avio-kvm")


@pytest.fixture(scope="module")
def hook(tmp_path_factory):
    """Our hook, installed from a prefix with a space and an `&` in it (issue 10, item 21);
    the hook installed before (if any) is put back afterwards."""
    require_host()
    before = INSTALLED.read_bytes() if INSTALLED.exists() else None
    prefix = tmp_path_factory.mktemp("hook") / "avio kvm & co" / "bin"
    prefix.mkdir(parents=True)
    (prefix / "avio-libvirt-hook").symlink_to(REPO / ".venv/bin/avio-libvirt-hook")
    installer = REPO / "scripts/install-libvirt-hook.sh"
    sh(str(installer), str(prefix / "avio-libvirt-hook"))
    yield
    sh(str(installer), "--remove")
    if before is not None:
        INSTALLED.write_bytes(before)
        INSTALLED.chmod(0o755)


@pytest.fixture
def net(hook):
    made = Net()
    yield made
    made.cleanup()


@pytest.fixture
def host(hook):
    made = Host()
    yield made
    made.cleanup()


def test_autostart_after_a_reboot_restores_the_bridge_and_the_port_vlan(net, host):
    uplink, ns = net.uplink_into_namespace("169.254.83.99/16")
    vlan_host(ns, f"avtpe{net.tag}", 10, "169.254.83.10/16")
    vswitch = net.vswitch(uplink)
    port_vlan(vswitch, 7, 10)
    name = host.define_guest(
        f"network:avio_lan::vswitch:{vswitch}:portid:7",
        memory="192M",
        cmdline="avio.ip=169.254.83.1/16 avio.ping=169.254.83.10",
        boot="auto",
    )
    log = ConsoleLog(f"/var/log/libvirt/qemu/{name}-console.log")
    # What a reboot leaves: no bridge, the uplink free, libvirt starting afresh.
    sh("ip", "link", "del", vswitch)
    AUTOSTARTED.unlink(missing_ok=True)
    restart_libvirtd()
    state = subprocess.run(["virsh", "domstate", name], capture_output=True, text=True)
    assert state.stdout.strip() == "running", state.stderr
    assert netlink.is_up(vswitch) and netlink.master_of(uplink) == vswitch
    ((_, tap),) = taps(name).items()
    assert portfilter.current(tap) == "10"
    log.wait_for(r"^AVIO ping 169\.254\.83\.10 ok", timeout=90)


def start_refused_while_mounted(host: Host, name: str, dev: str) -> None:
    """`virsh start` of `name` while the host has its disk `dev` mounted: the hook's refusal."""
    sh("mkfs.ext4", "-q", "-F", dev)
    mnt = host.tmp / f"mnt-{name}"
    mnt.mkdir(exist_ok=True)
    sh("mount", dev, str(mnt))
    try:
        result = subprocess.run(["virsh", "start", name], capture_output=True, text=True)
    finally:
        sh("umount", str(mnt))
    assert result.returncode != 0
    assert f"avio-libvirt-hook: guest {name}: {dev} is mounted on the host" in result.stderr


def test_virsh_start_of_a_guest_whose_disk_is_mounted_is_refused(host):
    """libvirt starting a guest itself goes through the same storage check (issue 10, item 4)."""
    dev = host.loop()
    name = host.define_guest(f"disk:avio_stor::disk:{dev}", memory="128M")
    start_refused_while_mounted(host, name, dev)
    state = subprocess.run(["virsh", "domstate", name], capture_output=True, text=True)
    assert state.stdout.strip() == "shut off"
    started = subprocess.run(["virsh", "start", name], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr  # unmounted: the hook lets it start


def test_the_running_agent_answers_the_hook_and_leaves_refusals_to_it(net, host, tmp_path):
    """With the agent on the unit's socket, `virsh start` is answered by the agent (the
    port rule is there before the vCPUs run); a refusal is still the hook's own."""
    agent = AgentProcess(tmp_path / "guests", tmp_path / "agent.log", free_port())
    try:
        agent.start("--hook-socket", str(DEFAULT_SOCKET))
        vswitch = net.vswitch()
        port_vlan(vswitch, 3, 20)
        dev = host.loop()
        name = host.define_guest(
            f"network:lan::vswitch:{vswitch}:portid:3",
            f"disk:avio_stor::disk:{dev}",
            memory="128M",
        )
        sh("virsh", "start", name)
        ((_, tap),) = taps(name).items()
        assert portfilter.current(tap) == "20"
        answered = 'avio_hook_answers_total{operation="%s",answer="%s"}'
        assert agent.metric(answered % ("prepare", "ok")) == 1
        assert agent.metric(answered % ("started", "ok")) == 1
        sh("virsh", "destroy", name)
        start_refused_while_mounted(host, name, dev)
        assert agent.metric(answered % ("prepare", "local")) == 1
    finally:
        agent.stop()
