"""The libvirt qemu hook: a host "reboot" (bridges gone, libvirt autostarting
guests) brings guests up on their vswitch with their port VLAN, no agent running.

The hook is installed for this module (scripts/install-libvirt-hook.sh, which
restarts libvirtd) and removed afterwards. Addresses are link-local only.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent import netlink, portfilter
from tests.conftest import REPO
from tests.host.conftest import require_host
from tests.host.guestkit import ConsoleLog, Host, restart_libvirtd
from tests.host.test_vswitch import Net, port_vlan, sh, taps, vlan_host

pytestmark = pytest.mark.integration
AUTOSTARTED = Path("/run/libvirt/qemu/autostarted")  # libvirt autostarts once per boot


@pytest.fixture(scope="module")
def hook():
    require_host()
    installer = REPO / "scripts/install-libvirt-hook.sh"
    sh(str(installer), str(REPO / ".venv/bin/avio-libvirt-hook"))
    yield
    sh(str(installer), "--remove")


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
