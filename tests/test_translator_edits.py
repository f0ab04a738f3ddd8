"""The pure XML edits the agent hands libvirt: guest settings, a redefined vswitch's UUID."""

from __future__ import annotations

from lxml import etree

from tests.conftest import GOLDEN
from translators.readback import read_domain
from translators.settings import GuestSettings, settings_xml, with_settings
from translators.vswitch import VSwitch, read_network, render_network

DOMAIN = (GOLDEN / "seed-aviotest.xml").read_text()


def test_no_wanted_change_is_none():
    guest = read_domain(DOMAIN)
    assert with_settings(guest, GuestSettings()) is None
    same = GuestSettings(vcpus=guest.vcpus, memory_mb=guest.memory_mb, os_type=guest.os_type)
    assert with_settings(guest, same) is None


def test_with_settings_is_a_copy():
    guest = read_domain(DOMAIN)
    changed = with_settings(guest, GuestSettings(vcpus=guest.vcpus + 1, autoboot=False))
    assert changed is not None and changed is not guest
    assert (changed.vcpus, changed.autoboot) == (guest.vcpus + 1, False)
    assert changed.devices == guest.devices and guest.vcpus != changed.vcpus


def test_settings_xml_reads_back_and_keeps_devices():
    guest = read_domain(DOMAIN)
    wanted = GuestSettings(vcpus=3, memory_mb=1536, os_type="linux", label="db one", autoboot=False)
    changed = with_settings(guest, wanted)
    xml = settings_xml(DOMAIN, changed)
    again = read_domain(xml)
    assert (again.vcpus, again.memory_mb, again.os_type, again.label, again.autoboot) == (
        3,
        1536,
        "linux",
        "db one",
        False,
    )
    assert again.devices == guest.devices
    root = etree.fromstring(xml.encode())
    assert root.find("memory").get("unit") == "MiB"
    assert root.find("name").getnext().tag == "title"  # where libvirt's schema wants it
    assert len(root.findall("metadata/*")) == 1  # the old metadata replaced, not doubled


def test_settings_xml_without_title_or_metadata():
    guest = read_domain(DOMAIN)
    root = etree.fromstring(DOMAIN.encode())
    for tag in ("title", "metadata"):
        for element in root.findall(tag):
            root.remove(element)
    bare = etree.tostring(root, encoding="unicode")
    xml = settings_xml(bare, with_settings(guest, GuestSettings(label="x", vcpus=2)))
    assert read_domain(xml).label == "x"
    assert etree.fromstring(xml.encode()).find("metadata") is not None


def test_redefined_network_keeps_its_uuid():
    v = VSwitch("swlan1", 3, "eth1", True, {5: 120})
    uuid = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
    root = etree.fromstring(render_network(v, uuid).encode())
    assert root.find("name").getnext().tag == "uuid"
    assert root.findtext("uuid") == uuid
    assert read_network(render_network(v, uuid)) == v
    assert etree.fromstring(render_network(v).encode()).find("uuid") is None
