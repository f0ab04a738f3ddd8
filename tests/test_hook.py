"""The libvirt qemu hook's pure part: which tap gets which rule; its quiet operations."""

from __future__ import annotations

import subprocess

from tests.conftest import REPO, command_env
from translators.vswitch import PortRule, VSwitch, port_rules, render_network

LIVE_DOMAIN = """
<domain type='qemu'>
  <name>g1</name>
  <metadata>
    <hpvm:guest xmlns:hpvm="urn:avio-kvm:hpvm:1">
      <hpvm:network alias="ua-net-0-2" portid="5"/>
      <hpvm:network alias="ua-net-0-3" portid="6"/>
    </hpvm:guest>
  </metadata>
  <devices>
    <interface type='bridge'>
      <mac address='02:00:00:00:00:01'/><source bridge='sw1'/><target dev='vnet3'/>
      <model type='virtio'/><alias name='ua-net-0-2'/>
    </interface>
    <interface type='bridge'>
      <mac address='02:00:00:00:00:02'/><source bridge='sw1'/><target dev='vnet4'/>
      <model type='e1000'/><alias name='ua-net-0-3'/>
    </interface>
    <interface type='bridge'>
      <mac address='02:00:00:00:00:03'/><source bridge='sw1'/><target dev='vnet5'/>
      <model type='e1000'/><alias name='net2'/>
    </interface>
    <interface type='bridge'>
      <mac address='02:00:00:00:00:04'/><source bridge='virbr0'/><target dev='vnet6'/>
    </interface>
  </devices>
</domain>
"""


def test_each_nic_on_a_vswitch_gets_its_port_vlan():
    vswitches = {"sw1": VSwitch("sw1", 1, vlans={5: 10, 9: 20})}
    assert port_rules(LIVE_DOMAIN, vswitches) == [
        PortRule("vnet3", 10),
        PortRule("vnet4", None),  # port 6 has no VLAN
        PortRule("vnet5", None),  # plugged by someone else: no port id, untagged
    ]  # virbr0 is not a vswitch of ours: left alone


def test_a_stopped_domain_has_no_taps():
    stopped = LIVE_DOMAIN.replace("<target dev='vnet3'/>", "")
    assert [r.tap for r in port_rules(stopped, {"sw1": VSwitch("sw1", 1)})] == ["vnet4", "vnet5"]


def hook(*args: str, networks, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(REPO / ".venv/bin/avio-libvirt-hook"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=command_env("/usr/bin:/bin", AVIO_LIBVIRT_NETWORKS=str(networks)),
    )


def test_other_operations_and_guests_off_vswitches_pass(tmp_path):
    (tmp_path / "sw9.xml").write_text(render_network(VSwitch("sw9", 1)))
    (tmp_path / "broken.xml").write_text("<network><name>x</nam")  # not ours to judge
    for operation in ("start", "stopped", "release", "migrate", "restore", "reconnect"):
        assert hook("g1", operation, "begin", "-", networks=tmp_path).returncode == 0
    result = hook("g1", "started", "begin", "-", networks=tmp_path, stdin=LIVE_DOMAIN)
    assert result.returncode == 0 and result.stderr == ""


def test_a_guest_migrated_away_does_not_start_here(tmp_path):
    """hpvmmigrate without -D leaves the definition not runnable: virsh start is refused."""
    marked = LIVE_DOMAIN.replace(
        "</metadata>",
        '<avio-migration:runnable xmlns:avio-migration="urn:avio-kvm:migration:1" '
        'state="disabled" reason="migrated to qemu+ssh://host2/system"/></metadata>',
    )
    result = hook("g1", "prepare", "begin", "-", networks=tmp_path, stdin=marked)
    assert result.returncode == 1
    assert result.stderr == (
        "avio-libvirt-hook: guest g1: not runnable here: migrated to qemu+ssh://host2/system\n"
    )
