"""libvirt's qemu hook: vswitch bridges and port rules for guests that libvirt starts itself.

libvirt runs `/etc/libvirt/hooks/qemu.d/avio-kvm GUEST OPERATION SUBOPERATION -`
with the domain XML on stdin (see scripts/libvirt-qemu-hook). Two operations
matter, and both happen for every start, by `hpvmstart`, `virsh start` or
autostart at boot:

- `prepare`: before QEMU opens anything. The guest's storage is checked again
  (`agent.storage.startcheck`: a renumbered `/dev/sdX`, a device the host mounted
  meanwhile, storage another guest uses), then an hpvmnet vswitch whose bridge
  is gone (the host rebooted) is made again, with its uplink.
- `started`: QEMU runs, its vCPUs do not yet. Each NIC's tap gets its port's
  VLAN rule, so the guest never sends a frame through an unfiltered port.

A failure exits 1 with one line on stderr: libvirt then does not start the
guest, and shows that line. The installed hook runs this only when the agent,
asked first by `agent/hook_client.py`, did not answer "ok" (see
`agent/daemon/hook_service.py`, which runs these same functions).

A hook must not call libvirt (it would deadlock), so the vswitch definitions
and the other guests are read from the files libvirt keeps them in.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lxml import etree

# Only what both operations need: `started` runs at every start of a guest on a
# vswitch, so what `prepare` alone needs is imported there.
from translators.vswitch import VSwitch, port_rules, read_network

NETWORKS_DIR = Path("/etc/libvirt/qemu/networks")
PROG = "avio-libvirt-hook"

if TYPE_CHECKING:
    from agent.devices.pci import Function
    from translators.model import Guest

ReadGuest = Callable[[str], "Guest | None"]
Bind = Callable[["Function"], None]


def vswitch_definitions(directory: Path) -> dict[str, VSwitch]:
    """The hpvmnet vswitches among libvirt's persistent network definitions.

    A file that does not parse is libvirt's problem, not a reason to stop guests.
    """
    found = {}
    for path in sorted(directory.glob("*.xml")):
        try:
            v = read_network(path.read_text())
        except (OSError, etree.XMLSyntaxError):
            continue
        if v is not None:
            found[v.name] = v
    return found


def networks_dir() -> Path:
    """Where the vswitch definitions are read from ($AVIO_LIBVIRT_NETWORKS for tests)."""
    return Path(os.environ.get("AVIO_LIBVIRT_NETWORKS", NETWORKS_DIR))


def domain_dirs() -> list[Path]:
    """Where the other guests are read from ($AVIO_LIBVIRT_DOMAINS: dirs separated by ':')."""
    value = os.environ.get("AVIO_LIBVIRT_DOMAINS")
    if value is None:
        from agent.storage.startcheck import DOMAIN_DIRS

        return list(DOMAIN_DIRS)
    return [Path(d) for d in value.split(":") if d]


def check_storage(domain_xml: str, read: ReadGuest | None = None, bind: Bind | None = None) -> None:
    """An hpvm guest's backing stores may reach it now (others' domains are left alone).

    `read` reads another guest's file (the agent's keeps what it read); `bind` puts a DIO
    function back on vfio-pci (default: through sysfs).
    """
    from translators.devices.scsi_passthrough import ScsiPassthroughDevice
    from translators.readback import is_hpvm_guest, read_domain

    try:
        if not is_hpvm_guest(domain_xml):
            return
    except etree.XMLSyntaxError:
        return  # libvirt always sends the domain; nothing to check without one
    from agent.storage.startcheck import check_storage_now, claims_from_files

    guest = read_domain(domain_xml)
    if read is None:
        others = claims_from_files(domain_dirs(), exclude=guest.name)
    else:
        others = claims_from_files(domain_dirs(), exclude=guest.name, read=read)
    check_storage_now(guest, others)
    if guest.of_kind(ScsiPassthroughDevice):
        from agent.storage.startcheck import check_attached_now

        if check_attached_now(guest, others):
            raise RuntimeError(
                "an attached SCSI device is at another address now: start the guest with "
                "hpvmstart, which follows it"
            )
    from agent.devices import dio

    dio.prepare(guest.devices, binder=bind)  # DIO functions: pooled, present, on vfio-pci


def prepare(
    domain_xml: str,
    vswitches: dict[str, VSwitch],
    read: ReadGuest | None = None,
    bind: Bind | None = None,
) -> None:
    """The guest's storage is safe to hand it; every vswitch it uses has its bridge (and uplink)."""
    from translators.migration import domain_not_runnable
    from translators.readback import read_domain

    reason = domain_not_runnable(domain_xml)
    if reason:  # migrated away by hpvmmigrate without -D: virsh start must not run it twice
        raise RuntimeError(f"not runnable here: {reason}")
    check_storage(domain_xml, read, bind)
    for name in sorted({nic.vswitch for nic in read_domain(domain_xml).networks}):
        v = vswitches.get(name)
        if v is None or Path(f"/sys/class/net/{v.name}").exists():
            continue
        from agent.network import netlink  # pyroute2 (80 ms) only when a bridge is missing

        netlink.ensure_bridge(v.name)
        if v.uplink and netlink.exists(v.uplink) and netlink.master_of(v.uplink) is None:
            netlink.enslave(v.uplink, v.name)


def started(domain_xml: str, vswitches: dict[str, VSwitch]) -> None:
    """Every NIC's tap enforces its port's VLAN rule."""
    rules = port_rules(domain_xml, vswitches)
    if rules:
        from agent.network import portfilter  # only for guests on vswitches

        for rule in rules:
            portfilter.apply(rule.tap, rule.vlan)


OPERATIONS = {"prepare": prepare, "started": started}


def main() -> None:
    operation = sys.argv[2] if len(sys.argv) > 2 else ""
    handler = OPERATIONS.get(operation)
    if handler is None:
        sys.exit(0)
    try:
        vswitches = vswitch_definitions(networks_dir())
        if vswitches or handler is prepare:
            handler(sys.stdin.read(), vswitches)
    except Exception as err:  # one line for libvirt's error message, never a traceback
        print(f"{PROG}: guest {sys.argv[1]}: {err}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
