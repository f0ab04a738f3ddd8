"""Bash completion of guest names against the real libvirtd."""

from __future__ import annotations

import uuid

from agent.cli import hpvmcreate, hpvmremove
from tests.host.guestkit import BIN, hpvm
from tests.test_docs import complete


def test_guest_names_complete_after_p(cli, guest_name):
    name = guest_name()
    assert cli(hpvmcreate, ["-P", name, "-O", "linux", "-r", "64M"]).code == 0
    assert name in complete("hpvmstart -P avt-")
    assert complete(f"hpvmstatus -P {name}") == [name]
    assert cli(hpvmremove, ["-P", name]).code == 0
    assert name not in complete("hpvmstart -P avt-")


def test_vswitch_names_complete_after_s(host):
    name = f"avtsw{uuid.uuid4().hex[:6]}"
    try:
        hpvm("hpvmnet", "-c", "-S", name)
        assert name in complete("hpvmnet -S avtsw")
        assert complete(f"hpvmnet -b -S {name}") == [name]
    finally:
        hpvm("hpvmnet", "-d", "-F", "-S", name, check=False)
    assert name not in complete("hpvmnet -S avtsw")


def test_modify_d_offers_the_guests_own_statements(cli, guest_name, loopdev):
    name, dev = guest_name(), loopdev()
    statement = f"disk:avio_stor:0,0,3:disk:{dev}"
    assert cli(hpvmcreate, ["-P", name, "-r", "64M", "-a", statement]).code == 0
    path = f"{BIN}:/usr/bin:/bin"  # hpvmstatus, as installed
    # bash replaces what follows the last ':' of the word typed
    assert complete(f"hpvmmodify -P {name} -d disk:avio_stor:0,", path=path) == [
        f"0,0,3:disk:{dev}"
    ]
    offered = complete(f"hpvmmodify -P {name} -m ", path=path)
    assert offered[0] == statement and "disk:" in offered
    assert complete("hpvmmodify -P avt-none -d disk:", path=path) == ["avio_stor:", "scsi:"]
