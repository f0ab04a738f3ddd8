"""One storage under two names is one storage (issue 10, item 3), against a real libvirtd.

A file, a symlink to it, `/x//name` and the loop device over it are one
storage; so are a disk and its partitions. Refusals exit 2, one line, and
change no definition.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest

from agent.cli import hpvmcreate, hpvmmodify
from tests.host.conftest import domain_xml, sh
from tests.host.guestkit import BIN, agent_once


@pytest.fixture
def image(tmp_path, host):
    """image(name) -> path of a fresh 8 MiB sparse file in a test directory."""

    def make(name: str) -> str:
        path = tmp_path / name
        with open(path, "wb") as f:
            f.truncate(8 * 1024 * 1024)
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
        sh("losetup", "-d", dev)


def create(cli, name: str, *statements: str):
    argv = ["-P", name, "-O", "linux", "-r", "128M"]
    for statement in statements:
        argv += ["-a", statement]
    return cli(hpvmcreate, argv)


def refused(result, words: str) -> None:
    assert result.code == 2, result.err
    assert len(result.err.splitlines()) == 1 and words in result.err, result.err


def shared_by_two_guests(cli, guest_name, image, loop_over, first: str, second: str) -> None:
    """Guest a names shared.img as `first`, guest b as `second` (file: the file; disk: a loop
    device over it, made when named); b is refused as sharing a's storage."""
    shared = image("shared.img")

    def statement(kind: str) -> str:
        return f"disk:avio_stor::{kind}:{shared if kind == 'file' else loop_over(shared)}"

    a, b = guest_name(), guest_name()
    assert create(cli, a, statement(first)).code == 0
    result = create(cli, b, statement(second))
    refused(result, f"already used by guest '{a}'")


def test_a_loop_device_over_another_guests_file_is_refused(cli, guest_name, image, loop_over):
    shared_by_two_guests(cli, guest_name, image, loop_over, "file", "disk")


def test_the_file_under_another_guests_loop_device_is_refused(cli, guest_name, image, loop_over):
    shared_by_two_guests(cli, guest_name, image, loop_over, "disk", "file")


def test_one_file_twice_in_a_guest_through_a_symlink_is_refused(cli, guest_name, image, tmp_path):
    disk = image("d1.img")
    (tmp_path / "d1-link.img").symlink_to(disk)
    name = guest_name()
    result = create(
        cli, name, f"disk:avio_stor::file:{disk}", f"disk:avio_stor::file:{tmp_path}/d1-link.img"
    )
    refused(result, "already used in this guest")


def test_modify_refuses_a_disk_the_guest_has_under_another_spelling(cli, guest_name, image):
    disk = image("d1.img")
    name = guest_name()
    assert create(cli, name, f"disk:avio_stor::file:{disk}").code == 0
    before = domain_xml(name)
    result = cli(hpvmmodify, ["-P", name, "-a", f"disk:avio_stor::file:{disk.replace('/', '//')}"])
    refused(result, "already used in this guest")
    assert domain_xml(name) == before


def test_delete_finds_a_disk_by_identity(cli, guest_name, image, tmp_path):
    disk = image("d1.img")
    name = guest_name()
    assert create(cli, name, f"disk:avio_stor::file:{disk}").code == 0
    (tmp_path / "alias.img").symlink_to(disk)
    result = cli(hpvmmodify, ["-P", name, "-d", f"disk:avio_stor::file:{tmp_path}/alias.img"])
    assert result.code == 0, result.err
    assert disk not in domain_xml(name)


def test_a_config_naming_a_disk_by_another_name_changes_nothing(host, image, tmp_path):
    """The agent's plan compares by identity too: no unplug/replug of the same disk."""
    disk = image("d1.img")
    (tmp_path / "alias.img").symlink_to(disk)
    guests = tmp_path / "guests"
    guests.mkdir()
    name = f"avt-{uuid.uuid4().hex[:8]}"
    config = guests / f"{name}.conf"
    config.write_text(f"-O linux\n-r 128M\n-B manual\n-a disk:avio_stor::file:{disk}\n")

    try:
        agent_once(guests)
        before = domain_xml(name)
        config.write_text(config.read_text().replace(disk, f"{tmp_path}/alias.img"))
        log = agent_once(guests).stderr
        assert "detach" not in log and "attach" not in log, log
        assert domain_xml(name) == before
    finally:
        subprocess.run([str(BIN / "hpvmremove"), "-P", name, "-F"], capture_output=True)
