"""A command reads the host's guests and vswitches once (HostView), on the real libvirtd."""

from __future__ import annotations

import collections
import uuid

import libvirt
import pytest

from agent.cli import hpvmmodify, hpvmstart
from tests.host.guestkit import hpvm

LISTINGS = ("listAllNetworks", "listAllDomains")


@pytest.fixture
def vswitch(host):
    name = f"avtsw{uuid.uuid4().hex[:6]}"
    hpvm("hpvmnet", "-c", "-S", name)
    yield name
    hpvm("hpvmnet", "-d", "-F", "-S", name, check=False)


@pytest.fixture
def listings(monkeypatch) -> collections.Counter:
    """How often libvirt is asked for every network and every guest (the real calls, counted)."""
    counts: collections.Counter = collections.Counter()
    for method in LISTINGS:
        real = getattr(libvirt.virConnect, method)

        def counted(self, *args, _real=real, _method=method):
            counts[_method] += 1
            return _real(self, *args)

        monkeypatch.setattr(libvirt.virConnect, method, counted)
    return counts


def test_start_and_plug_list_guests_and_vswitches_once(cli, host, vswitch, listings):
    """hpvmstart listed the networks 4 times, hpvmmodify -a of a NIC on a running guest 3."""
    nic = f"network:lan::vswitch:{vswitch}"
    name = host.define_guest(nic)
    listings.clear()
    assert cli(hpvmstart, ["-P", name]).code == 0
    assert listings == {"listAllNetworks": 1, "listAllDomains": 1}
    listings.clear()
    result = cli(hpvmmodify, ["-P", name, "-a", nic])
    assert result.code == 0, result.err
    assert listings == {"listAllNetworks": 1, "listAllDomains": 1}
