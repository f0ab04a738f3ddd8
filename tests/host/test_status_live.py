"""hpvmstatus against a real libvirtd: the seed's avioclone blocks, and export -> re-create."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import GOLDEN, SEED
from tests.host.conftest import domain_xml, require_host
from tests.host.guestkit import Host, hpvm
from translators.readback import read_domain

pytestmark = pytest.mark.integration

AVIOCLONE = [
    "-O", "hpux",
    "-a", "disk:avio_stor:0,0,3:disk:/dev/rdisk/disk2",
    "-a", "network:avio_lan:0,1,2a-2e-5a-05-0a-ba:vswitch:swlan1:portid:5",
    "-a", "network:avio_lan:0,2,2a-2e-5a-05-0a-bc:vswitch:swlan2:portid:9",
]  # fmt: skip


@pytest.fixture
def rdisk():
    """/dev/rdisk/disk2, the seed's HP-UX device path, as a link to a loop device."""
    require_host()
    host = Host()
    created = not Path("/dev/rdisk").exists()
    Path("/dev/rdisk").mkdir(exist_ok=True)
    link = Path("/dev/rdisk/disk2")
    if link.exists() or link.is_symlink():
        pytest.skip("/dev/rdisk/disk2 exists on this host")
    link.symlink_to(host.loop())
    try:
        yield host
    finally:
        link.unlink()
        if created:
            os.rmdir("/dev/rdisk")
        host.cleanup()


def comparable(xml: str) -> bytes:
    """Domain XML without what differs between two definitions of one guest."""
    root = etree.fromstring(xml.encode())
    root.remove(root.find("uuid"))
    for item in root.iter("{urn:avio-kvm:hpvm:1}*"):
        item.attrib.pop("statement", None)
    return etree.tostring(root)


def test_avioclone_verbose_status_is_the_seeds(rdisk):
    name = rdisk.guest_name()
    hpvm("hpvmcreate", "-P", name, *AVIOCLONE)
    shown = hpvm("hpvmstatus", "-P", name, "-V").stdout
    assert shown == (GOLDEN / "avioclone-V.txt").read_text()
    assert "Physical device :/dev/rdisk/disk2" in SEED.read_text()


def test_exported_statements_recreate_an_identical_guest(rdisk, tmp_path):
    name = rdisk.guest_name()
    hpvm("hpvmcreate", "-P", name, *AVIOCLONE)
    before = domain_xml(name)
    exported = tmp_path / f"{name}.conf"
    exported.write_text(hpvm("hpvmstatus", "-P", name, "-d").stdout)
    hpvm("hpvmremove", "-P", name)
    hpvm("hpvmcreate", "-P", name, "-O", "hpux", "--config", str(exported))
    after = domain_xml(name)
    assert read_domain(after) == read_domain(before)
    assert comparable(after) == comparable(before)
