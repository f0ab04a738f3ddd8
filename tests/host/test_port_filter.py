"""The port VLAN rules in the real kernel: a bridge, veth ports into namespaces, raw frames.

No guests here (test_vswitch.py has those): each namespace stands for a
guest's tap, or for the host behind the uplink, and sends and listens with
tests/host/frames.py. Every frame is a broadcast, so what each port receives
is decided by the port rules alone. Nothing here has an IP address.
"""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from agent.network import netlink, portfilter
from tests.host.conftest import made_on_host
from tests.host.frames import received, run_in

pytestmark = pytest.mark.integration

Sent = tuple[str, str, int | None]  # (port, marker, in-band VLAN)
Seen = tuple[str, str, int | None]  # (receiver, marker, VLAN seen)
PORTS = {"a": 10, "b": 10, "c": 20, "d": None, "e": None}  # the uplink "u" has no rule


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


class Switch:
    """A bridge whose ports are veths; the far end of port X is `px` in namespace `nx`."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.bridge = f"avtpf{self.tag}"
        self.made: list[str] = []
        netlink.ensure_bridge(self.bridge)
        for port in [*PORTS, "u"]:
            near, far, ns = self.names(port)
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", near, "type", "veth", "peer", "name", far, "netns", ns)
            sh("sysctl", "-qw", f"net.ipv6.conf.{near}.disable_ipv6=1")  # host: no address
            self.made.append(near)
            sh("ip", "-n", ns, "link", "set", far, "up")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{far}.disable_ipv6=1")
            netlink.enslave(near, self.bridge)

    def names(self, port: str) -> tuple[str, str, str]:
        return f"avt{port}{self.tag}", f"p{port}", f"avtns{port}{self.tag}"

    def cleanup(self) -> None:
        for near in self.made:
            subprocess.run(["ip", "link", "del", near], capture_output=True)
        for port in [*PORTS, "u"]:
            subprocess.run(["ip", "netns", "del", self.names(port)[2]], capture_output=True)
        netlink.delete(self.bridge)

    def exchange(self, sends: list[Sent]) -> set[Seen]:
        """Send (port, marker, in-band VLAN) frames; returns (receiver, marker, VLAN seen)."""
        listeners = {}
        for port in [*PORTS, "u"]:
            _, far, ns = self.names(port)
            listeners[port] = run_in(ns, "listen", far, "60", wait=False)
        for port, marker, vlan in sends:
            _, far, ns = self.names(port)
            run_in(ns, "send", far, marker, *(["--vlan", str(vlan)] if vlan else []))
        time.sleep(0.5)  # the last frame's way through the bridge
        return {
            (port, frame["marker"], frame["vlan"])
            for port, listener in listeners.items()
            for frame in received(listener, stop_after=0)
            if "marker" in frame
        }


@pytest.fixture
def switch():
    yield from made_on_host(Switch)


def test_the_kernel_takes_every_rule(switch):
    near = switch.names("a")[0]
    for vlan in (1, 10, 4094, None):
        portfilter.apply(near, vlan)
        assert portfilter.current(near) == ("none" if vlan is None else str(vlan))


def test_ports_see_their_vlan_only_and_guest_tags_are_dropped(switch):
    for port, vlan in PORTS.items():
        portfilter.apply(switch.names(port)[0], vlan)
    received = switch.exchange(
        [
            ("a", "from-a", None),
            ("c", "from-c", None),
            ("d", "from-d", None),
            ("d", "from-d-tagged-10", 10),  # a guest tagging its own frames
            ("a", "from-a-tagged-10", 10),  # even with its port's own VLAN
            ("u", "outside-10", 10),
            ("u", "outside-20", 20),
            ("u", "outside-30", 30),
            ("u", "outside-untagged", None),
        ]
    )
    assert received == {
        ("b", "from-a", None),  # same VLAN, untagged at the port
        ("u", "from-a", 10),  # tagged on the uplink
        ("u", "from-c", 20),  # alone on VLAN 20: only the uplink
        ("e", "from-d", None),  # no VLAN: only untagged ports and the uplink, untagged
        ("u", "from-d", None),
        ("a", "outside-10", None),
        ("b", "outside-10", None),
        ("c", "outside-20", None),
        ("d", "outside-untagged", None),
        ("e", "outside-untagged", None),
    }


def test_a_port_moves_between_vlans(switch):
    for port, vlan in PORTS.items():
        portfilter.apply(switch.names(port)[0], vlan)
    portfilter.apply(switch.names("b")[0], 20)
    received = switch.exchange([("a", "from-a", None), ("c", "from-c", None)])
    assert received == {("u", "from-a", 10), ("b", "from-c", None), ("u", "from-c", 20)}
