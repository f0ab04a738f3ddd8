"""Event sources feeding the agent: udev block and SCSI events, and guest config files.

Each source runs in its own thread and hands events to `put` (which never
blocks). A source that loses events (the udev netlink buffer overflowed, the
inotify queue overflowed) says so with a `Resync` event: the agent then
reconciles, since it cannot know what it missed. Neither thread ever dies of
an error: it logs, counts it and goes on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyudev

from agent.daemon import metrics

log = logging.getLogger("avio-agent")
Put = Callable[[object], None]
UDEV_BUFFER = 32 * 1024 * 1024


@dataclass(frozen=True)
class BlockEvent:
    """A uevent of a block device, stamped when the agent received it."""

    action: str
    devnum: int
    node: str | None
    resize: bool
    seen: float  # time.monotonic()


@dataclass(frozen=True)
class PciEvent:
    """A uevent of a PCI function (`add`, `remove`, `bind`, ...), by its address."""

    action: str
    address: str  # DDDD:BB:DD.F
    seen: float  # time.monotonic()


@dataclass(frozen=True)
class ScsiEvent:
    """A uevent of a SCSI device (`scsi_device`: a tape, changer, disk... at H:C:T:L)."""

    action: str
    hctl: str
    seen: float  # time.monotonic()


@dataclass(frozen=True)
class ConfigEvent:
    path: Path
    deleted: bool


@dataclass(frozen=True)
class Resync:
    """A source lost events: everything must be reconciled."""

    source: str


def udev_running() -> bool:
    return os.path.exists("/run/udev/control")


def _open_monitor(source: str, buffer_size: int) -> pyudev.Monitor:
    monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source)
    monitor.filter_by("block")
    monitor.filter_by("pci")  # DIO functions leaving and returning
    monitor.filter_by("scsi", "scsi_device")  # attached (pass-through) devices
    monitor.set_receive_buffer_size(buffer_size)
    monitor.start()
    return monitor


def start_udev_source(put: Put, buffer_size: int = UDEV_BUFFER) -> str:
    """Forward block (and PCI) uevents to `put` from a thread; returns the netlink source used.

    With udevd running, events come after its rules ran (so /dev/disk/by-id links
    exist); without it, straight from the kernel. When the monitor fails (ENOBUFS:
    the kernel dropped events because the buffer was full), it is re-opened and a
    `Resync` is sent.
    """
    source = "udev" if udev_running() else "kernel"
    first = _open_monitor(source, buffer_size)

    def pump() -> None:
        monitor: pyudev.Monitor | None = first
        while True:
            try:
                if monitor is None:
                    monitor = _open_monitor(source, buffer_size)
                    log.warning("udev monitor re-opened; reconciling (events were lost)")
                    put(Resync("udev"))
                device = monitor.poll()
                if device is not None and device.subsystem == "pci":
                    put(PciEvent(device.action or "change", device.sys_name, time.monotonic()))
                    continue
                if device is not None and device.subsystem == "scsi":
                    if device.action in ("add", "remove"):
                        put(ScsiEvent(device.action, device.sys_name, time.monotonic()))
                    continue
                if device is None or not device.device_number:
                    continue
                put(
                    BlockEvent(
                        action=device.action or "change",
                        devnum=device.device_number,
                        node=device.device_node,
                        resize=device.properties.get("RESIZE") == "1",
                        seen=time.monotonic(),
                    )
                )
            except Exception as err:  # the thread must survive anything
                metrics.SOURCE_ERRORS.labels("udev").inc()
                reason = os.strerror(err.errno) if isinstance(err, OSError) and err.errno else err
                log.error("udev monitor failed: %s; re-opening it", reason)
                monitor = None
                time.sleep(0.1)

    threading.Thread(target=pump, name="udev", daemon=True).start()
    return source


# ---- config files: inotify ----------------------------------------------------------

IN_MODIFY = 0x002  # not watched: the writer is not done
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100  # not watched: the writer is not done
IN_DELETE = 0x200
IN_Q_OVERFLOW = 0x4000
IN_ISDIR = 0x40000000
IN_CLOEXEC = 0o2000000
WATCHED = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE
_EVENT = struct.Struct("iIII")


def is_config_name(name: str) -> bool:
    return name.endswith(".conf") and not name.startswith(".")


def config_events(mask: int, path: Path) -> list[ConfigEvent]:
    """What one inotify event means for the agent (pure).

    A file counts only once its writer is done: closed after writing, or renamed
    into place. Created or still being written: nothing yet.
    """
    if mask & IN_ISDIR or not is_config_name(path.name):
        return []
    if mask & (IN_CLOSE_WRITE | IN_MOVED_TO):
        return [ConfigEvent(path, deleted=False)]
    if mask & (IN_MOVED_FROM | IN_DELETE):
        return [ConfigEvent(path, deleted=True)]
    return []


def start_config_source(directory: Path, put: Put) -> None:
    """Watch `directory` for config files (inotify: IN_CLOSE_WRITE, IN_MOVED_TO, ...)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fd = libc.inotify_init1(IN_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1 failed")
    if libc.inotify_add_watch(fd, os.fsencode(directory), WATCHED) < 0:
        code = ctypes.get_errno()
        os.close(fd)
        raise OSError(code, f"cannot watch {directory}: {os.strerror(code)}")

    def pump() -> None:
        while True:
            try:
                data = os.read(fd, 64 * 1024)
            except OSError as err:
                if err.errno == errno.EINTR:
                    continue
                metrics.SOURCE_ERRORS.labels("config").inc()
                log.error("inotify on %s failed: %s", directory, err.strerror)
                time.sleep(1.0)
                continue
            offset = 0
            while offset + _EVENT.size <= len(data):
                _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
                offset += _EVENT.size + length
                if mask & IN_Q_OVERFLOW:
                    metrics.SOURCE_ERRORS.labels("config").inc()
                    log.warning("inotify queue overflowed; reconciling")
                    put(Resync("config"))
                    continue
                name = os.fsdecode(raw.split(b"\0", 1)[0])
                for event in config_events(mask, directory / name):
                    put(event)

    threading.Thread(target=pump, name="config", daemon=True).start()
