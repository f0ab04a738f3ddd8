"""The device database against the real host (issue 13, item 3): real loop devices, the
real libvirtd, the real agent. Each test has a database of its own ($AVIO_STATE_DIR).

A restricted device is refused by hpvmcreate, hpvmmodify, hpvmstart and the agent,
under any of its names; lifting it lets it through; SHARE=YES lets two guests define
with one disk; the first use restricts the host's own devices; bad input is one line.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent.cli import hpvmcreate, hpvmdevmgmt, hpvmmodify, hpvmstart
from tests.conftest import command_env
from tests.host.conftest import domain_xml, mounted, sh
from tests.host.guestkit import BIN, agent_once


@pytest.fixture
def state(tmp_path, monkeypatch, host) -> Path:
    """A fresh device database directory for this test (commands and agents it runs)."""
    directory = tmp_path / "state"
    monkeypatch.setenv("AVIO_STATE_DIR", str(directory))
    return directory


@pytest.fixture
def image(tmp_path):
    """image(name, mb=8) -> path of a fresh sparse file."""

    def make(name: str, mb: int = 8) -> str:
        path = tmp_path / name
        with open(path, "wb") as f:
            f.truncate(mb * 1024 * 1024)
        return str(path)

    return make


@pytest.fixture
def loop_over(host):
    made: list[str] = []

    def make(path: str) -> str:
        dev = sh("losetup", "-f", "--show", path)
        made.append(dev)
        return dev

    yield make
    for dev in made:
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def devmgmt(cli, *argv: str):
    return cli(hpvmdevmgmt, list(argv))


def create(cli, name: str, *statements: str):
    argv = ["-P", name, "-O", "linux", "-r", "128M", "-B", "manual"]
    for statement in statements:
        argv += ["-a", statement]
    return cli(hpvmcreate, argv)


def refused(result, *words: str) -> None:
    assert result.code == 2, (result.code, result.err)
    assert len(result.err.splitlines()) == 1, result.err
    for word in words:
        assert word in result.err, result.err


def defined(name: str) -> bool:
    return subprocess.run(["virsh", "-q", "dominfo", name], capture_output=True).returncode == 0


def test_a_restricted_loop_device_is_refused_under_every_name(
    cli, state, guest_name, image, loop_over, tmp_path
):
    disk = image("restricted.img")
    dev = loop_over(disk)
    assert devmgmt(cli, "-a", f"rdev:{dev}").code == 0
    link = tmp_path / "by-a-link"
    link.symlink_to(dev)
    second = loop_over(disk)  # a second losetup of the same file: the same storage
    for statement in (
        f"disk:avio_stor::disk:{dev}",
        f"disk:avio_stor::disk:{link}",
        f"disk:avio_stor::disk:{second}",
        f"disk:scsi::file:{disk}",
        f"dvd:avio_stor::file:{disk}",
    ):
        name = guest_name()
        refused(create(cli, name, statement), "restricted", f"-d rdev:{dev}")
        assert not defined(name)
    # lifted through another of its names
    assert devmgmt(cli, "-d", f"rdev:{second}").code == 0
    name = guest_name()
    result = create(cli, name, f"disk:avio_stor::disk:{link}")
    assert result.code == 0, result.err


def test_hpvmmodify_refuses_a_restricted_device_to_add_or_insert(
    cli, state, guest_name, image, loop_over
):
    name = guest_name()
    first = image("first.iso", 1)
    assert create(cli, name, f"dvd:avio_stor:0,0,1:file:{first}").code == 0
    before = domain_xml(name)
    dev = loop_over(image("disk.img"))
    iso = image("other.iso", 1)
    assert devmgmt(cli, "-a", f"rdev:{dev}").code == 0
    assert devmgmt(cli, "-a", f"rdev:{iso}").code == 0
    refused(cli(hpvmmodify, ["-P", name, "-a", f"disk:avio_stor::disk:{dev}"]), "restricted")
    refused(cli(hpvmmodify, ["-P", name, "-m", f"dvd:avio_stor:0,0,1:file:{iso}"]), "restricted")
    assert domain_xml(name) == before
    assert devmgmt(cli, "-d", f"rdev:{iso}").code == 0
    result = cli(hpvmmodify, ["-P", name, "-m", f"dvd:avio_stor:0,0,1:file:{iso}"])
    assert result.code == 0, result.err


def test_hpvmstart_refuses_a_device_restricted_since_the_guest_was_defined(
    cli, state, guest_name, image, loop_over, tmp_path
):
    """The guest names a link to a loop device; the file is restricted while no loop
    device is over it; when the link leads to one again, the start is refused."""
    disk = image("later.img")
    link = tmp_path / "lun"
    link.symlink_to(loop_over(disk))
    name = guest_name()
    assert create(cli, name, f"disk:avio_stor::disk:{link}").code == 0
    sh("losetup", "-d", os.path.realpath(link))
    assert devmgmt(cli, "-a", f"rdev:{disk}").code == 0
    link.unlink()
    link.symlink_to(loop_over(disk))
    result = cli(hpvmstart, ["-P", name])
    refused(result, "restricted", f"-d rdev:{disk}")
    assert "running" not in sh("virsh", "domstate", name)


def test_the_agent_refuses_a_config_file_naming_a_restricted_disk(
    state, guest_name, image, loop_over, tmp_path
):
    guests = tmp_path / "guests"
    guests.mkdir()
    disk = image("agent.img")
    dev = loop_over(disk)
    disk2 = image("agent2.img")
    assert hpvmdevmgmt_run("-a", f"rdev:{dev}").returncode == 0
    name = guest_name()
    config = guests / f"{name}.conf"
    config.write_text(f"-O linux\n-r 128M\n-B manual\n-a disk:avio_stor::file:{disk2}\n")
    agent_once(guests)
    assert defined(name)
    before = domain_xml(name)
    # an edited file adding the restricted disk (under a second loop device): refused
    second = loop_over(disk)
    config.write_text(config.read_text() + f"-a disk:avio_stor::disk:{second}\n")
    log = agent_once(guests).stderr
    assert "restricted" in log, log
    assert domain_xml(name) == before
    # lifted: the agent plugs it
    assert hpvmdevmgmt_run("-d", f"rdev:{dev}").returncode == 0
    agent_once(guests)
    assert second in domain_xml(name)


def hpvmdevmgmt_run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "hpvmdevmgmt"), *argv], capture_output=True, text=True, env=command_env()
    )


def test_share_yes_lets_two_guests_define_with_one_disk(cli, state, guest_name, image, loop_over):
    dev = loop_over(image("shared.img"))
    a, b, c = guest_name(), guest_name(), guest_name()
    assert create(cli, a, f"disk:avio_stor::disk:{dev}").code == 0
    # a device a guest uses cannot be restricted
    refused(devmgmt(cli, "-a", f"rdev:{dev}"), f"used by guest '{a}'")
    assert devmgmt(cli, "-m", f"gdev:{dev}:attr:SHARE=NO").code == 0
    refused(create(cli, b, f"disk:avio_stor::disk:{dev}"), f"already used by guest '{a}'")
    assert not defined(b)
    assert devmgmt(cli, "-m", f"gdev:{dev}:attr:SHARE=YES").code == 0
    result = create(cli, b, f"disk:avio_stor::disk:{dev}")
    assert result.code == 0, result.err
    # never VIO and AVIO at once, even shared
    refused(create(cli, c, f"disk:scsi::disk:{dev}"), "VIO and AVIO")
    assert not defined(c)
    listed = devmgmt(cli, "-l", f"gdev:{dev}")
    assert listed.code == 0, listed.err
    assert listed.out.splitlines() == [
        f"{dev}:CONFIG=gdev,EXIST=YES,DEVTYPE=DISK,SHARE=YES:{a},{b}:"
    ]
    # un-sharing while two guests use it is refused, the entry unchanged
    refused(devmgmt(cli, "-m", f"gdev:{dev}:attr:SHARE=NO"), "shared by guests")
    refused(devmgmt(cli, "-d", f"gdev:{dev}"), "shared by guests")
    assert devmgmt(cli, "-l", f"gdev:{dev}").out == listed.out


def _root_device() -> int:
    source = sh("findmnt", "-n", "-o", "SOURCE", "/")
    if not source.startswith("/dev/"):
        pytest.skip(f"the root file system is on {source}, not a block device")
    return os.stat(source).st_rdev


def test_first_use_restricts_the_host_devices(cli, state, guest_name, loopdev, tmp_path):
    swap = loopdev()
    sh("mkswap", swap)
    sh("swapon", swap)
    mine = loopdev()
    try:
        with mounted(mine, tmp_path / "mnt"):
            result = devmgmt(cli, "-l", "rdev")  # the first use
    finally:
        sh("swapoff", swap)
    assert result.code == 0, result.err
    entries = {}
    for line in result.out.splitlines():
        path, attrs = line.split(":")[:2]
        entries[path.split(",")[0]] = attrs
        assert "CONFIG=rdev" in attrs and "AUTORDEV=YES" in attrs, line
    root = [p for p in entries if p.startswith("/dev/") and os.stat(p).st_rdev == _root_device()]
    assert root, result.out
    assert "DEVTYPE=DISK" in entries[root[0]]
    assert mine in entries and swap in entries, result.out
    nics = [p for p, attrs in entries.items() if "DEVTYPE=NIC" in attrs]
    default = sh("ip", "-o", "route", "show", "default")
    if default:
        nic = default.split(" dev ")[1].split()[0]
        assert f"/sys/class/net/{nic}" in nics, result.out
        if Path(f"/sys/class/net/{nic}/device").exists():  # known by its PCI function
            assert '"key": "pci:' in (state / "devices.json").read_text()
    # stored as text where the test put it, and honoured once the host lets go of them
    assert mine in (state / "devices.json").read_text()
    name = guest_name()
    refused(create(cli, name, f"disk:avio_stor::disk:{mine}"), "restricted by the host")
    assert devmgmt(cli, "-d", f"rdev:{mine}").code == 0
    assert create(cli, name, f"disk:avio_stor::disk:{mine}").code == 0


BAD = [
    [],
    ["-a"],
    ["-a", "bogus"],
    ["-a", "rdev:relative/path"],
    ["-a", "rdev:/dev/no-such-device"],
    ["-a", "rdev:/dev/vda:attr:SHARE=YES"],
    ["-a", "server:host2"],
    ["-l", "env"],
    ["-l", "all", "-a", "rdev:/dev/null"],
    ["-d", "rdev:/dev/no-such-device"],
    ["-d", "gdev:/dev/null"],
    ["-d", "gdev:all:depend:guest1"],
    ["-m", "gdev:/dev/null"],
    ["-m", "gdev:/dev/null:attr:SHARE=MAYBE"],
    ["-m", "gdev:/dev/null:attr:NAME=x\x1b[2J"],
    ["-m", "rdev:/dev/null:attr:SHARE=YES"],
    ["-m", "gdev:/dev/null:IGNOREWWID=YES"],
    ["-n", "gdev:/dev/a:/dev/b"],
    ["-I"],
    ["-r"],
    ["-v"],
    ["-S", "1G", "/tmp/x"],
    ["--bogus"],
    ["-l", "all", "extra"],
]


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a) or "nothing" for a in BAD])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(cli, state, argv):
    assert devmgmt(cli, "-l", "all").code == 0  # the database exists
    before = (state / "devices.json").read_bytes()
    result = devmgmt(cli, *argv)
    assert result.code == 2, (result.code, result.err)
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpvmdevmgmt: error: "), result.err
    assert "\x1b" not in result.err and result.out == ""
    assert (state / "devices.json").read_bytes() == before


def test_restricting_twice_or_a_restricted_guest_device_is_bad_input(cli, state, loopdev):
    dev = loopdev()
    assert devmgmt(cli, "-a", f"rdev:{dev}").code == 0
    before = (state / "devices.json").read_bytes()
    refused(devmgmt(cli, "-a", f"rdev:{dev}"), "already restricted")
    refused(devmgmt(cli, "-a", f"gdev:{dev}"), "is restricted")
    refused(devmgmt(cli, "-m", f"gdev:{dev}:attr:SHARE=YES"), "is restricted")
    assert (state / "devices.json").read_bytes() == before


def test_a_damaged_database_is_a_host_refusal_not_a_traceback(cli, state, guest_name, loopdev):
    dev = loopdev()
    state.mkdir()
    (state / "devices.json").write_text('{"version": 1, "entries": [')
    for argv in (["-l", "all"], ["-a", f"rdev:{dev}"]):
        result = subprocess.run(
            [str(BIN / "hpvmdevmgmt"), *argv], capture_output=True, text=True, env=command_env()
        )
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1 and "is not valid" in result.stderr
        assert "Traceback" not in result.stderr
    name = guest_name()
    result = create(cli, name, f"disk:avio_stor::disk:{dev}")
    assert result.code == 1 and "device database" in result.err, result.err
    assert not defined(name)


def test_nic_entries_name_one_interface(host):
    from agent.devices.database import identify

    assert identify("/sys/class/net/") is None
    assert identify("/sys/class/net/../../kernel") is None
    assert identify("/sys/class/net/lo").key == "net:lo"
