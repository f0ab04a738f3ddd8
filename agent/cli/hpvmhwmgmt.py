"""`hpvmhwmgmt -p dio`: the DIO pool, the host PCI functions guests may be given (vfio)."""

from __future__ import annotations

import argparse
import sys

from agent.cli.common import EXIT_OK, connect, entry_point
from agent.cli.options import add_connect
from agent.errors import HostError
from translators.devices.dio import parse_function
from translators.diopool import check_label, format_table
from translators.errors import HpvmError
from translators.options import OptionParser

PROG = "hpvmhwmgmt"

DESCRIPTION = """\
NAME
  hpvmhwmgmt - manage the DIO pool: host PCI functions given to guests whole (vfio)

SYNOPSIS
  hpvmhwmgmt -p dio -a DDDD:BB:DD.F [-L label] [-n N]
  hpvmhwmgmt -p dio -d DDDD:BB:DD.F|label
  hpvmhwmgmt -p dio -l

DESCRIPTION
  -a checks a function (it exists; the host has an IOMMU; its IOMMU group is
  viable: every other member is pooled, unbound or a PCI bridge; the host does
  not use it: no addresses or routes, no bridge or bond, not the management NIC,
  no disk the host uses), binds it to vfio-pci (driver_override) and records it.
  With -n N, the function is an SR-IOV physical function: N VFs are made and
  pooled (the PF stays with its host driver). -d gives a function back to its host
  driver (refused while a guest has it). -l lists the pool. Guests are given
  pooled functions with network:dio:bus,slot,mac:hwpath:<address or label>.
  The pool is kept in $AVIO_STATE_DIR/dio-pool.json (/var/lib/libvirt/avio-kvm)."""


def parser() -> argparse.ArgumentParser:
    p = OptionParser(
        prog=PROG, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-p", dest="pool", required=True, metavar="dio", help="the pool: dio")
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("-a", dest="add", metavar="ADDRESS", help="add a PCI function")
    action.add_argument(
        "-d", dest="delete", metavar="ADDRESS|LABEL", help="give a function back to the host"
    )
    action.add_argument("-l", dest="list", action="store_true", help="list the pool")
    p.add_argument("-L", dest="label", help="with -a: a label for the function")
    p.add_argument(
        "-n", dest="vfs", metavar="N", help="with -a: make N SR-IOV VFs of it and pool them"
    )
    add_connect(p)
    return p


def _address(text: str) -> str:
    address = parse_function(text)
    if address is None:
        raise HpvmError(f"bad PCI address '{text}' (DDDD:BB:DD.F)")
    return address


def _vfs(text: str | None) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 3 or int(text) < 1:
        raise HpvmError(f"bad VF count '{text}' (1-999)")
    return int(text)


def _guests(uri: str | None) -> dict[str, str]:
    """PCI address -> the guest libvirt has it in."""
    from agent.devices.dio import users
    from agent.guests.inventory import HostView

    return users(e.guest for e in HostView(connect(uri)).entries)


def main_(argv: list[str]) -> int:
    options = parser().parse_args(argv)
    if options.pool.lower() != "dio":
        raise HpvmError(f"unknown pool '{options.pool}' (only 'dio')")
    if (options.label or options.vfs) and not options.add:
        raise HpvmError("-L and -n go with -a")
    vfs = _vfs(options.vfs)
    label = check_label(options.label) if options.label else None
    from agent.devices import dio, pci

    if options.list:
        pool = dio.load()
        drivers = {m.address: pci.Function(m.address).driver for m in pool.members}
        sys.stdout.write(format_table(pool, drivers, _guests(options.connect)))
        return EXIT_OK
    if options.add:
        address = _address(options.add)
        with dio.locked() as pool:
            if vfs is None:
                dio.add(pool, address, label)
                print(f"{PROG}: {address} added to the DIO pool (vfio-pci)")
                return EXIT_OK
            if label and vfs > 1:
                raise HpvmError("-L names one function: with -n, give no label")
            for vf in pci.make_vfs(pci.Function(address), vfs):
                dio.add(pool, vf.address, label)
                print(f"{PROG}: VF {vf.address} of {address} added to the DIO pool (vfio-pci)")
        return EXIT_OK
    name = options.delete
    if parse_function(name) is None:
        check_label(name)
    with dio.locked() as pool:
        member = pool.find(name)
        if member is None:
            raise HpvmError(f"{name} is not in the DIO pool")
        guest = _guests(options.connect).get(member.address)
        if guest is not None:
            raise HostError(f"{member.address} is given to guest '{guest}': remove it there first")
        dio.release(pool, member)
    print(f"{PROG}: {member.address} given back to the host ({member.host_driver or 'no driver'})")
    return EXIT_OK


COMMAND = main_

main = entry_point(PROG, COMMAND)
