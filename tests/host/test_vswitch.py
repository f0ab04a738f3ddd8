"""vswitches on the host: bridges by netlink, guests talking over them, refusals.

Test traffic stays on this machine: guests and namespaces get link-local
addresses (169.254.0.0/16) only, the host none on these bridges; every bridge,
veth, namespace and definition made here is removed afterwards.
"""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from agent.network import netlink, portfilter
from tests.conftest import REPO
from tests.host.conftest import made_on_host
from tests.host.frames import received, run_in
from tests.host.guestkit import BIN, AgentProcess, Host, free_port, hpvm

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
        sh("sysctl", "-qw", f"net.ipv6.conf.{near}.disable_ipv6=1")  # host: no address
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
    yield from made_on_host(Net)


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


def vlan_host(ns: str, iface: str, vlan: int, address: str) -> str:
    """Give the outside host in `ns` an interface on `vlan` at `address`; returns its name.

    A real 802.1Q interface where the kernel has one; on kernels without
    CONFIG_VLAN_8021Q (as on the machines this was written on) the link itself
    is made to tag and untag VLAN `vlan` (frames.py vlan-endpoint). Either
    way the frames on the wire carry the tag, which the tests capture.
    """
    name = f"{iface}.{vlan}"
    made = subprocess.run(
        [
            "ip",
            "-n",
            ns,
            "link",
            "add",
            "link",
            iface,
            "name",
            name,
            "type",
            "vlan",
            "id",
            str(vlan),
        ],
        capture_output=True,
    )
    if made.returncode != 0:
        name = iface
        run_in(ns, "vlan-endpoint", iface, str(vlan))
    sh("ip", "-n", ns, "addr", "add", address, "dev", name)
    sh("ip", "-n", ns, "link", "set", name, "up")
    return name


def port_vlan(vswitch: str, port: int, vlan: int | str) -> None:
    hpvm("hpvmnet", "-S", vswitch, "-u", f"portid:{port}:vlanid:{vlan}")


def test_same_vlan_talks_other_vlan_does_not_and_u_moves_a_running_guest(net, host):
    """Applied at start (hpvmstart), changed live by -u; AVIO and VIO on one vswitch."""
    uplink, _ = net.uplink_into_namespace("169.254.79.9/16")
    vswitch = net.vswitch(uplink)
    port_vlan(vswitch, 1, 10)
    port_vlan(vswitch, 2, 10)
    a, log_a = host.boot_guest(
        f"network:avio_lan::vswitch:{vswitch}:portid:1",
        memory="192M",
        cmdline="avio.ip=169.254.79.1/16 avio.ping=169.254.79.2,169.254.79.9",
    )
    b, _ = host.boot_guest(
        f"network:lan::vswitch:{vswitch}:portid:2",
        memory="192M",
        cmdline="avio.ip=169.254.79.2/16",
    )
    shown = hpvm("hpvmnet", "-S", vswitch).stdout
    assert f"1       Active       avio_lan 10       1            {a}" in shown
    assert f"2       Active       lan      10       1            {b}" in shown
    log_a.wait_for(r"^AVIO ping 169\.254\.79\.2 ok", timeout=60)
    # The outside host is untagged: a guest on VLAN 10 does not reach it.
    log_a.wait_for(r"^AVIO ping 169\.254\.79\.9 fail", timeout=30, since=log_a.mark())
    port_vlan(vswitch, 2, 20)
    mark = log_a.mark()
    log_a.wait_for(r"^AVIO ping 169\.254\.79\.2 fail", timeout=30, since=mark)
    log_a.wait_for(r"^AVIO ping 169\.254\.79\.2 fail", timeout=30, since=log_a.mark())
    port_vlan(vswitch, 2, 10)
    log_a.wait_for(r"^AVIO ping 169\.254\.79\.2 ok", timeout=30, since=log_a.mark())
    # Both ports back to no VLAN: they talk untagged, and reach the outside host.
    port_vlan(vswitch, 1, "none")
    port_vlan(vswitch, 2, "none")
    log_a.wait_for(r"^AVIO ping 169\.254\.79\.9 ok", timeout=30, since=log_a.mark())
    log_a.wait_for(r"^AVIO ping 169\.254\.79\.2 ok", timeout=30, since=log_a.mark())


def test_vlan_reaches_the_uplink_tagged_and_guest_tags_are_dropped(net, host):
    """A hot-plugged NIC on VLAN 10; the guest also tags frames for VLAN 20 itself."""
    uplink, ns = net.uplink_into_namespace("169.254.80.99/16")
    vlan_host(ns, f"avtpe{net.tag}", 10, "169.254.80.10/16")
    vswitch = net.vswitch(uplink)
    port_vlan(vswitch, 3, 10)
    a, log_a = host.boot_guest(
        memory="192M",
        cmdline=(
            "avio.ip=169.254.80.1/16 avio.vlan=20:169.254.81.1/24 "
            "avio.ping=169.254.80.10,169.254.81.9"
        ),
    )
    hpvm("hpvmmodify", "-P", a, "-a", f"network:avio_lan::vswitch:{vswitch}:portid:3")
    # Plugged with its link down, given its rule, then brought up: the rule is
    # there when the command returns; only the live NIC carries a link state.
    ((mac, tap),) = taps(a).items()
    assert portfilter.current(tap) == "10"
    assert "<link state='up'/>" in sh("virsh", "dumpxml", a).stdout
    assert "<link " not in sh("virsh", "dumpxml", "--inactive", a).stdout
    log_a.wait_for(r"^AVIO nic\+ eth0", timeout=30)
    log_a.wait_for(r"^AVIO ping 169\.254\.80\.10 ok", timeout=60)
    log_a.wait_for(r"^AVIO nic\+ eth0\.20", timeout=30)  # the guest's own VLAN 20 interface
    listener = run_in(ns, "listen", f"avtpe{net.tag}", "4", wait=False)
    frames = [f for f in received(listener) if f["src"] == mac]
    # The namespace sees the guest's frames tagged 10, its pings among them,
    # and nothing of what the guest tagged 20 itself (an ARP request for
    # 169.254.81.9 every second): not alone, not inside VLAN 10.
    assert "0800" in {f["type"] for f in frames}, frames
    assert {(f["vlan"], f["type"] in ("8100", "88a8")) for f in frames} == {(10, False)}, frames
    port_vlan(vswitch, 3, 20)
    mark = log_a.mark()
    log_a.wait_for(r"^AVIO ping 169\.254\.80\.10 fail", timeout=30, since=mark)
    log_a.wait_for(r"^AVIO ping 169\.254\.80\.10 fail", timeout=30, since=log_a.mark())


def taps(name: str) -> dict[str, str]:
    """MAC -> tap of a running guest (virsh domiflist)."""
    out = sh("virsh", "-q", "domiflist", name).stdout
    return {cols[4]: cols[0] for cols in (line.split() for line in out.splitlines()) if cols}


def wait_for_rule(tap: str, wanted: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while portfilter.current(tap) != wanted:
        assert time.monotonic() < deadline, f"{tap}: rule {portfilter.current(tap)!r}"
        time.sleep(0.05)


def test_the_agent_sets_rules_on_guests_started_and_plugged_by_others(net, host):
    """`virsh start` and `virsh attach-interface` bypass hpvm*: the agent follows libvirt."""
    local = net.vswitch()
    port_vlan(local, 5, 30)
    name = host.define_guest(f"network:lan::vswitch:{local}:portid:5")
    agent = AgentProcess(host.tmp / "guests", host.tmp / "agent.log", free_port())
    (host.tmp / "guests").mkdir()
    agent.start()
    try:
        sh("virsh", "start", name)
        (tap,) = taps(name).values()
        wait_for_rule(tap, "30")
        plug = ("virsh", "attach-interface", name, "bridge", local, "--model", "e1000", "--live")
        sh(*plug)
        (plugged,) = set(taps(name).values()) - {tap}
        wait_for_rule(plugged, "none")
        # An alias of the plugger's own choosing is a NIC all the same.
        sh(*plug, "--alias", "ua-eth1")
        (custom,) = set(taps(name).values()) - {tap, plugged}
        wait_for_rule(custom, "none")
    finally:
        agent.stop()


def unit_capabilities() -> str:
    """The agent unit's capability bounding set, as setpriv takes it: -all,+net_admin,..."""
    unit = (REPO / "systemd/avio-agent.service").read_text()
    line = next(x for x in unit.splitlines() if x.startswith("CapabilityBoundingSet="))
    names = line.split("=", 1)[1].split()
    return ",".join(["-all", *(f"+{n.lower().removeprefix('cap_')}" for n in names)])


def test_the_agent_needs_only_its_units_capabilities(net, host):
    """avio-agent --once with the unit's capabilities and /proc/sys read-only (its
    sandbox, short of systemd) restores a vswitch bridge and a guest's port rule."""
    local, spare = net.vswitch(), net.vswitch()
    port_vlan(local, 5, 30)
    name = host.define_guest(f"network:lan::vswitch:{local}:portid:5")
    hpvm("hpvmstart", "-P", name)
    (tap,) = taps(name).values()
    sh("tc", "qdisc", "del", "dev", tap, "clsact")  # the rule is lost
    sh("ip", "link", "del", spare)  # and a started vswitch's bridge
    assert portfilter.current(tap) is None and not netlink.exists(spare)
    sandbox = (
        "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && "
        f'exec setpriv --bounding-set={unit_capabilities()} --no-new-privs "$@"'
    )
    agent = [str(BIN / "avio-agent"), "--once", "--guests-dir", "/nonexistent-avio-test"]
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", sandbox, "sh", *agent],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert portfilter.current(tap) == "30"
    assert netlink.is_up(spare) and not netlink.ipv4_of(spare)
    assert "inet6" not in sh("ip", "-6", "addr", "show", "dev", spare).stdout


def test_a_nic_moved_off_the_vswitches_loses_its_rule(net, host):
    local, plain = net.vswitch(), host.bridge()
    port_vlan(local, 4, 10)
    name = host.define_guest(f"network:lan:0,1:vswitch:{local}:portid:4")
    hpvm("hpvmstart", "-P", name)
    (tap,) = taps(name).values()
    assert portfilter.current(tap) == "10"
    hpvm("hpvmmodify", "-P", name, "-m", f"network:lan:0,1:vswitch:{plain}")
    assert netlink.master_of(tap) == plain and portfilter.current(tap) is None
    hpvm("hpvmmodify", "-P", name, "-m", f"network:lan:0,1:vswitch:{local}:portid:4")
    assert netlink.master_of(tap) == local and portfilter.current(tap) == "10"
