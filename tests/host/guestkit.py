"""The tiny test guest: building it, reading its console report, running the commands."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.conftest import REPO, command_env

BIN = Path(sys.executable).parent


def build_tiny_guest() -> tuple[Path, Path]:
    """Kernel and initramfs of the tiny guest (cached by guest/build.sh)."""
    out = subprocess.run(
        ["bash", str(REPO / "guest/build.sh")], check=True, capture_output=True, text=True
    ).stdout.split()
    return Path(out[0]), Path(out[1])


def hpvm(command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run an hpvm* console script; with check, a non-zero exit fails with its stderr."""
    result = subprocess.run(
        [str(BIN / command), *args],
        capture_output=True,
        text=True,
        env=command_env(AVIO_VIRT_TYPE="qemu"),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{command} {' '.join(args)} -> {result.returncode}: {result.stderr}")
    return result


def poll_for(
    text: Callable[[], str], pattern: str, timeout: float, since: int = 0
) -> re.Match | None:
    """The first match of `pattern` (multiline) in text() after `since`; None after `timeout` s."""
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern, re.MULTILINE)
    while True:
        match = regex.search(text(), since)
        if match:
            return match
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


class ConsoleLog:
    """The guest's serial console log, as virtlogd writes it."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def text(self) -> str:
        try:
            return self.path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def mark(self) -> int:
        return len(self.text())

    def wait_for(self, pattern: str, timeout: float = 60.0, since: int = 0) -> re.Match:
        match = poll_for(self.text, pattern, timeout, since)
        if match is None:
            tail = "\n".join(self.text().splitlines()[-30:])
            raise TimeoutError(f"no /{pattern}/ in {self.path} after {timeout} s:\n{tail}")
        return match


class Host:
    """Loop devices, bridges and guests made by one test module; all removed by cleanup()."""

    def __init__(self) -> None:
        # qemu runs as libvirt-qemu: media files must sit in a directory it can enter.
        self.tmp = Path(tempfile.mkdtemp(prefix="avio-test-"))
        self.tmp.chmod(0o755)
        self.loops: list[str] = []
        self.bridges: list[str] = []
        self.guests: list[str] = []

    def loop(self, size_mb: int = 8) -> str:
        image = self.tmp / f"disk{len(self.loops)}.img"
        with open(image, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        dev = subprocess.run(
            ["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True
        ).stdout.strip()
        self.loops.append(dev)
        return dev

    def bridge(self, name: str | None = None) -> str:
        name = name or f"avtbr{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        self.bridges.append(name)
        return name

    def define_guest(
        self,
        *statements: str,
        memory: str = "256M",
        cmdline: str = "",
        name: str | None = None,
        boot: str = "manual",
        connect: str | None = None,
    ) -> str:
        """Create (not start) a tiny guest with these resource statements; returns its name."""
        kernel, initrd = build_tiny_guest()
        name = name or self.guest_name()
        argv = ["-P", name, "-O", "linux", "-r", memory, "-B", boot]
        if connect:
            argv = ["--connect", connect, *argv]
        for statement in statements:
            argv += ["-a", statement]
        hpvm(
            "hpvmcreate",
            *argv,
            "--kernel",
            str(kernel),
            "--initrd",
            str(initrd),
            "--cmdline",
            f"console=ttyS0 quiet {cmdline}".strip(),
        )
        return name

    def boot_guest(
        self,
        *statements: str,
        memory: str = "256M",
        cmdline: str = "",
        name: str | None = None,
        timeout: float = 120.0,
    ) -> tuple[str, ConsoleLog]:
        """Create and start a tiny guest with these resource statements; wait for its report."""
        name = self.define_guest(*statements, memory=memory, cmdline=cmdline, name=name)
        log = ConsoleLog(f"/var/log/libvirt/qemu/{name}-console.log")
        hpvm("hpvmstart", "-P", name)
        log.wait_for(r"^AVIO ready", timeout=timeout)
        return name, log

    def guest_name(self) -> str:
        name = f"avt-{uuid.uuid4().hex[:8]}"
        self.guests.append(name)
        return name

    def cleanup(self) -> None:
        for name in self.guests:
            hpvm("hpvmremove", "-P", name, "-F", check=False)
            Path(f"/var/log/libvirt/qemu/{name}-console.log").unlink(missing_ok=True)
            Path(f"/var/log/libvirt/qemu/{name}.log").unlink(missing_ok=True)
        for dev in self.loops:
            subprocess.run(["losetup", "-d", dev], capture_output=True)
        for name in self.bridges:
            subprocess.run(["ip", "link", "del", name], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class AgentProcess:
    """avio-agent run as a process of the test; ready when it says READY=1 (sd_notify)."""

    def __init__(self, guests_dir: Path, log: Path, metrics_port: int) -> None:
        self.guests_dir = guests_dir
        self.log = log
        self.metrics_port = metrics_port
        self.process: subprocess.Popen | None = None

    def start(self, *extra: str, timeout: float = 30.0) -> None:
        notify_path = self.log.with_suffix(".notify")
        notify_path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify_path))
        sock.settimeout(timeout)
        env = command_env(NOTIFY_SOCKET=str(notify_path))
        with open(self.log, "a") as out:
            self.process = subprocess.Popen(
                [
                    str(BIN / "avio-agent"),
                    "--guests-dir",
                    str(self.guests_dir),
                    "--metrics",
                    f"127.0.0.1:{self.metrics_port}",
                    *extra,
                ],
                stdout=out,
                stderr=out,
                env=env,
            )
        try:
            while sock.recv(4096) != b"READY=1":
                pass
        except BaseException:
            self.kill()  # never left running behind a failed test
            raise
        finally:
            sock.close()
            notify_path.unlink(missing_ok=True)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def text(self) -> str:
        return self.log.read_text()

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0


def agent_rig(host: Host, boot_timeout: float = 120.0) -> Iterator[dict]:
    """Fixture body: a guest booted on a 64 MiB loop disk and an agent running for it."""
    agent = None
    try:
        disk = host.loop(64)
        guests_dir = host.tmp / "guests"
        guests_dir.mkdir()
        name, log = host.boot_guest(f"disk:avio_stor:0,0,3:disk:{disk}", timeout=boot_timeout)
        agent = AgentProcess(guests_dir, host.tmp / "agent.log", free_port())
        agent.start()
        yield {
            "host": host,
            "name": name,
            "log": log,
            "disk": disk,
            "image": host.tmp / "disk0.img",
            "agent": agent,
            "guests_dir": guests_dir,
            "size_mb": 64,
        }
    finally:
        if agent:
            agent.stop()


def agent_once(guests_dir: Path) -> subprocess.CompletedProcess:
    """One `avio-agent --once` reconcile of `guests_dir`; it must succeed."""
    result = subprocess.run(
        [str(BIN / "avio-agent"), "--once", "--guests-dir", str(guests_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=command_env(AVIO_VIRT_TYPE="qemu"),
    )
    assert result.returncode == 0, result.stderr
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def grow(image: Path, dev: str, size_mb: int) -> None:
    """Resize a loop device's backing file and tell the kernel (losetup -c: RESIZE=1)."""
    with open(image, "r+b") as f:
        f.truncate(size_mb * 1024 * 1024)
    subprocess.run(["losetup", "-c", dev], check=True)


def restart_libvirtd() -> None:
    """Restart libvirtd the way this host runs it (systemd unit, or a plain daemon)."""
    if Path("/run/systemd/system").exists():
        subprocess.run(["systemctl", "restart", "libvirtd"], check=True)
        return
    # The host's own libvirtd (its pid file), not other instances (tests/host/libvirt_pair.py).
    try:
        pid = int(Path("/run/libvirtd.pid").read_text())
        os.kill(pid, 15)
    except (OSError, ValueError):
        pid = None
    for _ in range(100):
        if pid is None or not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    subprocess.run(["libvirtd", "-d"], check=True)
    for _ in range(100):
        if (
            subprocess.run(
                ["virsh", "-q", "-c", "qemu:///system", "version"], capture_output=True
            ).returncode
            == 0
        ):
            return
        time.sleep(0.1)


LOOP_CTL_ADD = 0x4C80


def new_loop_node() -> str:
    """A fresh, unbound /dev/loopN that `losetup -f` (other users) will not hand out first."""
    import fcntl
    import random

    fd = os.open("/dev/loop-control", os.O_RDWR)
    try:
        for _ in range(100):
            number = random.randint(300, 9999)
            if not Path(f"/sys/block/loop{number}").exists():
                try:
                    fcntl.ioctl(fd, LOOP_CTL_ADD, number)
                except OSError:
                    continue
                for _ in range(50):  # udev makes the node
                    if Path(f"/dev/loop{number}").exists():
                        break
                    time.sleep(0.02)
                return f"/dev/loop{number}"
    finally:
        os.close(fd)
    raise RuntimeError("no free loop device number")
