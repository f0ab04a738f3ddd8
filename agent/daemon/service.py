"""The agent's main loop: events in, live guest updates out.

Threads only produce events (udev, config files, libvirt callbacks); every
libvirt call is made from the main loop, one event at a time. Events for one
block device arriving within `debounce` of the first are coalesced: the size
is read from sysfs when the device is handled, so a burst ends at its final size.
"""

from __future__ import annotations

import logging
import queue
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import libvirt
from lxml import etree

from agent import vswitches
from agent.accel import detect_virt_type
from agent.connection import ensure_event_loop, libvirt_message
from agent.daemon import metrics
from agent.daemon.desired import diff_devices
from agent.daemon.index import DiskRef, block_disks, build_index, devnum_of
from agent.daemon.notify import sd_notify
from agent.daemon.sizes import Verdict, decide, host_size
from agent.daemon.sources import BlockEvent, ConfigEvent, start_config_source, start_udev_source
from agent.errors import HostError
from agent.guests import change_devices, define_guest
from agent.inventory import config_guest
from agent.removal import RemovalWatch
from agent.settings import GuestSettings, apply_settings
from agent.startcheck import check_replug
from translators.errors import HpvmError
from translators.grammar import format_statement
from translators.model import Device, StorageDevice, StorageType
from translators.options import parse_config_file

log = logging.getLogger("avio-agent")

UNPLUG_TIMEOUT = 30.0
CONFIG_SETTLE = 0.2  # editors write a file in several steps


@dataclass(frozen=True)
class DomainEvent:
    """Something happened to a domain (started, stopped, device added/removed)."""

    name: str
    started: bool
    nic_added: bool = False


class ConnectionLost(Exception):
    """libvirtd went away; the loop reconnects and reconciles."""


class _Closed:
    """Queue marker: libvirt's close callback fired."""


@dataclass
class AgentOptions:
    uri: str = "qemu:///system"
    guests_dir: Path = Path("/etc/avio/guests")
    on_remove: str = "detach"  # or "keep"
    debounce: float = 0.005
    metrics: str | None = None
    once: bool = False
    startup_reconcile: bool = True


class Agent:
    def __init__(self, options: AgentOptions) -> None:
        self.options = options
        self.events: queue.Queue = queue.Queue()
        self.conn: libvirt.virConnect | None = None
        self._index: dict[int, list[DiskRef]] | None = None
        self.pending_block: dict[int, tuple[float, BlockEvent]] = {}
        self.pending_config: dict[Path, tuple[float, bool]] = {}
        self.pending_domains: set[str] = set()
        self.pending_ports: set[str] = set()  # guests with a NIC plugged by anyone
        self.known_size: dict[int, int] = {}
        self.stopping = False

    # ---- connection -------------------------------------------------------------------

    def connect(self) -> None:
        """Open libvirt (retrying with back-off) and subscribe to its events."""
        ensure_event_loop()
        delay = 0.2
        while not self.stopping:
            try:
                conn = libvirt.open(self.options.uri)
                break
            except libvirt.libvirtError as err:
                log.warning(
                    "libvirt unreachable (%s); retrying in %.1f s", libvirt_message(err), delay
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        else:
            return
        conn.setKeepAlive(5, 3)
        conn.registerCloseCallback(lambda *_: self.events.put(_Closed()), None)
        conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
        )
        conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, self._on_device_added, None
        )
        conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, self._on_device, None
        )
        self.conn = conn
        self._index = None
        log.info("connected to %s", self.options.uri)

    def _on_lifecycle(self, _conn, dom, event: int, _detail: int, _opaque) -> None:
        self.events.put(DomainEvent(dom.name(), event == libvirt.VIR_DOMAIN_EVENT_STARTED))

    def _on_device(self, _conn, dom, _alias: str, _opaque) -> None:
        self.events.put(DomainEvent(dom.name(), False))

    def _on_device_added(self, _conn, dom, _alias: str, _opaque) -> None:
        # Any device may be a NIC: an alias is whatever its plugger chose (virsh
        # attach-interface --alias ua-eth1), so every plug re-checks the guest's port rules.
        self.events.put(DomainEvent(dom.name(), False, nic_added=True))

    def _reconnect(self) -> None:
        log.warning("connection to libvirt lost; reconnecting")
        if self.conn is not None:
            try:
                self.conn.close()
            except libvirt.libvirtError:
                pass
        self.conn = None
        time.sleep(0.2)
        self.connect()
        self.reconcile()

    def index(self) -> dict[int, list[DiskRef]]:
        if self._index is None:
            self._index = build_index(self.conn)
            metrics.GUESTS.set(len({ref.guest for refs in self._index.values() for ref in refs}))
        return self._index

    # ---- main loop --------------------------------------------------------------------

    def run(self) -> None:
        self.options.guests_dir.mkdir(parents=True, exist_ok=True)
        if self.options.metrics:
            metrics.serve(self.options.metrics)
        signal.signal(signal.SIGTERM, lambda *_: self._stop())
        source = None
        if not self.options.once:
            source = start_udev_source(self.events)
            start_config_source(self.options.guests_dir, self.events)
        self.connect()
        if self.options.startup_reconcile:
            self.reconcile()
        sd_notify("READY=1")
        log.info(
            "ready (block events from %s, configs in %s)", source or "-", self.options.guests_dir
        )
        if self.options.once:
            return
        while not self.stopping:
            timeout = self._next_deadline()
            try:
                event = self.events.get(timeout=timeout)
            except queue.Empty:
                event = None
            try:
                if event is not None:
                    self._accept(event)
                self._process_due()
            except ConnectionLost:
                self._reconnect()
        sd_notify("STOPPING=1")

    def _stop(self) -> None:
        self.stopping = True
        self.events.put(None)

    def _next_deadline(self) -> float | None:
        deadlines = [due for due, _ in self.pending_block.values()]
        deadlines += [due for due, _ in self.pending_config.values()]
        if self.pending_domains or self.pending_ports:
            return 0
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _accept(self, event: object) -> None:
        if isinstance(event, BlockEvent):
            metrics.EVENTS.labels("block").inc()
            due, first = self.pending_block.get(event.devnum, (None, None))
            if first is None:
                self.pending_block[event.devnum] = (event.seen + self.options.debounce, event)
            elif event.action == "remove" or first.action != "remove":
                # keep the first timestamp (latency is measured from it), the latest action
                merged = BlockEvent(
                    event.action, event.devnum, event.node, event.resize or first.resize, first.seen
                )
                self.pending_block[event.devnum] = (due, merged)
        elif isinstance(event, ConfigEvent):
            metrics.EVENTS.labels("config").inc()
            self.pending_config[event.path] = (time.monotonic() + CONFIG_SETTLE, event.deleted)
        elif isinstance(event, DomainEvent):
            metrics.EVENTS.labels("libvirt").inc()
            self._index = None
            if event.started:
                self.pending_domains.add(event.name)
            elif event.nic_added:
                self.pending_ports.add(event.name)
        elif isinstance(event, _Closed):
            raise ConnectionLost

    def _process_due(self) -> None:
        now = time.monotonic()
        for devnum, (due, event) in list(self.pending_block.items()):
            if due <= now:
                del self.pending_block[devnum]
                self._guarded(self.handle_block, event)
        for path, (due, deleted) in list(self.pending_config.items()):
            if due <= now:
                del self.pending_config[path]
                self._guarded(self.handle_config, path, deleted)
        while self.pending_domains:
            self._guarded(self.reconcile_domain, self.pending_domains.pop())
        while self.pending_ports:
            self._guarded(self.apply_ports, self.pending_ports.pop())

    def _guarded(self, handler, *args) -> None:
        """Run one handler; a libvirt failure is logged, a lost connection re-raised."""
        try:
            handler(*args)
        except libvirt.libvirtError as err:
            if self.conn is None or not self.conn.isAlive():
                raise ConnectionLost from None
            metrics.FAILED.labels(handler.__name__).inc()
            log.error("%s failed: %s", handler.__name__, libvirt_message(err))
        except (HostError, HpvmError) as err:
            metrics.FAILED.labels(handler.__name__).inc()
            log.error("%s", err)

    # ---- host storage -----------------------------------------------------------------

    def handle_block(self, event: BlockEvent) -> None:
        """A block device changed, appeared or went away: bring the guests in line."""
        size = host_size(event.devnum)
        previous = self.known_size.get(event.devnum)
        self.known_size[event.devnum] = size or 0
        refs = self.index().get(event.devnum, [])
        if event.action == "remove" or not size:
            for ref in refs:
                self.device_gone(ref, event)
            return
        for ref in refs:
            self.forward(ref, size, event.seen)
        if not refs or not previous:
            self.attach_appearing(event.devnum)

    def forward(self, ref: DiskRef, size: int, seen: float) -> None:
        """Grow a running guest's disk to the host device's size (never shrink it)."""
        dom = self.conn.lookupByName(ref.guest)
        metrics.LIBVIRT_CALLS.labels("blockInfo").inc()
        capacity = dom.blockInfo(ref.target)[0]
        verdict = decide(size, capacity)
        if verdict is Verdict.SHRINK:
            metrics.REFUSED.inc()
            log.error(
                "refused shrink guest=%s disk=%s %s: %d -> %d bytes (would destroy data)",
                ref.guest,
                ref.target,
                ref.source,
                capacity,
                size,
            )
            return
        if verdict is not Verdict.GROW:
            return
        metrics.LIBVIRT_CALLS.labels("blockResize").inc()
        dom.blockResize(ref.target, size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
        latency = time.monotonic() - seen
        metrics.LATENCY.observe(latency)
        metrics.FORWARDED.inc()
        now = dom.blockInfo(ref.target)[0]
        log.info(
            "resize guest=%s disk=%s %s: %d -> %d bytes in %.1f ms%s",
            ref.guest,
            ref.target,
            ref.source,
            capacity,
            size,
            latency * 1e3,
            "" if now == size else f" (guest capacity now {now})",
        )

    def device_gone(self, ref: DiskRef, event: BlockEvent) -> None:
        """The backing device went away: unplug the disk from the running guest (or keep it)."""
        if self.options.on_remove == "keep":
            log.warning(
                "backing %s of guest=%s disk=%s is gone; disk kept (--on-remove keep)",
                ref.source,
                ref.guest,
                ref.target,
            )
            return
        dom = self.conn.lookupByName(ref.guest)
        disk = _live_disk(dom, ref.target)
        if disk is None:
            return
        alias = disk.find("alias").get("name") if disk.find("alias") is not None else None
        start = time.monotonic()
        with RemovalWatch(self.conn, dom) as watch:
            dom.detachDeviceFlags(
                etree.tostring(disk, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_LIVE
            )
            if alias:
                watch.wait(alias, UNPLUG_TIMEOUT)
        self._index = None
        metrics.HOTPLUGS.labels("detach").inc()
        log.info(
            "unplug guest=%s disk=%s: backing %s is gone (kept in the definition) in %.1f ms",
            ref.guest,
            ref.target,
            ref.source,
            (time.monotonic() - start) * 1e3,
        )

    def attach_appearing(self, devnum: int) -> None:
        """A device appeared: plug it into running guests whose definition or config names it."""
        for dom in self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            self._replug_missing(dom, only=devnum)
        for path in sorted(self.options.guests_dir.glob("*.conf")):
            try:
                config = parse_config_file(path)
            except (HpvmError, OSError):
                continue
            if any(devnum_of(d.location) == devnum for d in config.guest.storage):
                self.handle_config(path, deleted=False)

    def _replug_missing(self, dom: libvirt.virDomain, only: int | None = None) -> None:
        """Disks of the persistent definition missing from the running guest whose backing
        exists again (unplugged earlier because it went away) are plugged back live."""
        live = {target for target, _ in block_disks(dom.XMLDesc(0))}
        persistent = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
        for disk in persistent.iterfind("devices/disk[@type='block']"):
            target, source = disk.find("target").get("dev"), disk.find("source")
            if target in live or source is None:
                continue
            number = devnum_of(source.get("dev", ""))
            if number is None or (only is not None and number != only) or not host_size(number):
                continue
            try:
                check_replug(self.conn, dom, source.get("dev"))
            except HpvmError as err:
                metrics.FAILED.labels("replug").inc()
                log.error("plug guest=%s disk=%s refused: %s", dom.name(), target, err)
                continue
            dom.attachDeviceFlags(
                etree.tostring(disk, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_LIVE
            )
            self._index = None
            metrics.HOTPLUGS.labels("attach").inc()
            log.info(
                "plug guest=%s disk=%s: backing %s is back", dom.name(), target, source.get("dev")
            )

    # ---- guests ----------------------------------------------------------------------

    def reconcile_domain(self, name: str) -> None:
        """A guest (re)started: each disk gets its device's size, each NIC its port's VLAN."""
        try:
            dom = self.conn.lookupByName(name)
        except libvirt.libvirtError:
            return
        if not dom.isActive():
            return
        vswitches.apply_guest(self.conn, dom)
        self._replug_missing(dom)
        for target, source in block_disks(dom.XMLDesc(0)):
            number = devnum_of(source)
            size = host_size(number) if number is not None else None
            if size:
                self.forward(DiskRef(name, target, source), size, time.monotonic())

    def apply_ports(self, name: str) -> None:
        """A NIC was plugged (by anyone): every NIC of the guest gets its port's VLAN rule."""
        try:
            dom = self.conn.lookupByName(name)
        except libvirt.libvirtError:
            return
        if dom.isActive():
            vswitches.apply_guest(self.conn, dom)

    def reconcile(self) -> None:
        """Level-triggered safety net: apply every config file, fix every disk's size."""
        start = time.monotonic()
        for v in vswitches.all_vswitches(self.conn):
            if v.up:  # restores the bridges after a host reboot
                self._guarded(vswitches.start, self.conn, v)
        for path in sorted(self.options.guests_dir.glob("*.conf")):
            self._guarded(self.handle_config, path, False)
        for dom in self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            self._guarded(self.reconcile_domain, dom.name())
        self._index = None
        log.info("reconciled in %.1f ms", (time.monotonic() - start) * 1e3)

    def handle_config(self, path: Path, deleted: bool) -> None:
        """Make the guest named by a config file match it; a bad file changes nothing."""
        if deleted:
            if not path.exists():
                log.warning("config %s deleted; guest %s is left as it is", path, path.stem)
            return
        try:
            config = parse_config_file(path)
        except OSError as err:
            log.error("config %s: %s", path, err.strerror)
            return
        desired = config.guest
        waiting = [d for d in desired.storage if not _present(d)]
        for dev in waiting:
            log.info("config %s: waiting for %s to appear", path, dev.location)
        desired.storage = [d for d in desired.storage if d not in waiting]
        try:
            dom = self.conn.lookupByName(desired.name)
        except libvirt.libvirtError:
            dom = None
        if dom is None:
            dom = define_guest(self.conn, desired, desired.virt_type or detect_virt_type())
            log.info("define guest=%s from %s", desired.name, path)
            if desired.autoboot:
                dom.create()
                log.info("start guest=%s (-B auto)", desired.name)
            return
        add, delete = diff_devices(desired, config_guest(dom))
        delete = [d for d in delete if not any(_same_backing(d, w) for w in waiting)]
        if add or delete:
            changes = change_devices(self.conn, dom, add, delete)
            self._index = None
            for change in changes:
                log.info(
                    "config %s: %s guest=%s %s",
                    path.name,
                    change.action,
                    desired.name,
                    format_statement(change.device),
                )
        settings = GuestSettings(
            desired.vcpus, desired.memory_mb, desired.os_type, desired.label, desired.autoboot
        )
        if apply_settings(self.conn, dom, settings):
            log.info(
                "config %s: settings of guest=%s changed (next start)", path.name, desired.name
            )


def _live_disk(dom: libvirt.virDomain, target: str) -> etree._Element | None:
    root = etree.fromstring(dom.XMLDesc(0).encode())
    for disk in root.iterfind("devices/disk"):
        t = disk.find("target")
        if t is not None and t.get("dev") == target:
            return disk
    return None


def _present(device: StorageDevice) -> bool:
    """Is the backing there (a block device counts once it has a size, e.g. a bound loop)?"""
    if device.storage is StorageType.NULL:
        return True
    number = devnum_of(device.location)
    if number is not None:
        return bool(host_size(number))
    return Path(device.location).exists()


def _same_backing(device: Device, waiting: StorageDevice) -> bool:
    return isinstance(device, StorageDevice) and device.location == waiting.location
