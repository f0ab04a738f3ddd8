"""DIO on this machine (no IOMMU): the host's own NIC is seen as the host's, and
nothing is ever bound: the pool refuses with one line, exit 1."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.devices import pci
from tests.host.guestkit import BIN


def host_nic_function() -> tuple[str, str]:
    """(interface, PCI address) of a host NIC with an IPv4 address (the management path)."""
    for net in sorted(Path("/sys/class/net").iterdir()):
        device = net / "device"
        if net.name == "lo" or not device.exists():
            continue
        address = device.resolve()
        while address.name.startswith("virtio"):  # virtio-net: PCI function/virtioN/net/X
            address = address.parent
        if pci.PCI_DEVICES.joinpath(address.name).exists():
            return net.name, address.name
    pytest.skip("no PCI NIC on this host")


def test_the_hosts_own_nic_is_used_by_the_host():
    name, address = host_nic_function()
    function = pci.Function(address)
    assert name in function.netdevs
    assert function.role == "nic" and function.mac
    why = pci.host_use(function)
    assert why and name in why


def test_the_pool_refuses_and_binds_nothing(tmp_path):
    _, address = host_nic_function()
    before = pci.Function(address).driver
    result = subprocess.run(
        [str(BIN / "hpvmhwmgmt"), "-p", "dio", "-a", address],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "AVIO_STATE_DIR": str(tmp_path)},
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert pci.Function(address).driver == before
    assert not (tmp_path / "dio-pool.json").exists()
