"""Port VLAN rules: how long setting one takes, and what they cost the traffic.

1. `portfilter.apply` on a veth (load two BPF programs, replace two tc
   filters): median and p99 over many applies;
2. `hpvmnet -u` end to end on a vswitch with a running guest (the libvirt
   network definition saved, the guest's tap rule replaced): median;
3. traffic between two namespaces through a bridge, both ports on VLAN 10
   (tagged inside the bridge, untagged at the ports) against the same ports
   with no rules at all: TCP throughput and UDP request/response round trips;
4. `virsh start` of a guest on a vswitch with the libvirt qemu hook and
   without it (the hook is installed for this and removed again, unless it
   was installed already: then only "with" is measured);
5. the window during which a NIC plugged by another tool (`virsh
   attach-interface --alias ...`) has no port rule yet: from the call and
   from its return to the agent's rule on the new tap.
Needs root (make host). No addresses leave the machine (169.254/16 only).

    .venv/bin/python bench/vlan.py [--applies N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.network import netlink, portfilter
from tests.host.guestkit import AgentProcess, Host, free_port, hpvm

SENDER = """
import socket, sys, time
mode, address, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
if mode == "tcp":
    s = socket.create_connection((address, 5201))
    block, sent, end = b"x" * (1 << 20), 0, time.monotonic() + seconds
    while time.monotonic() < end:
        s.sendall(block); sent += len(block)
    print(sent * 8 / seconds / 1e9)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect((address, 5201))
    samples = []
    for _ in range(3000):
        t = time.perf_counter(); s.send(b"ping"); s.recv(64)
        samples.append(time.perf_counter() - t)
    samples.sort(); print(samples[len(samples) // 2] * 1e6)
"""

RECEIVER = """
import socket, sys
mode = sys.argv[1]
if mode == "tcp":
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("0.0.0.0", 5201)); l.listen(1); print("ready", flush=True)
    c, _ = l.accept()
    while c.recv(1 << 20):
        pass
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 5201))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(64); s.sendto(data, peer)
"""


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def apply_latency(applies: int) -> list[float]:
    tag = uuid.uuid4().hex[:5]
    near = f"avbv{tag}"
    sh("ip", "link", "add", near, "type", "veth", "peer", "name", f"avbp{tag}")
    try:
        samples = []
        for i in range(applies):
            start = time.perf_counter()
            portfilter.apply(near, 10 + i % 2)
            samples.append(time.perf_counter() - start)
        return samples
    finally:
        sh("ip", "link", "del", near)


class Pair:
    """Two namespaces on one bridge, 169.254.200.1 and .2."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.bridge = f"avbb{self.tag}"
        netlink.ensure_bridge(self.bridge)
        self.ports = []
        for i in (1, 2):
            ns, near = f"avbn{i}{self.tag}", f"avb{i}{self.tag}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", near, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("sysctl", "-qw", f"net.ipv6.conf.{near}.disable_ipv6=1")
            sh("ip", "-n", ns, "addr", "add", f"169.254.200.{i}/16", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            netlink.enslave(near, self.bridge)
            self.ports.append((ns, near))

    def measure(self, mode: str, seconds: float = 3.0) -> float:
        (ns1, _), (ns2, _) = self.ports
        receiver = subprocess.Popen(
            ["ip", "netns", "exec", ns2, sys.executable, "-c", RECEIVER, mode],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert receiver.stdout.readline().strip() == "ready"
        try:
            out = sh(
                "ip", "netns", "exec", ns1, sys.executable, "-c", SENDER,
                mode, "169.254.200.2", str(seconds),
            )  # fmt: skip
            return float(out)
        finally:
            receiver.kill()
            receiver.wait()

    def rules(self, on: bool) -> None:
        for _, near in self.ports:
            if on:
                portfilter.apply(near, 10)
            else:
                subprocess.run(["tc", "qdisc", "del", "dev", near, "clsact"], capture_output=True)

    def cleanup(self) -> None:
        for ns, near in self.ports:
            subprocess.run(["ip", "link", "del", near], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        netlink.delete(self.bridge)


def hpvmnet_u(rounds: int) -> list[float]:
    host = Host()
    vswitch = f"avbs{uuid.uuid4().hex[:5]}"
    try:
        hpvm("hpvmnet", "-c", "-S", vswitch)
        hpvm("hpvmnet", "-b", "-S", vswitch)
        host.boot_guest(f"network:lan::vswitch:{vswitch}:portid:1", memory="128M")
        samples = []
        for i in range(rounds):
            start = time.perf_counter()
            hpvm("hpvmnet", "-S", vswitch, "-u", f"portid:1:vlanid:{10 + i % 2}")
            samples.append(time.perf_counter() - start)
        return samples
    finally:
        host.cleanup()
        hpvm("hpvmnet", "-d", "-F", "-S", vswitch, check=False)


HOOK = Path("/etc/libvirt/hooks/qemu.d/avio-kvm")
INSTALLER = Path(__file__).resolve().parents[1] / "scripts/install-libvirt-hook.sh"


def start_times(rounds: int, agent: AgentProcess | None = None) -> dict[str, list[float]]:
    """`virsh start` wall times of a guest on a vswitch: with the hook answered by the
    agent on the unit's socket (`agent`, else one started here), with the hook alone
    (that agent stopped), and without the hook."""
    from agent.daemon.hook_service import DEFAULT_SOCKET

    host = Host()
    vswitch = f"avbs{uuid.uuid4().hex[:5]}"
    installed_before = HOOK.exists()
    if agent is None:
        guests = host.tmp / "guests"
        guests.mkdir()
        agent = AgentProcess(guests, host.tmp / "agent.log", free_port())
        agent.start("--hook-socket", str(DEFAULT_SOCKET), "--no-startup-reconcile")
    try:
        hpvm("hpvmnet", "-c", "-S", vswitch)
        hpvm("hpvmnet", "-b", "-S", vswitch)
        hpvm("hpvmnet", "-S", vswitch, "-u", "portid:1:vlanid:10")
        name = host.define_guest(f"network:lan::vswitch:{vswitch}:portid:1", memory="128M")
        if not installed_before:
            sh(str(INSTALLER), str(Path(sys.executable).parent / "avio-libvirt-hook"))
        found: dict[str, list[float]] = {}
        for mode in ("with the agent answering", "with the hook alone", "without"):
            if mode == "with the hook alone":
                agent.stop()
            if mode == "without":
                if installed_before:
                    break  # not ours to remove
                sh(str(INSTALLER), "--remove")
            for _ in range(rounds):
                start = time.perf_counter()
                sh("virsh", "start", name)
                found.setdefault(mode, []).append(time.perf_counter() - start)
                sh("virsh", "destroy", name)
        return found
    finally:
        agent.stop()
        if not installed_before:
            sh(str(INSTALLER), "--remove")
        host.cleanup()
        hpvm("hpvmnet", "-d", "-F", "-S", vswitch, check=False)


def tap_names(name: str) -> set[str]:
    out = sh("virsh", "-q", "domiflist", name)
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def foreign_plug_window(rounds: int) -> tuple[list[float], list[float]]:
    """Seconds without a rule for NICs someone else plugs: (from the call, from its return)."""
    host = Host()
    vswitch = f"avbs{uuid.uuid4().hex[:5]}"
    guests = host.tmp / "guests"
    guests.mkdir()
    agent = AgentProcess(guests, host.tmp / "agent.log", free_port())
    try:
        hpvm("hpvmnet", "-c", "-S", vswitch)
        hpvm("hpvmnet", "-b", "-S", vswitch)
        name, _ = host.boot_guest(f"network:lan::vswitch:{vswitch}:portid:1", memory="128M")
        agent.start()
        from_call, from_return = [], []
        for i in range(rounds):
            before = tap_names(name)
            start = time.perf_counter()
            sh(
                "virsh",
                "attach-interface",
                name,
                "bridge",
                vswitch,
                "--model",
                "e1000",
                "--live",
                "--alias",
                f"ua-eth{i + 1}",
            )
            returned = time.perf_counter()
            (tap,) = tap_names(name) - before
            while portfilter.current(tap) is None:
                time.sleep(0.0005)
            ruled = time.perf_counter()
            from_call.append(ruled - start)
            from_return.append(ruled - returned)
        return from_call, from_return
    finally:
        agent.kill()
        host.cleanup()
        hpvm("hpvmnet", "-d", "-F", "-S", vswitch, check=False)


def ms(samples: list[float], q: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(q * len(samples)))] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applies", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    samples = apply_latency(args.applies)
    print(
        f"portfilter.apply ({args.applies}x): median {ms(samples, 0.5):.2f} ms, "
        f"p99 {ms(samples, 0.99):.2f} ms"
    )
    samples = hpvmnet_u(10)
    print(f"hpvmnet -u with a running guest (10x): median {ms(samples, 0.5):.0f} ms")

    pair = Pair()
    try:
        results: dict[tuple[str, bool], list[float]] = {}
        for _ in range(args.rounds):
            for on in (False, True):
                pair.rules(on)
                for mode in ("tcp", "udp"):
                    results.setdefault((mode, on), []).append(pair.measure(mode))
    finally:
        pair.cleanup()
    tcp = {on: statistics.median(results[("tcp", on)]) for on in (False, True)}
    rtt = {on: statistics.median(results[("udp", on)]) for on in (False, True)}
    print(
        f"TCP namespace->namespace over the bridge: {tcp[False]:.2f} Gbit/s without rules, "
        f"{tcp[True]:.2f} Gbit/s on VLAN 10 ({tcp[True] / tcp[False]:.2f}x)"
    )
    print(
        f"UDP round trip, median of 3000: {rtt[False]:.1f} us without rules, "
        f"{rtt[True]:.1f} us on VLAN 10 (+{rtt[True] - rtt[False]:.1f} us)"
    )
    starts = start_times(5)
    print(
        "virsh start of a guest on a vswitch (5x): "
        + ", ".join(f"{mode} {ms(t, 0.5):.0f} ms" for mode, t in starts.items())
    )
    from_call, from_return = foreign_plug_window(8)
    print(
        "NIC plugged by virsh attach-interface, no rule until the agent's (8x): "
        f"median {ms(from_call, 0.5):.0f} ms from the call, {ms(from_return, 0.5):.0f} ms "
        f"from its return (max {ms(from_return, 1.0):.0f} ms)"
    )


if __name__ == "__main__":
    main()
