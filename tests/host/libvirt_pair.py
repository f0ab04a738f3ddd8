"""Two more libvirt hosts on this machine, for migration: each a libvirtd (and its
virtlogd) in a mount namespace of its own, with its own /etc/libvirt,
/run/libvirt, /var/lib/libvirt and /var/cache/libvirt, its own host UUID, and a
TCP listener on 127.0.0.1 (no auth: loopback only) with its own migration ports.

They share the kernel with the host: bridges, taps, loop devices and files are
seen by both, as a SAN and a switch are by two real hosts. A directory can be
hidden from one of them (`hide`) to make storage it "cannot reach".
libvirt refuses `localhost` URIs and equal host UUIDs for migration (verified).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.conftest import REPO

CONF = """
listen_tls = 0
listen_tcp = 1
tcp_port = "{port}"
listen_addr = "127.0.0.1"
auth_tcp = "none"
host_uuid = "{uuid}"
"""
QEMU_CONF = """
migration_port_min = {low}
migration_port_max = {high}
"""
MOUNTS = (
    "etc:/etc/libvirt",
    "run:/run/libvirt",
    "lib:/var/lib/libvirt",
    "cache:/var/cache/libvirt",
)


class LibvirtHost:
    """One libvirtd in its own mount namespace, reached at `uri`."""

    def __init__(self, port: int, migration_ports: int, hook: Path | None = None) -> None:
        self.port = port
        self.uri = f"qemu+tcp://127.0.0.1:{port}/system"
        self.root = Path(tempfile.mkdtemp(prefix="avio-libvirt-"))
        self.hidden: list[str] = []
        etc = self.root / "etc"
        shutil.copytree("/etc/libvirt", etc, symlinks=True)
        for leftover in (
            "qemu/*.xml",
            "qemu/networks/*.xml",
            "qemu/networks/autostart/*",
            "qemu/autostart/*",
            "hooks/qemu.d/*",
        ):
            for path in etc.glob(leftover):
                path.unlink()
        with open(etc / "libvirtd.conf", "a") as conf:
            conf.write(CONF.format(port=port, uuid=uuid.uuid4()))
        with open(etc / "qemu.conf", "a") as conf:
            conf.write(QEMU_CONF.format(low=migration_ports, high=migration_ports + 15))
        if hook is not None:  # the avio-kvm qemu hook, installed as scripts/install.sh does
            subprocess.run(
                [str(REPO / "scripts/install-libvirt-hook.sh"), str(hook)],
                check=True,
                env={**os.environ, "AVIO_HOOK_TARGET": str(etc / "hooks/qemu.d/avio-kvm")},
            )
        for name in ("run", "lib/qemu", "cache"):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    def _namespace_script(self) -> str:
        lines = [f"mount --bind {self.root}/{m.split(':')[0]} {m.split(':')[1]}" for m in MOUNTS]
        lines += [f"mount -t tmpfs -o size=1m avio-hidden {path}" for path in self.hidden]
        lines += [
            f"virtlogd -d -p {self.root}/virtlogd.pid",
            f"exec libvirtd --listen -d -p {self.root}/libvirtd.pid",
        ]
        return "\n".join(["set -e", *lines])

    def hide(self, directory: Path | str) -> None:
        """Before start(): this host sees an empty directory there (storage it cannot reach)."""
        self.hidden.append(str(directory))

    def start(self, timeout: float = 60.0) -> None:
        subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                self._namespace_script(),
            ],
            check=True,
        )
        deadline = time.monotonic() + timeout
        while subprocess.run(
            ["virsh", "-q", "-c", self.uri, "version"], capture_output=True
        ).returncode:
            if time.monotonic() > deadline:
                raise TimeoutError(f"libvirtd on port {self.port} did not come up")
            time.sleep(0.1)

    def stop(self) -> None:
        """Every guest of this host destroyed, the daemons stopped, their files removed."""
        out = subprocess.run(
            ["virsh", "-q", "-c", self.uri, "list", "--all", "--name"],
            capture_output=True,
            text=True,
        ).stdout
        for name in out.split():
            subprocess.run(["virsh", "-c", self.uri, "destroy", name], capture_output=True)
            subprocess.run(
                ["virsh", "-c", self.uri, "undefine", "--managed-save", name],
                capture_output=True,
            )
        for daemon in ("libvirtd", "virtlogd"):
            pidfile = self.root / f"{daemon}.pid"
            try:
                pid = int(pidfile.read_text())
            except (OSError, ValueError):
                continue
            subprocess.run(["kill", f"-{signal.SIGTERM.value}", str(pid)], capture_output=True)
            for _ in range(100):
                if subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode:
                    break
                time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)
