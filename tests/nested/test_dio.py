"""PCI pass-through (HPVM DIO) with vfio, in L1 with its e1000e (alone in its IOMMU group).

hpvmhwmgmt pools the e1000e (vfio-pci); a guest given it as a DIO NIC sees an Intel
e1000e with that MAC in its own report and brings its link up; the unplug waits for
the guest and the function stays on vfio-pci in the pool; hot-plug again; the agent
unplugs a function that leaves the host and plugs it back when it returns; after
hpvmstop the function is still pooled on vfio-pci, after `hpvmhwmgmt -d` back on
e1000e. Refusals: not in the pool, given to another guest, a group that is not
viable, the management NIC, the root disk's controller. Times are printed.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from lxml import etree

from tests.host.guestkit import ConsoleLog, Host, poll_for
from tests.nested.conftest import hpvm, sh, start

pytestmark = pytest.mark.nested

PCI = Path("/sys/bus/pci/devices")
A, B = "avd-a", "avd-b"
LABEL = "avdnic"


def driver(address: str) -> str | None:
    link = PCI / address / "driver"
    return link.resolve().name if link.exists() else None


def function_of(driver_name: str) -> str:
    (found,) = [d.name for d in sorted(PCI.iterdir()) if driver(d.name) == driver_name]
    return found


def report(message: str, capsys) -> None:
    with capsys.disabled():
        print(f"\n[dio] {message}")


@pytest.fixture(scope="module")
def nic():
    """The e1000e's PCI address and MAC; given back to e1000e whatever happens."""
    (address,) = [
        d.name
        for d in sorted(PCI.iterdir())
        if (d / "vendor").read_text().strip() == "0x8086"
        and (d / "device").read_text().strip() == "0x10d3"
    ]
    assert driver(address) == "e1000e", "L1's e1000e must start on its host driver"
    (net,) = list((PCI / address / "net").iterdir())
    mac = (net / "address").read_text().strip()
    host = Host()
    host.guests += [A, B]
    try:
        yield {"address": address, "mac": mac, "host": host}
    finally:
        host.cleanup()
        if not (PCI / address).exists():  # removed by a failed test: back first
            Path("/sys/bus/pci/rescan").write_text("1")
        hpvm("hpvmhwmgmt", "-p", "dio", "-d", address, check=False)
        if driver(address) != "e1000e":  # the pool's own record was lost: by hand
            (PCI / address / "driver_override").write_text("\n")
            if driver(address):
                (PCI / address / "driver" / "unbind").write_text(address)
            Path("/sys/bus/pci/drivers_probe").write_text(address)


def refused(command: str, *args: str, code: int, says: str) -> None:
    result = hpvm(command, *args, check=False)
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stderr.count("\n") == 1 and says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_refused_into_the_pool(nic):
    """The management NIC (virtio-net, with the ssh address), the root disk's controller,
    a function in a group that is not viable (ICH9's SMBus shares group with AHCI/LPC),
    a function that does not exist."""
    mgmt = next(
        d.name
        for d in sorted(PCI.iterdir())
        if driver(d.name) == "virtio-pci" and (d / "class").read_text().startswith("0x02")
    )
    refused("hpvmhwmgmt", "-p", "dio", "-a", mgmt, code=1, says="used by the host")
    root = next(
        b.resolve().parent.parent.parent.name
        for b in Path("/sys/block").iterdir()
        if b.name == "vda"
    )
    refused("hpvmhwmgmt", "-p", "dio", "-a", root, code=1, says="root file system")
    smbus = function_of("i801_smbus")
    refused("hpvmhwmgmt", "-p", "dio", "-a", smbus, code=1, says="IOMMU group")
    refused("hpvmhwmgmt", "-p", "dio", "-a", "0000:00:1e.7", code=1, says="no PCI function")
    refused("hpvmhwmgmt", "-p", "dio", "-a", "00:02", code=2, says="bad PCI address")
    assert driver(mgmt) == "virtio-pci" and driver(smbus) == "i801_smbus"
    # The device database: a restricted function is not pooled (nor given to a guest).
    entry = f"rdev:/sys/bus/pci/devices/{nic['address']}"
    hpvm("hpvmdevmgmt", "-a", entry)
    try:
        refused("hpvmhwmgmt", "-p", "dio", "-a", nic["address"], code=2, says="restricted")
    finally:
        hpvm("hpvmdevmgmt", "-d", entry)
    assert driver(nic["address"]) == "e1000e"


def test_not_in_the_pool_is_refused_to_a_guest(nic):
    refused(
        "hpvmcreate",
        "-P",
        B,
        "-a",
        f"network:dio::hwpath:{nic['address']}",
        code=2,
        says="not in the DIO pool",
    )


def test_pooled_on_vfio_and_listed(nic):
    hpvm("hpvmhwmgmt", "-p", "dio", "-a", nic["address"], "-L", LABEL)
    assert driver(nic["address"]) == "vfio-pci"
    table = hpvm("hpvmhwmgmt", "-p", "dio", "-l").stdout
    assert re.search(rf"^{nic['address']} +{LABEL} +8086:10d3 +vfio-pci +\d+ *$", table, re.M)
    refused("hpvmhwmgmt", "-p", "dio", "-a", nic["address"], code=2, says="already in")


def test_guest_sees_the_e1000e_with_its_mac_and_link_up(nic, capsys):
    dashed = nic["mac"].replace(":", "-")
    refused(  # a physical function keeps the MAC of its NVM
        "hpvmcreate",
        "-P",
        B,
        "-a",
        "network:dio:0,5,2a-00-00-00-00-09:hwpath:" + LABEL,
        code=2,
        says="physical NIC",
    )
    started = time.monotonic()
    logs = start(nic["host"], {A: ([f"network:dio:0,5,{dashed}:hwpath:{LABEL}"], "")})
    report(f"guest with the DIO NIC reported after {time.monotonic() - started:.1f} s", capsys)
    nic["log"] = log = logs[A]
    seen = log.wait_for(
        r"^AVIO pci 00:15\.0 vendor=0x8086 device=0x10d3 driver=e1000e net=(eth\d+)$"
    )
    eth = seen.group(1)
    log.wait_for(rf"^AVIO nic {eth} mac={re.escape(nic['mac'])}$")
    log.wait_for(rf"^AVIO link {eth} up$", timeout=120)
    status = hpvm("hpvmstatus", "-P", A, "-d").stdout
    assert f"network:dio:0,5,0x{nic['mac'].replace(':', '').upper()}:hwpath:{LABEL}" in status
    assert re.search(
        rf"^hwpath +dio +{LABEL} .* {dashed}$", hpvm("hpvmstatus", "-P", A).stdout, re.M
    )
    table = hpvm("hpvmhwmgmt", "-p", "dio", "-l").stdout
    assert re.search(rf"^{nic['address']} .*vfio-pci +\d+ +{A}$", table, re.M)


def test_one_function_one_guest(nic):
    refused(
        "hpvmcreate",
        "-P",
        B,
        "-a",
        f"network:dio::hwpath:{nic['address']}",
        code=2,
        says=f"already given to guest '{A}'",
    )
    refused("hpvmhwmgmt", "-p", "dio", "-d", LABEL, code=1, says=f"given to guest '{A}'")


def live_aliases(name: str) -> set[str]:
    """The aliases of the running guest's devices (not of our metadata's items)."""
    domain = etree.fromstring(sh("virsh", "dumpxml", name).stdout.encode())
    return {alias.get("name") for alias in domain.iterfind("devices/*/alias")}


def test_live_unplug_waits_for_the_guest_then_plug_again(nic, capsys):
    log: ConsoleLog = nic["log"]
    mark = log.mark()
    started = time.monotonic()
    hpvm("hpvmmodify", "-P", A, "-d", f"network:dio::hwpath:{LABEL}")
    unplug = time.monotonic() - started
    # When hpvmmodify returns the guest has let go: QEMU no longer has the device.
    assert "ua-dio-0-5" not in live_aliases(A)
    log.wait_for(r"^AVIO pci- 00:15\.0$", timeout=60, since=mark)
    assert driver(nic["address"]) == "vfio-pci"
    report(f"DIO unplug: hpvmmodify -d returned after {unplug:.2f} s (guest released it)", capsys)
    mark = log.mark()
    started = time.monotonic()
    hpvm("hpvmmodify", "-P", A, "-a", f"network:dio:0,6:hwpath:{LABEL}")
    plug = time.monotonic() - started
    log.wait_for(
        r"^AVIO pci\+? 00:16\.0 vendor=0x8086 device=0x10d3 driver=e1000e net=eth\d+$",
        timeout=120,
        since=mark,
    )
    seen = time.monotonic() - started
    report(
        f"DIO hot-plug: hpvmmodify -a {plug:.2f} s, the guest's report after {seen:.2f} s", capsys
    )
    nic["slot"] = "00:16.0"


def test_agent_unplugs_a_function_that_leaves_and_plugs_it_back(nic, capsys):
    log: ConsoleLog = nic["log"]
    address = nic["address"]
    mark = log.mark()
    journal_mark = sh("journalctl", "-u", "avio-agent", "-o", "cat", "--no-pager").stdout

    def journal() -> str:
        text = sh("journalctl", "-u", "avio-agent", "-o", "cat", "--no-pager").stdout
        return text[len(journal_mark) :] if text.startswith(journal_mark) else text

    started = time.monotonic()
    (PCI / address / "remove").write_text("1")
    log.wait_for(r"^AVIO pci- 00:16\.0$", timeout=120, since=mark)
    gone = time.monotonic() - started
    assert poll_for(journal, rf"dio guest={A} function={address} gone from the host", 60)
    assert "ua-dio-0-6" not in live_aliases(A)
    mark = log.mark()
    started = time.monotonic()
    Path("/sys/bus/pci/rescan").write_text("1")
    log.wait_for(
        r"^AVIO pci\+? 00:16\.0 vendor=0x8086 device=0x10d3 driver=e1000e", timeout=180, since=mark
    )
    back = time.monotonic() - started
    assert driver(address) == "vfio-pci"
    assert poll_for(journal, rf"dio guest={A} function={address} back on the host: on vfio", 60)
    report(
        f"agent: function removed -> guest unplugged in {gone:.2f} s; "
        f"rescan -> back in the guest in {back:.2f} s",
        capsys,
    )


def test_after_stop_still_pooled_on_vfio_then_back_to_e1000e(nic):
    hpvm("hpvmstop", "-P", A, "-F")
    assert driver(nic["address"]) == "vfio-pci"
    table = hpvm("hpvmhwmgmt", "-p", "dio", "-l").stdout
    assert re.search(rf"^{nic['address']} +{LABEL} .*vfio-pci", table, re.M)
    hpvm("hpvmremove", "-P", A, "-F")
    hpvm("hpvmhwmgmt", "-p", "dio", "-d", LABEL)
    assert driver(nic["address"]) == "e1000e"
    assert nic["address"] not in hpvm("hpvmhwmgmt", "-p", "dio", "-l").stdout
