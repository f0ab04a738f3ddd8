"""Golden files: the seed's own hpvmcreate examples and its avioclone guest."""

from __future__ import annotations

import shutil
import subprocess

import libvirt
import pytest
from lxml import etree

from agent.cli import hpvmcreate
from tests.conftest import DATA, GOLDEN, compare_golden, seed_commands
from translators.allocate import complete
from translators.options import parse_config_file
from translators.render import render_domain, to_string

SEED_CREATES = seed_commands("hpvmcreate")


def test_seed_has_the_two_examples():
    assert len(SEED_CREATES) == 2
    assert SEED_CREATES[0][:4] == ["-P", "aviotest", "-O", "hpux"]


@pytest.mark.parametrize("index", range(len(SEED_CREATES)))
def test_seed_example_matches_golden(cli, index):
    result = cli(hpvmcreate, [*SEED_CREATES[index], "--print-xml"])
    assert result.code == 0, result.err
    # The seed's examples omit the ':' after 'disk': accepted, with a warning.
    assert "read 'hba:" in result.err and "'disk:avio_stor::disk:/dev/rdisk/disk1'" in result.err
    compare_golden("seed-aviotest.xml", result.out)


def test_both_adapter_spellings_give_identical_xml(cli):
    outputs = {cli(hpvmcreate, [*argv, "--print-xml"]).out for argv in SEED_CREATES}
    assert len(outputs) == 1


def avioclone_xml() -> str:
    guest = complete(parse_config_file(DATA / "avioclone.conf").guest)
    return to_string(render_domain(guest, "qemu"))


def test_avioclone_golden():
    compare_golden("avioclone.xml", avioclone_xml())


def test_avioclone_devices():
    domain = etree.fromstring(avioclone_xml().encode())
    (disk,) = domain.findall("devices/disk")
    address = disk.find("address")
    assert address.get("target") == "3" and address.get("unit") == "0"
    assert disk.find("source").get("dev") == "/dev/rdisk/disk2"
    assert disk.find("driver").attrib == {
        "name": "qemu",
        "type": "raw",
        "cache": "none",
        "io": "native",
    }
    (controller,) = domain.findall("devices/controller[@type='scsi']")
    assert controller.get("model") == "virtio-scsi"
    assert controller.get("index") == address.get("controller")
    nics = domain.findall("devices/interface")
    assert [n.find("mac").get("address") for n in nics] == [
        "2a:2e:5a:05:0a:ba",
        "2a:2e:5a:05:0a:bc",
    ]
    assert [n.find("source").get("bridge") for n in nics] == ["swlan1", "swlan2"]
    assert {n.find("model").get("type") for n in nics} == {"virtio"}
    ns = {"h": "urn:avio-kvm:hpvm:1"}
    ports = domain.xpath("metadata/h:guest/h:network/@portid", namespaces=ns)
    assert ports == ["5", "9"]


def golden_files():
    return sorted(p.name for p in GOLDEN.glob("*.xml"))


@pytest.mark.skipif(not shutil.which("virt-xml-validate"), reason="needs libvirt-clients")
@pytest.mark.parametrize("name", golden_files())
def test_golden_validates_against_libvirt_schema(name):
    result = subprocess.run(
        ["virt-xml-validate", str(GOLDEN / name), "domain"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr + result.stdout


@pytest.mark.parametrize("name", golden_files())
def test_golden_defines_in_libvirt_test_driver(name):
    conn = libvirt.open("test:///default")
    try:
        domain = conn.defineXML((GOLDEN / name).read_text())
        domain.undefine()
    finally:
        conn.close()
