"""Event sources feeding the agent's queue: udev block events and guest config files."""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pyudev
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer


@dataclass(frozen=True)
class BlockEvent:
    """A uevent of a block device, stamped when the agent received it."""

    action: str
    devnum: int
    node: str | None
    resize: bool
    seen: float  # time.monotonic()


@dataclass(frozen=True)
class ConfigEvent:
    path: Path
    deleted: bool


def udev_running() -> bool:
    return os.path.exists("/run/udev/control")


def start_udev_source(events: queue.Queue) -> str:
    """Forward block uevents to `events` from a thread; returns the netlink source used.

    With udevd running, events come after its rules ran (so /dev/disk/by-id links
    exist); without it, straight from the kernel.
    """
    source = "udev" if udev_running() else "kernel"
    monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source)
    monitor.filter_by("block")
    monitor.set_receive_buffer_size(32 * 1024 * 1024)
    monitor.start()

    def pump() -> None:
        while True:
            device = monitor.poll()
            if device is None or not device.device_number:
                continue
            events.put(
                BlockEvent(
                    action=device.action or "change",
                    devnum=device.device_number,
                    node=device.device_node,
                    resize=device.properties.get("RESIZE") == "1",
                    seen=time.monotonic(),
                )
            )

    threading.Thread(target=pump, name="udev", daemon=True).start()
    return source


class _ConfigHandler(FileSystemEventHandler):
    def __init__(self, events: queue.Queue) -> None:
        self.events = events

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        if event.event_type == "moved":
            self._put(Path(os.fsdecode(event.src_path)), deleted=True)
            self._put(Path(os.fsdecode(event.dest_path)), deleted=False)
        else:
            self._put(Path(os.fsdecode(event.src_path)), deleted=event.event_type == "deleted")

    def _put(self, path: Path, deleted: bool) -> None:
        if path.suffix == ".conf" and not path.name.startswith("."):
            self.events.put(ConfigEvent(path, deleted))


def start_config_source(directory: Path, events: queue.Queue) -> Observer:
    """Watch `directory` (inotify, via watchdog) for guest config files."""
    observer = Observer()
    observer.schedule(_ConfigHandler(events), str(directory), recursive=False)
    observer.daemon = True
    observer.start()
    return observer
