"""The host setup script (also the Vagrant provisioner) leaves a working libvirtd."""

from __future__ import annotations

import subprocess

from agent.cli import hpvmcreate, hpvmstart, hpvmstatus, hpvmstop
from tests.conftest import REPO


def test_setup_script_is_idempotent_and_quiet(host):
    result = subprocess.run(
        ["bash", str(REPO / "scripts/setup-host.sh")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_a_guest_defines_and_starts_after_setup(cli, host, guest_name, bridge):
    subprocess.run(["bash", str(REPO / "scripts/setup-host.sh")], check=True)
    name = guest_name()
    result = cli(
        hpvmcreate,
        ["-P", name, "-r", "64M", "-B", "manual", "-a", f"network:avio_lan::vswitch:{bridge()}"],
    )
    assert result.code == 0, result.err
    assert cli(hpvmstart, ["-P", name]).code == 0
    assert "On (OS)" in cli(hpvmstatus, ["-P", name]).out
    assert cli(hpvmstop, ["-P", name, "-F"]).code == 0
    assert " Off" in cli(hpvmstatus, ["-P", name]).out
