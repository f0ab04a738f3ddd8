"""The agent's systemd unit: notify type, ordering, restart, hardening; systemd-analyze verify."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

UNIT = REPO / "systemd" / "avio-agent.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNIT)
    return parser


def test_unit_contract():
    u = unit()
    assert u["Service"]["Type"] == "notify"
    assert u["Service"]["Restart"] == "on-failure"
    assert "libvirtd.service" in u["Unit"]["After"] and "libvirtd.service" in u["Unit"]["Wants"]
    assert u["Service"]["CapabilityBoundingSet"] == "CAP_NET_ADMIN CAP_BPF"
    assert u["Service"]["ExecStart"].startswith("/usr/local/bin/avio-agent ")


def test_unit_lets_the_agent_read_block_devices_and_open_kvm():
    """DevicePolicy=closed alone denies /dev/sdX (sizes) and /dev/kvm (KVM vs TCG)."""
    lines = UNIT.read_text().splitlines()
    allowed = [x.split("=", 1)[1] for x in lines if x.startswith("DeviceAllow=")]
    assert "DevicePolicy=closed" in lines
    assert sorted(allowed) == ["/dev/kvm rw", "block-* r"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_systemd_analyze_verify(tmp_path):
    # The unit as installed names /usr/local/bin/avio-agent (scripts/install.sh);
    # here it is checked against this checkout's agent instead.
    agent = Path(sys.executable).parent / "avio-agent"
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/avio-agent", str(agent)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_the_lock_directory_is_writable_and_outlives_the_agent():
    u = unit()["Service"]
    assert u["ProtectSystem"] == "strict"
    assert u["RuntimeDirectory"] == "avio" and u["RuntimeDirectoryPreserve"] == "yes"


def test_the_device_database_directory_is_writable():
    """ProtectSystem=strict makes /var read-only; the agent makes the database at first use."""
    u = unit()["Service"]
    assert u["StateDirectory"] == "libvirt/avio-kvm"
