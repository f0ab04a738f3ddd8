"""hpvmmigrate's pure parts: the target URI, the memory URI, the not-runnable mark."""

from __future__ import annotations

import pytest

from agent.cli.hpvmmigrate import data_uri, target_uri
from translators.errors import HpvmError
from translators.migration import (
    domain_not_runnable,
    not_runnable_reason,
    passthrough_devices,
    render_not_runnable,
)


def test_host_names_become_ssh_uris_and_uris_stay():
    assert target_uri("host2") == "qemu+ssh://host2/system"
    assert target_uri("qemu+tcp://host3:16509/system") == "qemu+tcp://host3:16509/system"
    for bad in ("", "-o", "a b", "user@host", "x/y"):
        with pytest.raises(HpvmError):
            target_uri(bad)


def test_memory_goes_to_the_target_host():
    assert data_uri("qemu+tcp://127.0.0.1:16612/system") == "tcp://127.0.0.1"
    assert data_uri("qemu+ssh://host2/system") == "tcp://host2"
    assert data_uri("qemu:///system") is None


def test_not_runnable_mark_round_trips_and_is_found_in_a_domain():
    mark = render_not_runnable('migrated to "h" <x>')
    assert "xmlns" not in mark  # libvirt's setMetadata puts it in our namespace
    assert not_runnable_reason(mark) == 'migrated to "h" <x>'
    assert not_runnable_reason(None) is None
    assert not_runnable_reason('<other state="disabled"/>') is None
    domain = (
        "<domain><name>g</name><metadata>"
        + mark.replace("<runnable", '<m:runnable xmlns:m="urn:avio-kvm:migration:1"')
        + "</metadata></domain>"
    )
    assert domain_not_runnable(domain) == 'migrated to "h" <x>'
    assert domain_not_runnable("<domain><name>g</name></domain>") is None


def test_passthrough_devices_are_found():
    xml = (
        "<domain><devices><hostdev mode='subsystem' type='pci'/>"
        "<interface type='hostdev'/><interface type='bridge'/></devices></domain>"
    )
    assert passthrough_devices(xml) == ["hostdev pci", "interface hostdev"]
