"""hpvmclone's pure plan, and the sparse copy it uses (on plain files)."""

from __future__ import annotations

import os

import pytest

from agent.errors import HostError
from agent.storage.copier import copy_backing
from translators.allocate import complete
from translators.clone import plan_clone
from translators.errors import HpvmError
from translators.grammar import parse_statement
from translators.model import Guest

MIB = 1 << 20


def source() -> Guest:
    guest = Guest(name="src", label="origin", autoboot=False)
    guest.storage = [
        parse_statement("disk:avio_stor:0,0,3:disk:/dev/loop7"),
        parse_statement("dvd:avio_stor:0,0,5:file:/iso/install.iso"),
    ]
    guest.networks = [parse_statement("network:avio_lan:0,1,2a-2e-5a-05-0a-ba:vswitch:sw:portid:5")]
    return complete(guest)


def test_clone_gets_new_macs_ports_and_copied_storage():
    new, jobs = plan_clone(
        source(),
        "dst",
        add=[],
        delete=[parse_statement("dvd:avio_stor:0,0,5:file:/iso/install.iso")],
        copies=[parse_statement("disk:avio_stor:0,0,3:file:/images/dst.img")],
        label="the copy",
        autoboot=True,
    )
    assert (new.name, new.label, new.autoboot, new.number) == ("dst", "the copy", True, None)
    (nic,) = new.networks
    assert nic.mac is None and nic.portid is None and (nic.bus, nic.slot) == (0, 1)
    (disk,) = new.storage
    assert (disk.storage, disk.location, disk.target) == ("file", "/images/dst.img", 3)
    (job,) = jobs
    assert job.source.location == "/dev/loop7" and job.clone is disk
    done = complete(new)
    assert done.networks[0].mac != "2a:2e:5a:05:0a:ba"


@pytest.mark.parametrize(
    ("copy", "message"),
    [
        ("disk:avio_stor::file:/x.img", "by its bus,slot,target"),
        ("disk:avio_stor:0,0,4:file:/x.img", "has no storage there"),
        ("dvd:avio_stor:0,0,3:file:/x.iso", "the device there is a disk"),
        ("network:avio_lan::vswitch:sw", "-b takes a storage statement"),
    ],
)
def test_bad_copies_are_refused(copy, message):
    with pytest.raises(HpvmError, match=message):
        plan_clone(source(), "dst", [], [], [parse_statement(copy)])


def test_sparse_copy_keeps_holes_and_is_checked(tmp_path):
    image = tmp_path / "src.img"
    with open(image, "wb") as f:
        f.truncate(64 * MIB)
        f.seek(3 * MIB)
        f.write(b"AVIO-CLONE-MARK" * 1000)
        f.seek(40 * MIB + 17)
        f.write(b"tail data")
    copy = tmp_path / "copy.img"
    result = copy_backing(str(image), str(copy))
    assert copy.read_bytes() == image.read_bytes()
    assert result["bytes"] == 64 * MIB and result["written"] <= 2 * MIB
    assert os.stat(copy).st_blocks * 512 <= 4 * MIB  # holes stay holes
    with pytest.raises(HostError, match="never overwrites"):
        copy_backing(str(image), str(copy))
    assert copy.read_bytes() == image.read_bytes()  # untouched
