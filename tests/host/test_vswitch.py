"""vswitches on the host: bridges by netlink, guests talking over them, refusals.

Test traffic stays on this machine: guests and namespaces get link-local
addresses (169.254.0.0/16) only, the host none on these bridges; every bridge,
veth, namespace and definition made here is removed afterwards.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest

from agent import netlink
from tests.host.conftest import require_host
from tests.host.guestkit import BIN, Host, hpvm

pytestmark = pytest.mark.integration


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True)


class Net:
    """vswitches, veths and namespaces made by a test; removed by cleanup()."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.switches: list[str] = []
        self.links: list[str] = []
        self.namespaces: list[str] = []

    def vswitch(self, uplink: str | None = None) -> str:
        name = f"avtsw{self.tag}{len(self.switches)}"
        hpvm("hpvmnet", "-c", "-S", name, *(["-n", uplink] if uplink else []))
        self.switches.append(name)
        hpvm("hpvmnet", "-b", "-S", name)
        return name

    def uplink_into_namespace(self, address: str) -> tuple[str, str]:
        """A veth whose far end sits in a new namespace (the 'outside host') at `address`."""
        near, far, ns = f"avtup{self.tag}", f"avtpe{self.tag}", f"avtns{self.tag}"
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "link", "add", near, "type", "veth", "peer", "name", far)
        self.links.append(near)
        sh("ip", "link", "set", far, "netns", ns)
        sh("ip", "-n", ns, "addr", "add", address, "dev", far)
        sh("ip", "-n", ns, "link", "set", far, "up")
        return near, ns

    def cleanup(self) -> None:
        for name in self.switches:
            hpvm("hpvmnet", "-d", "-F", "-S", name, check=False)
        for link in self.links:
            sh("ip", "link", "del", link, check=False)
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def net():
    require_host()
    made = Net()
    yield made
    made.cleanup()


@pytest.fixture
def host():
    require_host()
    made = Host()
    yield made
    made.cleanup()


def boot(host: Host, vswitch: str, address: str, ping: str, adapter: str = "avio_lan"):
    """A tiny guest with one NIC on `vswitch` at `address`, pinging `ping` every second."""
    return host.boot_guest(
        f"network:{adapter}::vswitch:{vswitch}",
        memory="192M",
        cmdline=f"avio.ip={address} avio.ping={ping}",
    )


def test_list_and_show(net):
    local = net.vswitch()
    listing = hpvm("hpvmnet").stdout
    assert listing.startswith(
        "Name     Number State   Mode      NamePPA  MAC Address    IP Address"
    )
    row = next(line for line in listing.splitlines() if line.startswith(local))
    assert row.split()[2:] == ["Up", "Shared", "N/A", "N/A"]
    shown = hpvm("hpvmnet", "-S", local).stdout
    assert "[Port Configuration Details]" in shown
    assert not netlink.ipv4_of(local)  # the host takes no address on a vswitch


def test_guests_on_one_vswitch_talk_and_reach_the_uplink(net, host):
    uplink, _ = net.uplink_into_namespace("169.254.77.9/16")
    vswitch = net.vswitch(uplink)
    assert netlink.master_of(uplink) == vswitch
    a, log_a = boot(host, vswitch, "169.254.77.1/16", "169.254.77.2")
    b, log_b = boot(host, vswitch, "169.254.77.2/16", "169.254.77.9", adapter="lan")
    log_a.wait_for(r"^AVIO ping 169\.254\.77\.2 ok", timeout=90)
    log_b.wait_for(r"^AVIO ping 169\.254\.77\.9 ok", timeout=90)
    shown = hpvm("hpvmnet", "-S", vswitch).stdout
    assert f"Active       avio_lan none     1            {a}" in shown
    assert f"Active       lan      none     1            {b}" in shown


def test_localnet_like_vswitch_refuses_avio_lan(net, host):
    local = net.vswitch()
    result = hpvm(
        "hpvmcreate",
        "-P",
        host.guest_name(),
        "-a",
        f"network:avio_lan::vswitch:{local}",
        check=False,
    )
    assert result.returncode == 2 and "no uplink" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    result = hpvm(
        "hpvmcreate",
        "-P",
        host.guest_name(),
        "-B",
        "manual",
        "-a",
        f"network:lan::vswitch:{local}",
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_busy_vswitch_is_not_deleted(net, host):
    local = net.vswitch()
    name, _ = host.boot_guest(f"network:lan::vswitch:{local}", memory="128M")
    before = hpvm("hpvmnet").stdout
    result = hpvm("hpvmnet", "-d", "-S", local, check=False)
    assert result.returncode == 2 and name in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert hpvm("hpvmnet").stdout == before and netlink.exists(local)


@pytest.mark.parametrize(
    "argument", ["portid:5:vlanid:4095", "portid:5:vlanid:abc", "portid:600:vlanid:10"]
)
def test_bad_vlan_is_refused(net, argument):
    local = net.vswitch()
    before = hpvm("hpvmnet", "-S", local).stdout
    result = hpvm("hpvmnet", "-S", local, "-u", argument, check=False)
    assert result.returncode == 2 and f"'{argument}'" in result.stderr
    assert hpvm("hpvmnet", "-S", local).stdout == before


def test_definition_survives_the_bridge_going_away(net):
    uplink, _ = net.uplink_into_namespace("169.254.78.9/16")
    vswitch = net.vswitch(uplink)
    sh("ip", "link", "del", vswitch)  # what a host reboot does to a bridge
    result = subprocess.run(
        [str(BIN / "avio-agent"), "--once", "--guests-dir", "/nonexistent-avio-test"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert netlink.exists(vswitch) and netlink.is_up(vswitch)
    assert netlink.master_of(uplink) == vswitch


needs_vlans = pytest.mark.skipif(
    not netlink.vlan_filtering_supported(),
    reason="this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING) and no "
    "802.1Q: port VLANs cannot be tested here",
)


@needs_vlans
def test_same_vlan_talks_other_vlan_does_not_and_u_moves_a_running_guest(net, host):
    uplink, _ = net.uplink_into_namespace("169.254.79.9/16")
    vswitch = net.vswitch(uplink)
    a, log_a = boot(host, vswitch, "169.254.79.1/16", "169.254.79.2")
    b, _ = boot(host, vswitch, "169.254.79.2/16", "169.254.79.1")
    ports = {}
    for name in (a, b):
        line = next(
            x
            for x in hpvm("hpvmstatus", "-P", name, "-d").stdout.splitlines()
            if x.startswith("network:")
        )
        ports[name] = line.rsplit(":", 1)[1]
    hpvm("hpvmnet", "-S", vswitch, "-u", f"portid:{ports[a]}:vlanid:10")
    hpvm("hpvmnet", "-S", vswitch, "-u", f"portid:{ports[b]}:vlanid:10")
    mark = log_a.mark()
    log_a.wait_for(r"^AVIO ping 169\.254\.79\.2 ok", timeout=60, since=mark)
    hpvm("hpvmnet", "-S", vswitch, "-u", f"portid:{ports[b]}:vlanid:20")
    mark = log_a.mark()
    log_a.wait_for(r"^AVIO ping 169\.254\.79\.2 fail", timeout=30, since=mark)
    mark = log_a.mark()
    log_a.wait_for(r"^AVIO ping 169\.254\.79\.2 fail", timeout=30, since=mark)
    hpvm("hpvmnet", "-S", vswitch, "-u", f"portid:{ports[b]}:vlanid:10")
    mark = log_a.mark()
    log_a.wait_for(r"^AVIO ping 169\.254\.79\.2 ok", timeout=30, since=mark)


@needs_vlans
def test_vlan_reaches_the_uplink_tagged(net, host):
    uplink, ns = net.uplink_into_namespace("169.254.80.99/16")
    far = f"avtpe{net.tag}"
    sh("ip", "-n", ns, "link", "add", "link", far, "name", "v10", "type", "vlan", "id", "10")
    sh("ip", "-n", ns, "addr", "add", "169.254.80.10/16", "dev", "v10")
    sh("ip", "-n", ns, "link", "set", "v10", "up")
    vswitch = net.vswitch(uplink)
    a, log_a = boot(host, vswitch, "169.254.80.1/16", "169.254.80.10")
    port = next(
        x for x in hpvm("hpvmstatus", "-P", a, "-d").stdout.splitlines() if x.startswith("network:")
    ).rsplit(":", 1)[1]
    hpvm("hpvmnet", "-S", vswitch, "-u", f"portid:{port}:vlanid:10")
    log_a.wait_for(r"^AVIO ping 169\.254\.80\.10 ok", timeout=60, since=log_a.mark())
    hpvm("hpvmnet", "-S", vswitch, "-u", f"portid:{port}:vlanid:20")
    mark = log_a.mark()
    log_a.wait_for(r"^AVIO ping 169\.254\.80\.10 fail", timeout=30, since=mark)
    log_a.wait_for(r"^AVIO ping 169\.254\.80\.10 fail", timeout=30, since=log_a.mark())
