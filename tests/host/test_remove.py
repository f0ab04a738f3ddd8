"""`hpvmremove` loses nothing silently (issue 10, items 6 and 17), against a real libvirtd.

Without -F it refuses a guest whose managed-save image (saved RAM) or NVRAM
would be deleted; it renames the agent's NAME.conf to NAME.conf.removed, so
the agent's next reconcile does not define the guest again.
"""

from __future__ import annotations

import subprocess

import libvirt
import pytest
from lxml import etree

from tests.host.guestkit import agent_once, hpvm

pytestmark = pytest.mark.integration


@pytest.fixture
def conn(host):
    c = libvirt.open("qemu:///system")
    yield c
    c.close()


def exists(conn: libvirt.virConnect, name: str) -> bool:
    try:
        conn.lookupByName(name)
        return True
    except libvirt.libvirtError:
        return False


def refused(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr


def test_a_managed_save_is_not_deleted_without_F(host, conn):
    name = host.define_guest(memory="128M")
    hpvm("hpvmstart", "-P", name)
    dom = conn.lookupByName(name)
    dom.managedSave(0)
    assert dom.hasManagedSaveImage(0)
    refused(hpvm("hpvmremove", "-P", name, check=False), "saved state", "-F")
    assert exists(conn, name) and dom.hasManagedSaveImage(0)
    hpvm("hpvmremove", "-P", name, "-F")
    assert not exists(conn, name)


def test_nvram_is_not_deleted_without_F(host, conn):
    name = host.guest_name()
    xml = hpvm("hpvmcreate", "-P", name, "-O", "linux", "-r", "128M", "--print-xml").stdout
    nvram = host.tmp / f"{name}_VARS.fd"
    nvram.write_bytes(bytes(128 * 1024))
    root = etree.fromstring(xml.encode())
    os_element = root.find("os")
    loader = etree.SubElement(os_element, "loader", readonly="yes", type="pflash")
    loader.text = "/usr/share/OVMF/OVMF_CODE.fd"
    etree.SubElement(os_element, "nvram").text = str(nvram)
    conn.defineXML(etree.tostring(root, encoding="unicode"))
    refused(hpvm("hpvmremove", "-P", name, check=False), f"NVRAM {nvram}")
    assert exists(conn, name) and nvram.exists()
    hpvm("hpvmremove", "-P", name, "-F")
    assert not exists(conn, name) and not nvram.exists()


def test_a_removed_guest_does_not_come_back_from_its_config_file(host, conn):
    guests = host.tmp / "guests"
    guests.mkdir()
    name = host.guest_name()
    (guests / f"{name}.conf").write_text("-O linux\n-r 128M\n-B manual\n")
    agent_once(guests)
    assert exists(conn, name)
    result = hpvm("hpvmremove", "-P", name, "--guests-dir", str(guests))
    assert f"renamed to {name}.conf.removed" in result.stdout
    assert not (guests / f"{name}.conf").exists() and (guests / f"{name}.conf.removed").exists()
    assert not exists(conn, name)
    agent_once(guests)  # the agent ignores NAME.conf.removed
    assert not exists(conn, name)


def test_remove_without_a_config_file_says_nothing_of_one(host, conn):
    name = host.define_guest(memory="128M")
    empty = host.tmp / "guests"
    empty.mkdir()
    result = hpvm("hpvmremove", "-P", name, "--guests-dir", str(empty))
    assert result.stdout == "" and not exists(conn, name)
