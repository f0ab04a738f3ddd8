"""The agent's cache of defined guests with a real libvirtd: read once, then only the
guests said to have changed (counted, not timed)."""

from __future__ import annotations

import libvirt
import pytest

from agent.guests.inventory import CachedHostView, GuestCache, HostView
from tests.host.guestkit import hpvm

pytestmark = pytest.mark.integration


@pytest.fixture
def conn():
    conn = libvirt.open("qemu:///system")
    yield conn
    conn.close()


def names(entries) -> set[str]:
    return {e.guest.name for e in entries}


def test_the_cache_reads_only_the_guests_that_changed(host, conn):
    first = host.define_guest(memory="64M")
    cache = GuestCache()
    listed = cache.entries(conn)
    assert first in names(listed)
    reads = cache.reads
    second = host.define_guest(memory="64M")
    assert second not in names(cache.entries(conn))  # not said to have changed yet
    cache.invalidate(second)
    assert second in names(cache.entries(conn))
    assert cache.reads == reads + 1
    hpvm("hpvmremove", "-P", first, "-F")
    cache.invalidate(first)
    assert first not in names(cache.entries(conn))
    cache.invalidate()
    assert second in names(cache.entries(conn)) and first not in names(cache.entries(conn))


def test_claims_from_the_cache_are_the_full_listings(host, conn):
    disk = host.loop(8)
    name = host.define_guest(f"disk:avio_stor::disk:{disk}", memory="64M")
    cached = CachedHostView(conn, GuestCache()).claims(exclude="nobody")
    full = HostView(conn).claims(exclude="nobody")
    assert cached.backings == full.backings and name in cached.backings.values()
    assert cached.macs == full.macs and cached.ports == full.ports
