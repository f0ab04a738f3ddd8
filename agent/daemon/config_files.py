"""Guest config files (inotify events): each guest made to match its file.

A file's events within CONFIG_SETTLE are coalesced (a rename into place may
follow a close: the last one counts). A bad file changes nothing; a deleted or
empty one destroys nothing.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import libvirt

from agent.accel import detect_virt_type
from agent.daemon import metrics
from agent.daemon.debounce import Debounce
from agent.daemon.desired import diff_devices
from agent.daemon.index import devnum_of
from agent.daemon.sizes import host_size
from agent.daemon.sources import ConfigEvent
from agent.daemon.work import ApplyConfig
from agent.guests.inventory import config_guest
from agent.guests.lifecycle import change_devices, define_guest
from agent.guests.settings import GuestSettings, apply_settings
from translators.grammar import format_statement
from translators.model import StorageDevice, StorageType

if TYPE_CHECKING:
    from agent.daemon.service import Agent

log = logging.getLogger("avio-agent")

CONFIG_SETTLE = 0.2  # a rename into place may follow a close: act on the last


class ConfigHandlers:
    """The agent's handlers of config-file events."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.pending: Debounce[ApplyConfig] = Debounce()  # by file

    def accept(self, event: ConfigEvent) -> None:
        """Count a file event and hold it until the file has settled."""
        metrics.EVENTS.labels("config").inc()
        work = ApplyConfig(event.path.stem, event.path, event.deleted)
        self.pending.hold(event.path, time.monotonic() + CONFIG_SETTLE, work)

    def handle_config(self, work: ApplyConfig) -> None:
        """Make the guest named by a config file match it; a bad file changes nothing.

        A deleted or empty file destroys nothing; options the file omits (-O -c -r -B -l)
        leave the guest's settings as they are.
        """
        path, configs, conn = work.path, self.agent.configs, self.agent.conn
        entry = None if work.deleted else configs.get(path)
        if entry is None:
            configs.forget(path)
            log.warning("config %s deleted; guest %s is left as it is", path, path.stem)
            return
        if entry.error is not None:
            metrics.CONFIGS_REFUSED.inc()
            return  # logged once, when that version of the file was read
        if entry.empty:
            configs.waiting.pop(path, None)
            log.warning(
                "config %s is empty: treated like a deleted file; guest %s is left as it is",
                path,
                path.stem,
            )
            return
        config = entry.config
        desired = copy.deepcopy(config.guest)
        waiting = [d for d in desired.storage if not _present(d)]
        for dev in waiting:
            log.info("config %s: waiting for %s to appear", path, dev.location)
        if waiting:
            configs.waiting[path] = [d.location for d in waiting]
        else:
            configs.waiting.pop(path, None)
        desired.storage = [d for d in desired.storage if d not in waiting]
        try:
            dom = conn.lookupByName(desired.name)
        except libvirt.libvirtError:
            dom = None
        if dom is None:
            virt_type = desired.virt_type or detect_virt_type()
            dom = define_guest(conn, desired, virt_type, self.agent.host_view())
            self.agent.devices_changed(desired.name)
            log.info("define guest=%s from %s", desired.name, path)
            if desired.autoboot:
                dom.create()
                log.info("start guest=%s (-B auto)", desired.name)
            return
        current = config_guest(dom)
        add, delete = diff_devices(desired, current)
        # A disk whose backing is away stays in the definition until it comes back.
        away = {w.location for w in waiting}
        delete = [d for d in delete if not (d in current.storage and d.location in away)]
        if add or delete:
            changes = change_devices(conn, dom, add, delete, host=self.agent.host_view())
            self.agent.devices_changed(desired.name)
            for change in changes:
                log.info(
                    "config %s: %s guest=%s %s",
                    path.name,
                    change.action,
                    desired.name,
                    format_statement(change.device),
                )
        given = config.given
        settings = GuestSettings(
            desired.vcpus if "vcpus" in given else None,
            desired.memory_mb if "memory" in given else None,
            desired.os_type if "os_type" in given else None,
            desired.label if "label" in given else None,
            desired.autoboot if "boot_attr" in given else None,
        )
        if apply_settings(conn, dom, settings):
            log.info(
                "config %s: settings of guest=%s changed (next start)", path.name, desired.name
            )


def _present(device: StorageDevice) -> bool:
    """Is the backing there (a block device counts once it has a size, e.g. a bound loop)?"""
    if device.storage is StorageType.NULL:
        return True
    number = devnum_of(device.location)
    if number is not None:
        return bool(host_size(number))
    return Path(device.location).exists()
