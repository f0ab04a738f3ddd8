"""The agent answers the libvirt hook (agent/daemon/hook_service.py), as the hook itself
would: the same storage checks, from the same files, and every refusal left to the
hook, which gives libvirt its own message. Other guests' files are parsed again only
when they change. Only root reaches the socket."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from agent.daemon.hook_service import HookService
from agent.hook_client import ask
from agent.storage.startcheck import claims_from_files
from tests.conftest import REPO, command_env
from tests.host.conftest import domain_xml, require_host
from tests.host.guestkit import AgentProcess, free_port
from tests.host.test_start_checks import create, own_loop, rebind

pytestmark = pytest.mark.integration

HOOK = REPO / ".venv/bin/avio-libvirt-hook"
PYTHON = (str(REPO / ".venv/bin/python"), "-I", "-S")
CLIENT = (*PYTHON, str(REPO / "agent/hook_client.py"))  # as scripts/libvirt-qemu-hook runs it


@pytest.fixture
def service(tmp_path, monkeypatch):
    """The agent's hook service, in this process, reading the test's domains directory."""
    domains, networks = tmp_path / "domains", tmp_path / "networks"
    domains.mkdir()
    networks.mkdir()
    monkeypatch.setenv("AVIO_LIBVIRT_DOMAINS", str(domains))
    monkeypatch.setenv("AVIO_LIBVIRT_NETWORKS", str(networks))
    made = HookService(tmp_path / "hook.sock")
    assert made.start()
    assert made.warmed.wait(10)
    yield made
    made.stop()


def client(service: HookService, hook: Path, name: str, xml: str) -> subprocess.CompletedProcess:
    """The hook as libvirt runs it (scripts/libvirt-qemu-hook): the client, then `hook`."""
    return subprocess.run(
        [*CLIENT, str(hook), name, "prepare", "begin", "-"],
        input=xml,
        capture_output=True,
        text=True,
        env=command_env(
            "/usr/bin:/bin",
            AVIO_HOOK_SOCKET=str(service.path),
            AVIO_LIBVIRT_DOMAINS=os.environ["AVIO_LIBVIRT_DOMAINS"],
            AVIO_LIBVIRT_NETWORKS=os.environ["AVIO_LIBVIRT_NETWORKS"],
        ),
    )


def test_the_agent_passes_safe_storage_and_leaves_a_conflict_to_the_hook(
    cli, host, service, tmp_path
):
    a, b = host.guest_name(), host.guest_name()
    image = host.tmp / "shared.img"
    with open(image, "wb") as f:
        f.truncate(8 * 1024 * 1024)
    create(cli, a, f"disk:avio_stor::disk:{host.loop()}", f"disk:avio_stor::file:{image}")
    dev = own_loop(host)
    create(cli, b, f"disk:avio_stor::disk:{dev}")
    domains = Path(os.environ["AVIO_LIBVIRT_DOMAINS"])
    (domains / f"{a}.xml").write_text(domain_xml(a))  # as libvirt keeps it in /etc/libvirt/qemu
    failing = tmp_path / "must-not-run"
    failing.write_text("#!/bin/sh\nexit 3\n")
    failing.chmod(0o755)
    result = client(service, failing, b, domain_xml(b))
    assert result.returncode == 0, result.stderr  # the agent answered: the hook never ran
    rebind(dev, image)  # b's device now is a's file
    assert service.answer("prepare", b, domain_xml(b)) == "local"
    result = client(service, HOOK, b, domain_xml(b))
    assert result.returncode == 1
    assert result.stderr.startswith(f"avio-libvirt-hook: guest {b}: ")
    assert f"already used by guest '{a}'" in result.stderr
    # The agent's view of the others is the hook's, file for file.
    ours = claims_from_files([domains], exclude=b, read=service.saved.read)
    theirs = claims_from_files([domains], exclude=b)
    assert len(ours.backings) == 2  # a's two disks
    for field in ("backings", "backing_adapters", "attached", "shared"):
        assert getattr(ours, field) == getattr(theirs, field), field


def test_other_guests_files_are_parsed_again_only_when_they_change(cli, host, service):
    domains = Path(os.environ["AVIO_LIBVIRT_DOMAINS"])
    names = [host.guest_name() for _ in range(3)]
    for name in names:
        create(cli, name, f"disk:avio_stor::disk:{host.loop()}")
        (domains / f"{name}.xml").write_text(domain_xml(name))
    starting = names[0]
    xml = domain_xml(starting)
    service.warm()  # as the agent does when it starts serving
    assert service.saved.reads == 3
    assert service.answer("prepare", starting, xml) == "ok"
    assert service.saved.reads == 3
    for _ in range(3):
        assert service.answer("prepare", starting, xml) == "ok"
    assert service.saved.reads == 3
    changed = domains / f"{names[1]}.xml"
    changed.write_text(changed.read_text() + "\n")
    assert service.answer("prepare", starting, xml) == "ok"
    assert service.saved.reads == 4
    changed.unlink()
    assert service.answer("prepare", starting, xml) == "ok"
    assert str(changed) not in service.saved._kept


def test_only_root_reaches_the_socket(service):
    assert stat.S_IMODE(os.stat(service.path).st_mode) == 0o600
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); from agent.hook_client import ask; "
        "print(ask(sys.argv[2], 'prepare', 'g', b'<domain/>'))"
    )
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    result = subprocess.run(
        [*nobody, *PYTHON, "-c", probe, str(REPO), str(service.path)],
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "None", result.stderr
    assert ask(str(service.path), "prepare", "g", b"<domain><name>g</name></domain>") == b"ok\n"


def test_the_agent_serves_the_socket_while_it_runs(tmp_path):
    require_host()
    sock = tmp_path / "run" / "hook.sock"
    agent = AgentProcess(tmp_path / "guests", tmp_path / "agent.log", free_port())
    try:
        agent.start("--hook-socket", str(sock), "--no-startup-reconcile")
        assert ask(str(sock), "started", "g", b"<domain><name>g</name></domain>") == b"ok\n"
        assert ask(str(sock), "release", "g", b"") == b"local\n"
        other = AgentProcess(tmp_path / "guests", tmp_path / "other.log", free_port())
        other.start("--hook-socket", str(sock), "--no-startup-reconcile")
        other.stop()  # it did not take the socket from the first one
        assert "served by another process" in other.text()
        assert ask(str(sock), "started", "g", b"<domain><name>g</name></domain>") == b"ok\n"
        agent.kill()  # SIGKILL leaves the socket file: the next agent replaces it
        assert sock.exists() and ask(str(sock), "started", "g", b"") is None
        agent.start("--hook-socket", str(sock), "--no-startup-reconcile")
        assert ask(str(sock), "started", "g", b"<domain><name>g</name></domain>") == b"ok\n"
    finally:
        agent.stop()
    assert not sock.exists()
