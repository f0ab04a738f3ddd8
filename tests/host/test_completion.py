"""Bash completion of guest names against the real libvirtd."""

from __future__ import annotations

import uuid

from agent.cli import hpvmcreate, hpvmremove
from tests.host.guestkit import hpvm
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
