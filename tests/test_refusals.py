"""Every refusal rule: exit 2, one line quoting the statement, nothing on stdout."""

from __future__ import annotations

import pytest

from agent.cli import hpvmcreate


def many(template: str, count: int) -> list[str]:
    return [arg for i in range(count) for arg in ("-a", template.format(i=i))]


def refusal(words: str, *statements: str) -> tuple[list[str], str, str]:
    """A case: each statement given with -a; the last one is quoted, with `words`."""
    return [arg for statement in statements for arg in ("-a", statement)], statements[-1], words


DISK = "disk:avio_stor:{}:disk:/dev/sdb"
REFUSALS = {
    # name: (argv after -P g, offending statement to quote, words in the message),
    # or refusal(words, statements...): each given with -a, the last one quoted
    "129th AVIO device": (
        many("disk:avio_stor::file:/var/lib/g/d{i}", 129),
        "disk:avio_stor::file:/var/lib/g/d128",
        "more than 128 AVIO devices",
    ),
    "31st VIO device": (
        many("disk:scsi::file:/var/lib/g/d{i}", 31),
        "disk:scsi::file:/var/lib/g/d30",
        "more than 30 VIO devices",
    ),
    "AVIO bus 8": refusal("PCI bus 8", DISK.format("8,0,0")),
    "slot 8": refusal("PCI slot 8", DISK.format("0,8,0")),
    "AVIO target 128": refusal("target 128", DISK.format("0,0,128")),
    "VIO target 7": refusal("LSI SCSI id) 7 out of range 0-6", "disk:scsi:0,0,7:disk:/dev/sdb"),
    "VIO bus 7": refusal("bus 7", "disk:scsi:7,0,0:disk:/dev/sdb"),
    "duplicate address": refusal(
        "already used", "disk:avio_stor:0,1,3:disk:/dev/sdb", "disk:avio_stor:0,1,3:disk:/dev/sdc"
    ),
    "duplicate backing": refusal(
        "already used in this guest",
        "disk:avio_stor::disk:/dev/sdb",
        "disk:avio_stor::disk:/dev/sdb",
    ),
    "null for a disk": refusal("only for dvd", "disk:avio_stor::null:/var/iso"),
    "tape backed by a disk": refusal("not supported for a tape", "tape:avio_stor::disk:/dev/st0"),
    "changer backed by a disk": refusal(
        "not supported for a changer", "changer:aviostor::disk:/dev/sch0"
    ),
    "burner backed by a file": refusal("not supported for a burner", "burner:scsi::file:/x.iso"),
    "attach for a dvd": refusal(
        "'attach' is for attached devices", "dvd:avio_stor::attach:/dev/sr0"
    ),
    "attach_path for a disk": refusal(
        "'attach_path' is for attached devices", "disk:avio_stor::attach_path:0:0:1:0"
    ),
    "attach on AVIO": refusal(
        "'attach' is not supported with avio_stor", "tape:avio_stor::attach:/dev/st0"
    ),
    "attach_path on VIO": refusal(
        "'attach_path' is not supported with scsi", "changer:scsi::attach_path:0:0:1:0"
    ),
    "HP-UX lunpath": refusal(
        "takes the host's SCSI address H:C:T:L",
        "tape:avio_stor:0,4,0:attach_path:0/7/1/1.0x500104f00048b29e.0x0",
    ),
    "attach without a device": refusal("needs the host device", "tape:scsi::attach:"),
    "attached tape at LSI id 7": refusal("LSI SCSI id) 7", "tape:scsi:0,0,7:attach:/dev/nst0"),
    "npiv": refusal(
        "NPIV", "hba:avio_stor:1,1,0x50060b00006499a8,0x50060b00006499a9:npiv:/dev/fcd0"
    ),
    "localnet with avio_lan": refusal("localnet", "network:avio_lan::vswitch:localnet"),
    "MAC not locally administered": refusal(
        "not locally administered", "network:avio_lan:,,00-11-22-33-44-55:vswitch:sw1"
    ),
    "multicast MAC": refusal("multicast", "network:lan:,,0x030000000001:vswitch:sw1"),
    "bad MAC": refusal("bad MAC", "network:lan:,,2a-2e-5a:vswitch:sw1"),
    "MAC twice in a guest": refusal(
        "already used",
        "network:lan:,,2a-00-00-00-00-01:vswitch:sw1",
        "network:avio_lan:,,0x2A0000000001:vswitch:sw2",
    ),
    "NIC in an HBA's slot": refusal(
        "slot 1 is already used",
        "disk:avio_stor:0,1,0:disk:/dev/sdb",
        "network:avio_lan:0,1:vswitch:sw1",
    ),
    "VIO disk on an AVIO HBA": refusal(
        "slot 1 is already used",
        "disk:avio_stor:0,1,0:disk:/dev/sdb",
        "disk:scsi:0,1,1:disk:/dev/sdc",
    ),
    "port id 512": refusal("port id 512", "network:avio_lan::vswitch:sw1:portid:512"),
    "unknown adapter": refusal("adapter", "disk:ide::disk:/dev/sdb"),
    "unknown device type": refusal("unknown device type", "floppy:scsi::disk:/dev/fd0"),
    "relative path": refusal("not absolute", "disk:scsi::disk:sdb"),
    "missing fields": refusal("5 fields", "disk:avio_stor:0,0,0"),
    "non-numeric target": refusal("not a number", DISK.format("0,0,x")),
    "dvd on lv": refusal("dvd", "dvd:avio_stor::lv:/dev/vg/lv"),
}


@pytest.mark.parametrize("print_xml", [False, True], ids=["check", "print-xml"])
@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_refusal(cli, case, print_xml):
    argv, statement, words = REFUSALS[case]
    mode = "--print-xml" if print_xml else "-s"
    result = cli(hpvmcreate, ["-P", "g", *argv, mode])
    assert result.code == 2
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("hpvmcreate: error: ")
    assert f"'{statement}'" in lines[0]
    assert words in lines[0]


@pytest.mark.parametrize(
    ("kind", "size", "words"),
    [("disk", 511, "needs at least 512"), ("dvd", 2047, "needs at least 2048")],
)
def test_backing_too_small(cli, tmp_path, kind, size, words):
    backing = tmp_path / "small.img"
    backing.write_bytes(b"\0" * size)
    statement = f"{kind}:avio_stor::file:{backing}"
    result = cli(hpvmcreate, ["-P", "g", "-a", statement, "-s"])
    assert (result.code, result.out) == (2, "")
    assert words in result.err and f"'{statement}'" in result.err


@pytest.mark.parametrize("kind, size", [("disk", 512), ("dvd", 2048)])
def test_backing_at_minimum_size_is_fine(cli, tmp_path, kind, size):
    backing = tmp_path / "ok.img"
    backing.write_bytes(b"\0" * size)
    result = cli(hpvmcreate, ["-P", "g", "-a", f"{kind}:avio_stor::file:{backing}", "-s"])
    assert result.code == 0, result.err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["-r", "lots"], "bad memory size 'lots'"),
        (["-r", "16M"], "below 32 MB"),
        (["-c", "two"], "not 'two'"),
        (["-c", "0"], "vcpus 0"),
        (["-O", "vms"], "unknown OS type 'vms'"),
        (["-B", "sometimes"], "'sometimes'"),
        (["-x", "ram_dyn_type=any"], "unrecognized arguments"),
    ],
)
def test_bad_options(cli, argv, words):
    result = cli(hpvmcreate, ["-P", "g", *argv, "-s"])
    assert (result.code, result.out) == (2, "")
    assert len(result.err.splitlines()) == 1 and words in result.err


def test_missing_name(cli):
    result = cli(hpvmcreate, ["-a", "disk:avio_stor::disk:/dev/sdb", "-s"])
    assert result.code == 2 and "-P" in result.err


def test_128_avio_devices_are_fine(cli):
    argv = many("disk:avio_stor::file:/var/lib/g/d{i}", 127)
    argv += ["-a", "network:avio_lan::vswitch:sw1"]
    result = cli(hpvmcreate, ["-P", "g", *argv, "--print-xml"])
    assert result.code == 0, result.err
    assert result.out.count("<disk ") == 127


def test_port_used_twice_in_a_guest(cli):
    argv = [
        "-a",
        "network:avio_lan::vswitch:sw1:portid:4",
        "-a",
        "network:lan::vswitch:sw1:portid:4",
    ]
    result = cli(hpvmcreate, ["-P", "g", *argv, "-s"])
    assert result.code == 2 and "port 4 of vswitch sw1 is already used" in result.err
