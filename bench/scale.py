"""Scale: N running guests with M loop-backed disks each and one NIC on an hpvmnet vswitch.

The guests run no OS (the firmware finds nothing to boot and idles), 64 MB
each; their NICs sit on one vswitch, ports alternating between VLAN 10 and 20.
With all of them running and avio-agent watching, it prints, with the core
count:
  1. uevent -> blockResize returned, p50/p99/max over R resizes spread over all disks;
  2. a burst: every disk resized at once, time until every guest disk has its
     final size, and the number of blockResize calls;
  3. agent restart after SIGKILL (meanwhile every device grew and every port
     rule was lost) -> every guest reconciled: seconds;
  4. hpvmstatus (all), hpvmstatus -P one, hpvmstatus -M, hpvmnet, next to
     virsh list --all and virsh dumpxml of one guest;
  5. the agent's RSS and CPU while idle, and its CPU during the burst;
  6. per-uevent cost with 1,000 config files in the guests directory vs 1;
  7. virsh start of one more guest with the libvirt qemu hook (answered by the
     agent, and alone) and without it.
N is scaled down (and it says so) when the machine's available memory is short.
Everything it makes is removed at the end. Needs root and libvirtd (make host).

    .venv/bin/python bench/scale.py [--guests 100] [--disks 10] [--resizes 500]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import libvirt
from resize import cpu_seconds, forward_latencies, percentile, rss_mb, set_capacity

from agent.daemon.hook_service import DEFAULT_SOCKET
from agent.network import portfilter
from tests.host.guestkit import AgentProcess, Host, free_port, hpvm

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
LOOP_CTL_REMOVE = 0x4C81
GUEST_MEMORY_MB = 64
PER_GUEST_MB = GUEST_MEMORY_MB + 120  # QEMU's own share under TCG, measured here


def available_mb() -> int:
    match = re.search(r"MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    return int(match.group(1)) // 1024 if match else 0


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def timed(*argv: str, rounds: int = 3, stdin: str | None = None) -> float:
    """Median wall time of a command (given `stdin`), in ms."""
    data = stdin.encode() if stdin is not None else None
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(argv, input=data, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return sorted(samples)[len(samples) // 2] * 1e3


AIO_PER_DISK = 256  # QEMU native AIO; the default 65536 ran out at ~650 disks (measured)
AIO_MAX_NR = Path("/proc/sys/fs/aio-max-nr")


class AioLimit:
    """fs.aio-max-nr raised for the run when N x M disks need more (restored after).

    Past the limit QEMU fails at start: "Unable to use native AIO: failed to
    create linux AIO context: Resource temporarily unavailable".
    """

    def __init__(self, disks: int) -> None:
        self.before = int(AIO_MAX_NR.read_text())
        self.needed = (disks + 64) * AIO_PER_DISK
        if self.needed > self.before:
            AIO_MAX_NR.write_text(str(self.needed))
            print(f"  fs.aio-max-nr raised from {self.before} to {self.needed} for the run")

    def restore(self) -> None:
        if self.needed > self.before:
            AIO_MAX_NR.write_text(str(self.before))


class Fleet:
    """The guests, their loop devices and the vswitch; all removed by cleanup()."""

    def __init__(self) -> None:
        self.host = Host()
        self.loop_nodes_before = set(Path("/sys/block").glob("loop*"))
        self.vswitch = f"avsc{uuid.uuid4().hex[:5]}"
        self.names: list[str] = []
        self.disks: list[tuple[str, str, Path, str]] = []  # guest, target dev, image, loop
        self.size: dict[str, int] = {}

    def build(self, guests: int, disks: int) -> None:
        """Define and start the guests (cleanup() removes what was made, even half-way)."""
        hpvm("hpvmnet", "-c", "-S", self.vswitch)
        hpvm("hpvmnet", "-b", "-S", self.vswitch)
        for g in range(guests):
            port = g + 1
            hpvm("hpvmnet", "-S", self.vswitch, "-u", f"portid:{port}:vlanid:{10 + 10 * (g % 2)}")
            name = f"avsc-{uuid.uuid4().hex[:8]}"
            self.host.guests.append(name)
            argv = ["-P", name, "-O", "unknown", "-r", f"{GUEST_MEMORY_MB}M", "-B", "manual"]
            for t in range(disks):
                dev = self.host.loop(8)
                image = self.host.tmp / f"disk{len(self.host.loops) - 1}.img"
                argv += ["-a", f"disk:avio_stor:0,0,{t}:disk:{dev}"]
                self.disks.append((name, f"sd{letters(t)}", image, dev))
                self.size[dev] = 8 * MB
            argv += ["-a", f"network:lan::vswitch:{self.vswitch}:portid:{port}"]
            hpvm("hpvmcreate", *argv)
            hpvm("hpvmstart", "-P", name)
            self.names.append(name)

    def grow(self, dev: str, image: Path, by: int = MB) -> None:
        self.size[dev] += by
        set_capacity(image, dev, self.size[dev])

    def correct(self, conn: libvirt.virConnect) -> bool:
        """Does every guest disk have its device's size? (one block-stats call for all)"""
        stats = conn.getAllDomainStats(
            libvirt.VIR_DOMAIN_STATS_BLOCK, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
        )
        seen = {}
        for dom, values in stats:
            for i in range(values.get("block.count", 0)):
                seen[(dom.name(), values[f"block.{i}.name"])] = values.get(f"block.{i}.capacity")
        return all(seen.get((g, target)) == self.size[dev] for g, target, _, dev in self.disks)

    def forwarded(self, agent: AgentProcess, since: int, timeout: float) -> float | None:
        """Seconds until the agent's log shows every disk grown to its device's size
        (the agent logs each blockResize once it returned); None after `timeout`."""
        start = time.monotonic()
        final = {(g, target): self.size[dev] for g, target, _, dev in self.disks}
        pattern = re.compile(r"resize guest=(\S+) disk=(\S+) \S+: \d+ -> (\d+) bytes")
        done: set[tuple[str, str]] = set()
        while time.monotonic() - start < timeout:
            for guest, target, size in pattern.findall(agent.text()[since:]):
                if final.get((guest, target)) == int(size):
                    done.add((guest, target))
            if len(done) == len(final):
                return time.monotonic() - start
            time.sleep(0.05)
        return None

    def taps(self) -> list[str]:
        found = []
        for name in self.names:
            out = sh("virsh", "-q", "domiflist", name)
            found += [line.split()[0] for line in out.splitlines() if line.strip()]
        return found

    def cleanup(self) -> None:
        for name in self.host.guests:
            result = hpvm("hpvmremove", "-P", name, "-F", check=False)
            if result.returncode != 0:
                print(f"  cleanup: hpvmremove -P {name}: {result.stderr.strip()}; virsh used")
                subprocess.run(["virsh", "destroy", name], capture_output=True)
                subprocess.run(["virsh", "undefine", "--nvram", name], capture_output=True)
        self.host.guests.clear()
        self.host.cleanup()
        hpvm("hpvmnet", "-d", "-F", "-S", self.vswitch, check=False)
        self.remove_loop_nodes()

    def remove_loop_nodes(self) -> None:
        """The /dev/loopN nodes losetup made for the run go too (LOOP_CTL_REMOVE)."""
        fd = os.open("/dev/loop-control", os.O_RDWR)
        try:
            for node in set(Path("/sys/block").glob("loop*")) - self.loop_nodes_before:
                try:
                    fcntl.ioctl(fd, LOOP_CTL_REMOVE, int(node.name.removeprefix("loop")))
                except (OSError, ValueError):
                    pass  # bound (not ours to take) or not a plain loopN
        finally:
            os.close(fd)


def letters(index: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa: the guest's sdX names in target order."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("a") + rest) + name
    return name


def resize_latency(fleet: Fleet, agent: AgentProcess, count: int) -> list[float]:
    since = len(agent.text())
    for n in range(count):
        _, _, image, dev = fleet.disks[(n * 7919) % len(fleet.disks)]
        fleet.grow(dev, image)
        deadline = time.monotonic() + 30
        while len(forward_latencies(agent, since)) < n + 1:
            if time.monotonic() > deadline:
                tail = "\n".join(agent.text().splitlines()[-10:])
                raise TimeoutError(f"resize {n + 1} ({dev}) was not forwarded in 30 s:\n{tail}")
            time.sleep(0.001)
    return forward_latencies(agent, since)


def config_file_costs(
    fleet: Fleet, agent: AgentProcess, conn: libvirt.virConnect, guests_dir: Path, count: int
) -> None:
    """Resize latency with 1 config file in the agent's directory, then with `count`
    (each defines a guest of its own, which the agent does first)."""
    config = "-O unknown\n-r 64M\n-B manual\n"
    (guests_dir / "avsc-cfg0000.conf").write_text(config)
    time.sleep(2)
    report("with 1 config file", resize_latency(fleet, agent, 50))
    start = time.monotonic()
    for i in range(1, count):
        (guests_dir / f"avsc-cfg{i:04d}.conf").write_text(config)
    deadline = time.monotonic() + 900
    while sum(d.name().startswith("avsc-cfg") for d in conn.listAllDomains()) < count:
        assert time.monotonic() < deadline, "the agent did not define the config files' guests"
        time.sleep(0.5)
    print(
        f"  the agent defined {count - 1} guests from new config files in "
        f"{time.monotonic() - start:.1f} s"
    )
    report(f"with {count} config files", resize_latency(fleet, agent, 50))


def hook_times(name: str, rounds: int = 5) -> dict[str, tuple[float, float]]:
    """Median wall time (ms) of the hook's `prepare` and `started` for guest `name`, run
    as libvirt runs it (the domain XML on stdin): the full hook, and the client that the
    installed hook runs first, answered by the agent."""
    xml = sh("virsh", "dumpxml", name)
    hook = str(BIN / "avio-libvirt-hook")
    client = (str(BIN / "python"), "-I", "-S", str(ROOT / "agent/hook_client.py"), hook)
    found = {}
    for label, argv in (("alone", (hook,)), ("answered by the agent", client)):
        found[label] = tuple(
            timed(*argv, name, operation, "begin", "-", rounds=rounds, stdin=xml)
            for operation in ("prepare", "started")
        )
    return found


def report(label: str, lat: list[float]) -> None:
    print(
        f"  {label}: p50 {percentile(lat, 0.5):.1f} ms, p99 {percentile(lat, 0.99):.1f} ms, "
        f"max {max(lat):.1f} ms ({len(lat)} resizes)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, default=100)
    parser.add_argument("--disks", type=int, default=10)
    parser.add_argument("--resizes", type=int, default=500)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--configs", type=int, default=1000)
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the run with 1 guest first"
    )
    args = parser.parse_args()

    guests = args.guests
    fits = int(available_mb() * 0.8) // PER_GUEST_MB
    if fits < guests:
        print(f"scaled down: {guests} guests need ~{guests * PER_GUEST_MB} MB, {fits} fit")
        guests = max(1, fits)
    if guests > 1 and not args.no_baseline:
        # The same figures for 1 guest, in the same run (the config-file phase apart).
        measure(1, args.disks, min(args.resizes, 50), args.idle, configs=0)
    measure(guests, args.disks, args.resizes, args.idle, args.configs)


def measure(guests: int, disks: int, resizes: int, idle: float, configs: int) -> None:
    """Build the fleet, measure, print, remove it all."""
    print(f"{os.cpu_count()} cores; {guests} guests x {disks} disks")
    aio = AioLimit(guests * disks)
    fleet = Fleet()
    guests_dir = fleet.host.tmp / "guests"
    guests_dir.mkdir()
    agent = AgentProcess(guests_dir, fleet.host.tmp / "agent.log", free_port())
    conn = libvirt.open("qemu:///system")
    try:
        start = time.monotonic()
        fleet.build(guests, disks)
        print(f"  set up (create + start) in {time.monotonic() - start:.0f} s")
        agent.start("--hook-socket", str(DEFAULT_SOCKET), timeout=300)
        pid = agent.process.pid

        report("uevent -> blockResize returned", resize_latency(fleet, agent, resizes))

        calls0 = agent.metric('avio_libvirt_calls_total{call="blockResize"}')
        cpu0 = cpu_seconds(pid)
        since = len(agent.text())
        start = time.monotonic()
        for _, _, image, dev in fleet.disks:
            fleet.grow(dev, image)
        grown = time.monotonic() - start
        settle = fleet.forwarded(agent, since, timeout=300)
        calls = agent.metric('avio_libvirt_calls_total{call="blockResize"}') - calls0
        settled = "not settled in 300 s" if settle is None else f"settled in {grown + settle:.2f} s"
        print(
            f"  burst of {len(fleet.disks)} resizes (made in {grown:.2f} s): {settled}, "
            f"{calls:.0f} blockResize calls, final sizes all correct: {fleet.correct(conn)}; "
            f"agent CPU {cpu_seconds(pid) - cpu0:.2f} s, RSS {rss_mb(pid):.1f} MB"
        )

        # 3. restart after SIGKILL: every device grew and every port rule was lost meanwhile
        os.kill(pid, signal.SIGKILL)
        agent.process.wait()
        for _, _, image, dev in fleet.disks:
            fleet.grow(dev, image)
        taps = fleet.taps()
        for tap in taps:
            subprocess.run(["tc", "qdisc", "del", "dev", tap, "clsact"], capture_output=True)
        start = time.monotonic()
        # READY=1: the first reconciliation's work is done
        agent.start("--hook-socket", str(DEFAULT_SOCKET), timeout=300)
        ready = time.monotonic() - start
        rules = all(portfilter.current(tap) is not None for tap in taps)
        print(
            f"  restart after SIGKILL -> every guest reconciled (ready) in {ready:.2f} s; "
            f"checked after: sizes correct {fleet.correct(conn)}, port rules all there {rules}"
        )
        pid = agent.process.pid

        one = fleet.names[0]
        print(
            "  commands (median of 3): "
            f"hpvmstatus {timed(str(BIN / 'hpvmstatus')):.0f} ms, "
            f"hpvmstatus -P {timed(str(BIN / 'hpvmstatus'), '-P', one):.0f} ms, "
            f"hpvmstatus -M {timed(str(BIN / 'hpvmstatus'), '-M'):.0f} ms, "
            f"hpvmnet {timed(str(BIN / 'hpvmnet')):.0f} ms; "
            f"virsh list --all {timed('virsh', 'list', '--all'):.0f} ms, "
            f"virsh dumpxml {timed('virsh', 'dumpxml', one):.0f} ms"
        )

        time.sleep(5)  # udevd's tail of the burst
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(idle)
        print(
            f"  agent idle {time.monotonic() - t0:.0f} s: CPU {cpu_seconds(pid) - cpu0:.2f} s, "
            f"RSS {rss_mb(pid):.1f} MB"
        )

        if configs:
            config_file_costs(fleet, agent, conn, guests_dir, configs)

        for label, (prepare, started) in hook_times(one).items():
            print(
                f"  the libvirt hook {label}, for a running guest (median of 5): prepare "
                f"{prepare:.0f} ms, started {started:.0f} ms ({len(conn.listAllDomains())} "
                "domains defined)"
            )

        from vlan import start_times

        starts = start_times(5, agent)  # stops the agent
        print(
            f"  virsh start of one more guest on a vswitch (median of 5, {guests} guests "
            "running): " + ", ".join(f"{m} {sorted(t)[2] * 1e3:.0f} ms" for m, t in starts.items())
        )
    finally:
        agent.stop()
        conn.close()  # the hook's installation restarted libvirtd: a new connection
        conn = libvirt.open("qemu:///system")
        for path in guests_dir.glob("avsc-cfg*.conf"):
            path.unlink()
            try:  # no storage, never started: undefined directly (hpvmremove takes ~1 s)
                conn.lookupByName(path.stem).undefine()
            except libvirt.libvirtError:
                pass
        conn.close()
        fleet.cleanup()
        aio.restore()


if __name__ == "__main__":
    main()
