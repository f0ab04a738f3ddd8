"""The agent's disk index with a real libvirtd: read once, then only the guests that changed.

What an event costs must not grow with the number of running guests: after the
first read, a change of one guest re-reads that guest alone (counted, not timed).
"""

from __future__ import annotations

import os
import subprocess
import time

import libvirt
import pytest

from agent.daemon.index import DiskIndex
from tests.host.guestkit import hpvm

pytestmark = pytest.mark.integration


@pytest.fixture
def running(host):
    """Two running guests (no OS needed: the firmware idles), each with one loop disk."""
    guests = []
    for _ in range(2):
        disk = host.loop(8)
        name = host.define_guest(f"disk:avio_stor:0,0,0:disk:{disk}", memory="64M")
        hpvm("hpvmstart", "-P", name)
        guests.append((name, disk))
    conn = libvirt.open("qemu:///system")
    yield conn, guests
    conn.close()


def devnum(path: str) -> int:
    return os.stat(path).st_rdev


def test_refs_read_each_guest_once_then_only_the_changed_one(running):
    conn, [(first, first_disk), (second, second_disk)] = running
    index = DiskIndex()
    [ref] = index.refs(conn, devnum(first_disk))
    assert (ref.guest, ref.target, ref.source) == (first, "sda", first_disk)
    reads = index.reads
    assert reads >= 2  # every running guest, once
    assert [r.guest for r in index.refs(conn, devnum(second_disk))] == [second]
    assert index.reads == reads  # nothing changed: nothing read
    index.invalidate(second)
    index.refs(conn, devnum(first_disk))
    assert index.reads == reads + 1  # the changed guest alone


def test_a_stopped_guest_leaves_the_index(running):
    conn, [(first, first_disk), _] = running
    index = DiskIndex()
    assert index.refs(conn, devnum(first_disk))
    hpvm("hpvmstop", "-P", first, "-F")
    index.invalidate(first)
    assert index.refs(conn, devnum(first_disk)) == []


def test_an_unplugged_disk_is_waiting_for_its_device(running):
    conn, [(first, first_disk), (second, _)] = running
    index = DiskIndex()
    number = devnum(first_disk)
    assert index.waiting_for(conn, number) == []
    dom = conn.lookupByName(first)
    disk = next(d for d in index.refs(conn, number) if d.guest == first)
    xml = subprocess.run(
        ["virsh", "dumpxml", first], check=True, capture_output=True, text=True
    ).stdout
    from translators.live import find_disk

    found = find_disk(xml, disk.target)
    assert found is not None
    dom.detachDeviceFlags(found.xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)  # kept in the definition
    deadline = time.monotonic() + 30
    while index.refs(conn, number):  # libvirt returns before QEMU lets go
        assert time.monotonic() < deadline, "the disk stayed in the running guest"
        time.sleep(0.1)
        index.invalidate(first)
    assert index.waiting_for(conn, number) == [first]
    assert second not in index.waiting_for(conn, number)
