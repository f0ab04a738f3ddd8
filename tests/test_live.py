"""translators.live: a running guest's disks from domain XML strings."""

from __future__ import annotations

from lxml import etree

from translators.live import block_disks, find_disk, missing_block_disks

LIVE = """<domain type='qemu'>
  <name>g</name>
  <devices>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/loop3'/>
      <target dev='sda' bus='scsi'/>
      <alias name='scsi0-0-0-3'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/vm/g.img'/>
      <target dev='sdb' bus='scsi'/>
      <alias name='scsi0-0-0-4'/>
    </disk>
    <disk type='block' device='cdrom'>
      <target dev='sdc' bus='scsi'/>
    </disk>
    <interface type='bridge'><source bridge='br0'/></interface>
  </devices>
</domain>"""

PERSISTENT = """<domain type='qemu'>
  <name>g</name>
  <devices>
    <disk type='block' device='disk'>
      <source dev='/dev/loop3'/>
      <target dev='sda' bus='scsi'/>
    </disk>
    <disk type='block' device='disk'>
      <source dev='/dev/loop4'/>
      <target dev='sdd' bus='scsi'/>
      <address type='drive' controller='0' bus='0' target='0' unit='6'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/vm/g.img'/>
      <target dev='sdb' bus='scsi'/>
    </disk>
    <disk type='block' device='cdrom'>
      <target dev='sde' bus='scsi'/>
    </disk>
  </devices>
</domain>"""


def test_block_disks_are_the_block_backed_ones_with_a_source():
    assert block_disks(LIVE) == [("sda", "/dev/loop3")]
    assert block_disks("<domain><devices/></domain>") == []


def test_find_disk_returns_any_disk_by_target_with_its_alias_and_xml():
    disk = find_disk(LIVE, "sdb")
    assert disk is not None
    assert (disk.target, disk.source, disk.alias) == ("sdb", "", "scsi0-0-0-4")
    element = etree.fromstring(disk.xml)
    assert element.tag == "disk" and element.find("source").get("file") == "/vm/g.img"
    block = find_disk(LIVE, "sda")
    assert block is not None and (block.source, block.alias) == ("/dev/loop3", "scsi0-0-0-3")


def test_find_disk_without_alias_or_match():
    disk = find_disk(LIVE, "sdc")
    assert disk is not None and disk.alias is None
    assert find_disk(LIVE, "sdz") is None


def test_missing_block_disks_are_defined_block_disks_not_running():
    missing = missing_block_disks(PERSISTENT, LIVE)
    assert [(d.target, d.source) for d in missing] == [("sdd", "/dev/loop4")]
    element = etree.fromstring(missing[0].xml)
    assert element.find("address").get("unit") == "6"
    assert element.find("source").get("dev") == "/dev/loop4"


def test_nothing_is_missing_when_the_definition_runs():
    assert missing_block_disks(LIVE, LIVE) == []
