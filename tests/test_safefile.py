"""Config files are read without trusting them (agent.safefile), on real files."""

from __future__ import annotations

import os
import threading

import pytest

from agent.cli import hpvmcreate
from agent.daemon.sources import IN_CLOSE_WRITE, IN_CREATE, IN_MODIFY, config_events
from agent.safefile import MAX_CONFIG_BYTES, UnsafeFile, read_config

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (file ownership)")


def refused(path, trusted: bool = True) -> str:
    with pytest.raises(UnsafeFile) as info:
        read_config(path, trusted=trusted)
    return info.value.reason


@root_only
def test_a_plain_root_file_is_read(tmp_path):
    path = tmp_path / "g.conf"
    path.write_text("-c 2\n")
    assert read_config(path) == "-c 2\n"


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "x.conf"
    os.mkfifo(fifo)
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(refused(fifo)), daemon=True)
    reader.start()
    reader.join(10)
    assert result == ["not a regular file (a FIFO)"]


def test_symlinks_are_not_followed_in_the_guests_directory(tmp_path):
    target = tmp_path / "real.conf"
    target.write_text("-c 2\n")
    (tmp_path / "link.conf").symlink_to(target)
    (tmp_path / "zero.conf").symlink_to("/dev/zero")
    assert refused(tmp_path / "link.conf") == "is a symbolic link (not followed)"
    assert refused(tmp_path / "zero.conf") == "is a symbolic link (not followed)"
    assert refused("/dev/zero", trusted=False) == "not a regular file (a character device)"


@root_only
def test_group_or_other_writable_and_foreign_files_are_refused(tmp_path):
    path = tmp_path / "g.conf"
    path.write_text("-c 2\n")
    path.chmod(0o664)
    assert refused(path) == "writable by group or others (mode 664)"
    path.chmod(0o644)
    os.chown(path, 65534, 0)
    assert refused(path) == "owned by uid 65534, not root"
    assert read_config(path, trusted=False) == "-c 2\n"  # hpvmcreate --config: the user's file


def test_size_limit_and_encoding(tmp_path):
    big = tmp_path / "big.conf"
    big.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    assert refused(big, trusted=False) == f"larger than {MAX_CONFIG_BYTES} bytes (1048577)"
    binary = tmp_path / "bin.conf"
    binary.write_bytes(b"-l caf\xff\n")
    assert refused(binary, trusted=False) == "not UTF-8 text (byte 0xff at offset 6)"
    nul = tmp_path / "nul.conf"
    nul.write_bytes(b"-l a\0b\n")
    assert refused(nul, trusted=False) == "not text (NUL byte at offset 4)"


def test_hpvmcreate_config_fifo_or_dev_zero_is_bad_input(cli, tmp_path):
    fifo = tmp_path / "x.conf"
    os.mkfifo(fifo)
    for source, kind in ((fifo, "a FIFO"), ("/dev/zero", "a character device")):
        result = cli(hpvmcreate, ["-P", "x", "--config", str(source), "-s"])
        assert result.code == 2
        assert result.err == f"hpvmcreate: error: {source}: not a regular file ({kind})\n"


def test_only_a_finished_file_is_an_event(tmp_path):
    """Created or written: not yet; closed after writing or renamed into place: yes."""
    path = tmp_path / "g.conf"
    assert config_events(IN_CREATE | IN_MODIFY, path) == []
    assert [e.deleted for e in config_events(IN_CLOSE_WRITE, path)] == [False]
    assert config_events(IN_CLOSE_WRITE, tmp_path / ".g.conf.tmp") == []


def test_write_atomic_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    from agent.safefile import write_atomic

    target = tmp_path / "devices.json"
    write_atomic(target, "first\n")
    write_atomic(target, "second\n", mode=0o640)
    assert target.read_text() == "second\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["devices.json"]


def test_write_atomic_makes_the_directory_and_keeps_the_mode_whatever_the_umask(tmp_path):
    from agent.safefile import write_atomic

    target = tmp_path / "state" / "pool.json"
    write_atomic(target, "one\n")
    write_atomic(target, "two\n" * 1000)
    assert target.read_text() == "two\n" * 1000
    assert [p.name for p in target.parent.iterdir()] == ["pool.json"]
    assert target.stat().st_mode & 0o777 == 0o644
