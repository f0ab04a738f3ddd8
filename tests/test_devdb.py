"""The device database, host-free: hpvmdevmgmt's grammar, the stored text, the `-l` layout,
identity matching, and SHARE=YES in the storage rules (issue 13, item 3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from translators import devdb
from translators.devdb import GDEV, RDEV, Entry, Request, Usage, parse_request, rows
from translators.errors import HpvmError
from translators.grammar import parse_statement
from translators.model import Guest
from translators.validate import HostClaims, check_backings

# -- the grammar ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "text", "expected"),
    [
        ("l", "all", Request("l", "all")),
        ("l", "rdev", Request("l", "rdev")),
        ("l", "gdev:/dev/sdb", Request("l", "gdev", "/dev/sdb")),
        ("a", "rdev:/dev/sdb", Request("a", "rdev", "/dev/sdb")),
        ("a", "gdev:/vm/iso/", Request("a", "gdev", "/vm/iso/")),
        ("d", "rdev:/dev/sdb", Request("d", "rdev", "/dev/sdb")),
        ("d", "gdev:/dev/sdb:attr:SHARE", Request("d", "gdev", "/dev/sdb", "SHARE")),
        ("d", "rdev:/dev/vda:attr:AUTORDEV", Request("d", "rdev", "/dev/vda", "AUTORDEV")),
        ("m", "gdev:/dev/sdb:attr:SHARE=YES", Request("m", "gdev", "/dev/sdb", "SHARE", "YES")),
        ("m", "gdev:/dev/sdb:attr:share=no", Request("m", "gdev", "/dev/sdb", "SHARE", "NO")),
        # paths with colons (by-path names, PCI addresses) stay whole
        (
            "a",
            "rdev:/dev/disk/by-path/pci-0000:00:04.0-scsi-0:0:0:1",
            Request("a", "rdev", "/dev/disk/by-path/pci-0000:00:04.0-scsi-0:0:0:1"),
        ),
        (
            "m",
            "gdev:/sys/bus/pci/devices/0000:00:03.0:attr:SHARE=NO",
            Request("m", "gdev", "/sys/bus/pci/devices/0000:00:03.0", "SHARE", "NO"),
        ),
    ],
)
def test_requests(option, text, expected):
    assert parse_request(option, text) == expected


@pytest.mark.parametrize(
    ("option", "text", "words"),
    [
        ("a", "server:host2", "'server' entries"),
        ("l", "env", "'env' entries"),
        ("a", "all:/dev/sdb", "rdev or gdev"),
        ("a", "xdev:/dev/sdb", "rdev or gdev"),
        ("a", "rdev", "needs rdev:ENTRY"),
        ("a", "rdev:", "needs rdev:ENTRY"),
        ("a", "rdev:dev/sdb", "not absolute"),
        ("a", "rdev:/", "root directory"),
        ("a", "rdev:/dev/sdb:attr:SHARE=YES", "set attributes with -m"),
        ("m", "gdev:/dev/sdb", "needs gdev:ENTRY:attr:NAME=VALUE"),
        ("m", "gdev:/dev/sdb:attr:SHARE=MAYBE", "SHARE must be YES or NO"),
        ("m", "gdev:/dev/sdb:attr:SHARE", "SHARE must be YES or NO"),
        ("m", "rdev:/dev/sdb:attr:SHARE=YES", "not restricted ones"),
        ("m", "gdev:/dev/sdb:attr:AUTORDEV=YES", "set by the host"),
        ("m", "gdev:/dev/sdb:attr:COLOUR=RED", "unknown attribute 'COLOUR'"),
        ("m", "gdev:/dev/sdb:attr:PRESERVE=YES", "PRESERVE"),
        ("m", "gdev:/dev/sdb:IGNOREWWID=YES", "IGNOREWWID"),
        ("d", "gdev:/dev/sdb:attr:SHARE=YES", "deletes an attribute by name"),
        ("d", "gdev:all:depend:guest1", "dependents"),
        ("l", "all:SHARE=YES", "by attribute value"),
        ("a", "rdev:/dev/\x1b[31m", "control character"),
        ("a", "rdev:/" + "x" * 300, "NAME_MAX"),
    ],
)
def test_bad_requests_are_one_line(option, text, words):
    with pytest.raises(HpvmError) as err:
        parse_request(option, text)
    message = str(err.value)
    assert words in message and "\n" not in message and "\x1b" not in message


@given(st.sampled_from("ladm"), st.text(max_size=80))
def test_any_argument_is_a_request_or_one_line_of_bad_input(option, text):
    try:
        request = parse_request(option, text)
    except HpvmError as err:
        assert "\n" not in str(err)
    else:
        assert request.config in ("all", RDEV, GDEV)
        assert request.entry is None or request.entry.startswith("/")


# -- the stored text --------------------------------------------------------------


def test_stored_text_round_trips():
    entries = [
        Entry(RDEV, "/dev/vda", "blk:254:0", "DISK", "/dev/disk/by-id/wwn-0x5", {"AUTORDEV": "Y"}),
        Entry(GDEV, "/vm/iso/a b.iso", "file:2049:77", "FILE", "", {"SHARE": "YES"}),
        Entry(RDEV, "/sys/class/net/eth0", "pci:0000:00:03.0", "NIC"),
    ]
    text = devdb.dump(entries)
    assert text.count("\n") == len(entries) + 2  # one entry a line: readable as text
    assert devdb.load(text) == entries
    assert devdb.load(devdb.dump([])) == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "not JSON"),
        ("[]", "not a version 1"),
        ('{"version": 2, "entries": []}', "not a version 1"),
        ('{"version": 1}', "no entry list"),
        ('{"version": 1, "entries": [{"config": "rdev"}]}', "entry 1 is incomplete"),
        ('{"version": 1, "entries": [1]}', "entry 1 is incomplete"),
        (
            '{"version": 1, "entries": [{"config": "xdev", "path": "/a", "key": "k",'
            ' "devtype": "DISK"}]}',
            "entry 1 is not valid",
        ),
        (
            '{"version": 1, "entries": [{"config": "rdev", "path": 5, "key": "k",'
            ' "devtype": "DISK"}]}',
            "entry 1 is not valid",
        ),
    ],
)
def test_bad_stored_text_says_what(text, words):
    with pytest.raises(ValueError, match=words):
        devdb.load(text)


# -- identity ---------------------------------------------------------------------


def test_a_disk_entry_covers_its_partitions_and_the_other_way_round():
    disk = Entry(RDEV, "/dev/sdb", "blk:8:16", "DISK")
    assert disk.matches("blk:8:16")
    assert disk.matches("blk:8:16#8:17")
    part = Entry(RDEV, "/dev/sdb1", "blk:8:16#8:17", "DISK")
    assert part.matches("blk:8:16")
    assert not part.matches("blk:8:16#8:18")
    assert not disk.matches("blk:8:32")


def test_a_stable_id_decides_after_renumbering():
    entry = Entry(RDEV, "/dev/sdb", "blk:8:16", "DISK", "/dev/disk/by-id/wwn-0x5000c500a")
    # the restricted disk came back as 8:32: still restricted
    assert entry.matches("blk:8:32", "/dev/disk/by-id/wwn-0x5000c500a")
    # 8:16 now names another disk: not this entry
    assert not entry.matches("blk:8:16", "/dev/disk/by-id/wwn-0x5000c500b")
    # no stable id to compare: the number decides (refusing, not trusting)
    assert entry.matches("blk:8:16", "")


def test_a_loop_device_is_its_file():
    entry = Entry(RDEV, "/dev/loop3", "file:2049:77", "DISK")
    assert entry.matches("file:2049:77")  # another loop device over the file, or the file
    assert not entry.matches("file:2049:78")


# -- the -l layout ----------------------------------------------------------------


def test_list_lines_have_hpvm_shape_and_opensvc_reads_them():
    entries = [
        Entry(RDEV, "/dev/vda", "blk:254:0", "DISK", "", {"AUTORDEV": "YES"}),
        Entry(GDEV, "/dev/sdb", "blk:8:16", "DISK", "/dev/disk/by-id/wwn-0x5", {"SHARE": "YES"}),
        Entry(GDEV, "/vm/gone.img", "/vm/gone.img", "FILE"),
    ]
    usages = [
        Usage("blk:8:16", "/dev/sdb", "web1", "DISK"),
        Usage("blk:8:16", "/dev/disk/by-id/wwn-0x5", "web2", "DISK"),
        Usage("file:2049:9", "/vm/iso/x.iso", "web1", "FILE"),
        Usage("file:2049:9", "/vm/iso/x.iso", "web2", "FILE"),
    ]
    present = {"blk:254:0", "blk:8:16", "file:2049:9"}
    lines = [r.line() for r in rows(entries, usages, present)]
    assert lines == [
        "/dev/vda:CONFIG=rdev,EXIST=YES,DEVTYPE=DISK,SHARE=NO,AUTORDEV=YES::",
        "/dev/sdb,/dev/disk/by-id/wwn-0x5:CONFIG=gdev,EXIST=YES,DEVTYPE=DISK,SHARE=YES:"
        "web1,web2:/dev/disk/by-id/wwn-0x5",
        "/vm/gone.img:CONFIG=gdev,EXIST=NO,DEVTYPE=FILE,SHARE=NO::",
        "/vm/iso/x.iso:CONFIG=gdev,EXIST=YES,DEVTYPE=FILE,SHARE=NO:web1,web2:",
    ]
    assert [r.line() for r in rows(entries, usages, present, RDEV)] == lines[:1]
    assert [r.line() for r in rows(entries, usages, present, GDEV)] == lines[1:]
    # opensvc's parser (drivers/resource/disk/hpvm): devices and their SHARE flag
    seen = {}
    for line in lines:
        if "DEVTYPE=FILE" not in line and "DEVTYPE=DISK" not in line:
            continue
        for dev in line.split(":")[0].split(","):
            seen[dev] = "YES" if "SHARE=YES" in line else "NO"
    assert seen["/dev/disk/by-id/wwn-0x5"] == "YES" and seen["/vm/iso/x.iso"] == "NO"


# -- SHARE=YES in the storage rules ----------------------------------------------


def _guest(name: str, *statements: str) -> Guest:
    return Guest(name=name, storage=[parse_statement(s) for s in statements])


def _claims(shared: bool, adapter: str = "avio_stor") -> HostClaims:
    claims = HostClaims(shared={"/vm/a.img"} if shared else set())
    claims.add_backing("/vm/a.img", "g1", adapter)
    return claims


def test_a_second_guest_is_refused_a_disk_that_is_not_shared():
    with pytest.raises(HpvmError, match=r"already used by guest 'g1'.*SHARE=YES lets"):
        check_backings(_guest("g2", "disk:avio_stor::file:/vm/a.img"), _claims(False))


def test_share_yes_lets_a_second_guest_use_the_disk():
    check_backings(_guest("g2", "disk:avio_stor::file:/vm/a.img"), _claims(True))
    check_backings(_guest("g2", "disk:scsi::file:/vm/a.img"), _claims(True, "scsi"))


def test_share_yes_never_mixes_vio_and_avio():
    with pytest.raises(HpvmError, match="never used through VIO and AVIO at once"):
        check_backings(_guest("g2", "disk:scsi::file:/vm/a.img"), _claims(True))
    with pytest.raises(HpvmError, match="g1' uses it through scsi"):
        check_backings(_guest("g2", "dvd:avio_stor::file:/vm/a.img"), _claims(True, "scsi"))


def test_share_yes_does_not_allow_one_guest_to_name_a_disk_twice():
    guest = _guest("g2", "disk:avio_stor::file:/vm/a.img", "disk:avio_stor::file:/vm/a.img")
    with pytest.raises(HpvmError, match="already used in this guest"):
        check_backings(guest, _claims(True))
