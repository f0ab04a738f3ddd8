"""What vagrant/Vagrantfile asks of vagrant-libvirt, and nested-host.sh's ssh target.

The Vagrantfile is evaluated by Ruby with a recorder standing in for
Vagrant's configuration object (it records every setting); `make vagrant-test`
brings the VM up for real.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

RECORDER = r"""
require "json"
require "pathname"
LOG = []
class Recorder
  def initialize(path) = @path = path
  def respond_to_missing?(*) = true
  def method_missing(name, *args, **kw, &block)
    full = [@path, name.to_s].reject(&:empty?).join(".")
    return LOG << [full.chomp("="), args.first, {}] && args.first if full.end_with?("=")
    return Recorder.new(full) if args.empty? && kw.empty? && block.nil?
    LOG << [full, args.map { |a| a.is_a?(Symbol) ? a.to_s : a }, kw]
    block&.call(Recorder.new(args.first.to_s))
    nil
  end
end
module Vagrant
  def self.user_data_path = Pathname.new(ENV.fetch("VAGRANT_HOME"))
  def self.configure(_version) = yield(Recorder.new(""))
end
load ARGV[0]
puts JSON.generate(LOG)
"""


def settings(tmp_path: Path, with_box: bool = False, **env: str) -> list:
    if not shutil.which("ruby"):
        pytest.fail("ruby is missing: make test installs vagrant (setup-host.sh --test-tools)")
    home = tmp_path / ("home-with-box" if with_box else "home")
    (home / "boxes").mkdir(parents=True, exist_ok=True)
    if with_box:
        (home / "boxes" / "avio-kvm-VAGRANTSLASH-nested").mkdir(exist_ok=True)
    script = tmp_path / "recorder.rb"
    script.write_text(RECORDER)
    result = subprocess.run(
        ["ruby", str(script), str(REPO / "vagrant" / "Vagrantfile")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "VAGRANT_HOME": str(home), **env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def value(log: list, name: str):
    found = [entry[1] for entry in log if entry[0] == name]
    assert len(found) == 1, (name, log)
    return found[0]


def calls(log: list, name: str) -> list:
    return [(entry[1], entry[2]) for entry in log if entry[0] == name]


def qemuargs(log: list) -> list[str]:
    return [kw["value"] for _, kw in calls(log, "libvirt.qemuargs")]


def test_the_box_is_ours_once_added_else_the_public_one(tmp_path):
    assert value(settings(tmp_path, with_box=True), "vm.box") == "avio-kvm/nested"
    assert value(settings(tmp_path), "vm.box") == "debian/bookworm64"
    chosen = settings(tmp_path, with_box=True, AVIO_VAGRANT_BOX="debian/bookworm64")
    assert value(chosen, "vm.box") == "debian/bookworm64"


def test_the_management_network_is_link_local(tmp_path):
    for with_box, mode in ((True, "none"), (False, "nat")):
        log = settings(tmp_path, with_box=with_box)
        network = ipaddress.ip_network(value(log, "libvirt.management_network_address"))
        assert network.prefixlen == 24 and network.is_link_local
        assert value(log, "libvirt.management_network_mode") == mode


@pytest.mark.parametrize("virt_type", ["kvm", "qemu"])
def test_the_driver_is_the_projects_choice(tmp_path, virt_type):
    log = settings(tmp_path, with_box=True, AVIO_VIRT_TYPE=virt_type)
    assert value(log, "libvirt.driver") == virt_type
    args = qemuargs(log)
    if virt_type == "qemu":
        assert args[args.index("-cpu") + 1] == "max"
    else:
        assert value(log, "libvirt.cpu_mode") == "host-passthrough"
        assert "-cpu" not in args


def test_the_hardware_is_l1s(tmp_path):
    log = settings(tmp_path, with_box=True)
    assert value(log, "libvirt.machine_type") == "q35"
    args = qemuargs(log)
    iommu = args.index("intel-iommu,intremap=on")
    nic = args.index("e1000e,netdev=pt,bus=pcie.0,addr=0x10")
    assert args[iommu - 1] == args[nic - 1] == "-device" and iommu < nic
    netdev = args[args.index("-netdev") + 1]
    assert "restrict=on" in netdev and "net=169.254.121.0/24" in netdev
    disks = calls(log, "libvirt.storage")
    assert [(a, kw["bus"]) for a, kw in disks] == [(["file"], "virtio")] * 2
    provision = calls(log, "vm.provision")
    assert [(a, kw["path"]) for a, kw in provision] == [
        (["setup-host"], str(REPO / "scripts" / "setup-host.sh"))
    ]


def nested_host(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "nested-host.sh"), *args],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},
    )


def test_nested_host_image_dir_is_the_recipe_hash():
    import hashlib

    digest = hashlib.sha256((REPO / "scripts/nested/image.sh").read_bytes()).hexdigest()
    result = nested_host("image-dir")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(REPO / ".cache" / "nested" / digest[:16])


def test_nested_host_ssh_target(tmp_path):
    missing = nested_host("--ssh-config", str(tmp_path / "none"), "exec", "true")
    assert missing.returncode == 2 and "no ssh config" in missing.stderr
    config = tmp_path / "ssh-config"
    config.write_text("Host default\n  HostName 169.254.122.9\n")
    for command in ("up", "down", "test", "build"):
        refused = nested_host("--ssh-config", str(config), command)
        assert refused.returncode == 2 and "--ssh-config FILE" in refused.stderr, command
