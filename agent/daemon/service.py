"""The agent's main loop: events in, live guest updates out.

Threads produce events (udev, config files, libvirt callbacks) into one bounded
queue; the main loop coalesces them and hands each guest's actions to that
guest's worker (agent.daemon.workers), which runs them in order holding the
guest's lock (agent.guests.locks), so an unplug waiting for one guest never delays
another. Events for one block device arriving within `debounce` of the first
are coalesced, the last action winning: the size is read from sysfs when the
device is handled, so a burst ends at its final size. Nothing an event, a file
or libvirtd does stops the loop: every handler is guarded (logged, counted).
"""

from __future__ import annotations

import copy
import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import libvirt
from lxml import etree

from agent.accel import detect_virt_type
from agent.connection import ensure_event_loop, libvirt_message
from agent.daemon import metrics
from agent.daemon.configs import ConfigIndex
from agent.daemon.desired import diff_devices
from agent.daemon.index import DiskRef, block_disks, build_index, devnum_of
from agent.daemon.notify import sd_notify
from agent.daemon.sizes import Verdict, decide, host_size
from agent.daemon.sources import (
    UDEV_BUFFER,
    BlockEvent,
    ConfigEvent,
    Resync,
    start_config_source,
    start_udev_source,
)
from agent.daemon.workers import GuestWorkers
from agent.errors import HostError
from agent.guests.inventory import HostView, config_guest
from agent.guests.lifecycle import change_devices, define_guest
from agent.guests.locks import guest_lock
from agent.guests.removal import RemovalWatch
from agent.guests.settings import GuestSettings, apply_settings
from agent.network import vswitches
from agent.storage.startcheck import check_replug
from translators.errors import HpvmError
from translators.grammar import format_statement
from translators.model import Device, StorageDevice, StorageType

log = logging.getLogger("avio-agent")

UNPLUG_TIMEOUT = 30.0
CONFIG_SETTLE = 0.2  # a rename into place may follow a close: act on the last
EVENT_QUEUE = 10_000
ALIVE_CHECK = 2.0  # seconds between checks that the libvirt connection lives
STARTUP_WAIT = 60.0  # READY=1 once the first reconciliation is done, or after this


@dataclass(frozen=True)
class DomainEvent:
    """Something happened to a domain (started, stopped, device added/removed)."""

    name: str
    started: bool
    nic_added: bool = False


class ConnectionLost(Exception):
    """libvirtd went away; the loop reconnects and reconciles."""

    def __init__(self, conn: libvirt.virConnect | None = None) -> None:
        super().__init__("connection to libvirt lost")
        self.conn = conn


@dataclass(frozen=True)
class _Closed:
    """Queue marker: a connection was found dead (libvirt's close callback, or a failure)."""

    conn: libvirt.virConnect | None


@dataclass
class AgentOptions:
    uri: str = "qemu:///system"
    guests_dir: Path = Path("/etc/avio/guests")
    on_remove: str = "detach"  # or "keep"
    debounce: float = 0.005
    metrics: str | None = None
    once: bool = False
    startup_reconcile: bool = True
    udev_buffer: int = UDEV_BUFFER


class Agent:
    def __init__(self, options: AgentOptions) -> None:
        self.options = options
        self.events: queue.Queue = queue.Queue(EVENT_QUEUE)
        self.conn: libvirt.virConnect | None = None
        self.configs = ConfigIndex(options.guests_dir)
        self.workers = GuestWorkers(self._run_for_guest)
        self._index: dict[int, list[DiskRef]] | None = None
        self._stamp = object()  # replaced by every device change: the index is stale
        self._index_at: object | None = None
        self.pending_block: dict[int, tuple[float, BlockEvent]] = {}
        self.pending_config: dict[Path, tuple[float, bool]] = {}
        self.known_size: dict[int, int] = {}
        self.resync = threading.Event()
        self.stopping = False

    def offer(self, event: object) -> None:
        """Queue an event from any thread, never blocking: when the queue is full the
        event is dropped and a full reconciliation is due."""
        try:
            self.events.put_nowait(event)
        except queue.Full:
            metrics.DROPPED.inc()
            self.resync.set()

    # ---- connection -------------------------------------------------------------------

    def connect(self) -> None:
        """Open libvirt (retrying with back-off) and subscribe to its events."""
        ensure_event_loop()
        delay = 0.2
        while not self.stopping:
            try:
                conn = libvirt.open(self.options.uri)
                conn.setKeepAlive(5, 3)
                conn.registerCloseCallback(self._on_close, conn)
                for event_id, callback in (
                    (libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle),
                    (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, self._on_device_added),
                    (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, self._on_device),
                ):
                    conn.domainEventRegisterAny(None, event_id, callback, None)
                break
            except libvirt.libvirtError as err:
                log.warning(
                    "libvirt unreachable (%s); retrying in %.1f s", libvirt_message(err), delay
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        else:
            return
        self.conn = conn
        self._stamp = object()
        log.info("connected to %s", self.options.uri)

    def _on_close(self, _conn, _reason: int, conn: libvirt.virConnect) -> None:
        self.offer(_Closed(conn))

    def _on_lifecycle(self, _conn, dom, event: int, _detail: int, _opaque) -> None:
        self.offer(DomainEvent(dom.name(), event == libvirt.VIR_DOMAIN_EVENT_STARTED))

    def _on_device(self, _conn, dom, _alias: str, _opaque) -> None:
        self.offer(DomainEvent(dom.name(), False))

    def _on_device_added(self, _conn, dom, _alias: str, _opaque) -> None:
        # Any device may be a NIC: an alias is whatever its plugger chose (virsh
        # attach-interface --alias ua-eth1), so every plug re-checks the guest's port rules.
        self.offer(DomainEvent(dom.name(), False, nic_added=True))

    def _drop_connection(self) -> None:
        log.warning("connection to libvirt lost; reconnecting")
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass

    def index(self) -> dict[int, list[DiskRef]]:
        """Device number -> running guests' disks on it (rebuilt after any device change)."""
        if self._index is None or self._index_at is not self._stamp:
            at = self._stamp
            self._index = build_index(self.conn)
            self._index_at = at
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
            source = start_udev_source(self.offer, self.options.udev_buffer)
            start_config_source(self.options.guests_dir, self.offer)
        self.connect()
        if self.options.startup_reconcile:
            self._step(self.reconcile, "start")
            self.workers.wait_idle(None if self.options.once else STARTUP_WAIT)
        if self.options.once:
            return
        sd_notify("READY=1")
        log.info(
            "ready (block events from %s, configs in %s)", source or "-", self.options.guests_dir
        )
        checked = time.monotonic()
        while not self.stopping:
            if self.conn is None:
                self.connect()
                self._step(self.reconcile, "reconnect")
                continue
            if self.resync.is_set():
                self.resync.clear()
                self._step(self.reconcile, "lost events")
            try:
                event = self.events.get(timeout=min(self._next_deadline(), ALIVE_CHECK))
            except queue.Empty:
                event = None
            self._step(self._accept, event)
            self._step(self._process_due)
            if time.monotonic() - checked > ALIVE_CHECK:
                checked = time.monotonic()
                if self.conn is not None and not _alive(self.conn):
                    self._drop_connection()
        sd_notify("STOPPING=1")

    def _step(self, step, *args: object) -> None:
        """One step of the loop: a lost connection is dropped (reconnected next), any
        other failure logged and counted; the loop goes on."""
        try:
            step(*args)
        except ConnectionLost as lost:
            if lost.conn is None or lost.conn is self.conn:
                self._drop_connection()
        except Exception as err:  # the agent keeps running, whatever happens
            metrics.FAILED.labels("loop").inc()
            log.error("main loop: %s", _one_line(err))
            log.debug("main loop failure", exc_info=True)
            if self.conn is not None and not _alive(self.conn):
                self._drop_connection()

    def _stop(self) -> None:
        self.stopping = True
        self.offer(None)

    def _next_deadline(self) -> float:
        deadlines = [due for due, _ in self.pending_block.values()]
        deadlines += [due for due, _ in self.pending_config.values()]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else ALIVE_CHECK

    def _accept(self, event: object) -> None:
        if isinstance(event, BlockEvent):
            metrics.EVENTS.labels("block").inc()
            due, first = self.pending_block.get(event.devnum, (None, None))
            if first is None:
                self.pending_block[event.devnum] = (event.seen + self.options.debounce, event)
            else:
                # the last action wins (remove then add = present); the first timestamp
                # stays (latency is measured from it)
                merged = BlockEvent(
                    event.action, event.devnum, event.node, event.resize or first.resize, first.seen
                )
                self.pending_block[event.devnum] = (due, merged)
        elif isinstance(event, ConfigEvent):
            metrics.EVENTS.labels("config").inc()
            self.pending_config[event.path] = (time.monotonic() + CONFIG_SETTLE, event.deleted)
        elif isinstance(event, DomainEvent):
            metrics.EVENTS.labels("libvirt").inc()
            self._stamp = object()
            if event.started:
                self.submit(event.name, self.reconcile_domain, event.name)
            elif event.nic_added:
                self.submit(event.name, self.apply_ports, event.name)
        elif isinstance(event, Resync):
            metrics.EVENTS.labels(event.source).inc()
            self.resync.set()
        elif isinstance(event, _Closed):
            raise ConnectionLost(event.conn)

    def _process_due(self) -> None:
        now = time.monotonic()
        for devnum, (due, event) in list(self.pending_block.items()):
            if due <= now:
                del self.pending_block[devnum]
                self._guarded(self.handle_block, event)
        for path, (due, deleted) in list(self.pending_config.items()):
            if due <= now:
                del self.pending_config[path]
                self.submit(path.stem, self.handle_config, path, deleted)

    def submit(self, guest: str, action, *args: object) -> None:
        """Run `action(*args)` in guest's worker (inline with --once)."""
        if self.options.once:
            self._run_for_guest(guest, action, *args)
        elif not self.workers.submit(guest, action, *args):
            metrics.DROPPED.inc()
            log.error("guest=%s has too many pending actions; reconciling later", guest)
            self.resync.set()

    def _run_for_guest(self, guest: str, action, *args: object) -> None:
        """A worker runs one action of `guest`, holding the guest's lock."""
        conn = self.conn
        try:
            with guest_lock(guest):
                self._guarded(action, *args, guest=guest)
        except ConnectionLost as lost:
            self.offer(_Closed(lost.conn))
        except HostError as err:  # the lock stayed busy
            metrics.FAILED.labels(action.__name__).inc()
            log.error("%s guest=%s: %s", action.__name__, guest, err)
        except Exception as err:  # a worker never dies
            metrics.FAILED.labels(action.__name__).inc()
            log.error("%s guest=%s failed: %s", action.__name__, guest, _one_line(err))
            if conn is not None and not _alive(conn):
                self.offer(_Closed(conn))

    def _guarded(self, handler, *args, guest: str | None = None) -> None:
        """Run one handler: a lost connection is re-raised as ConnectionLost, any other
        failure logged (one line) and counted in avio_actions_failed_total."""
        conn = self.conn
        name = getattr(handler, "__name__", "action")
        where = f"{name} guest={guest}" if guest else name
        try:
            handler(*args)
        except ConnectionLost:
            raise
        except Exception as err:  # the agent keeps running, whatever happens
            if conn is None or not _alive(conn) or _rpc_failure(err):
                raise ConnectionLost(conn) from None
            metrics.FAILED.labels(name).inc()
            if isinstance(err, libvirt.libvirtError):
                log.error("%s failed: %s", where, libvirt_message(err))
            elif isinstance(err, (HostError, HpvmError)):
                log.error("%s: %s", where, err)
            else:
                log.error("%s failed: %s", where, _one_line(err))
                log.debug("%s failure", where, exc_info=True)

    # ---- host storage -----------------------------------------------------------------

    def handle_block(self, event: BlockEvent) -> None:
        """A block device changed, appeared or went away: bring the guests in line."""
        size = host_size(event.devnum)
        previous = self.known_size.get(event.devnum)
        self.known_size[event.devnum] = size or 0
        refs = self.index().get(event.devnum, [])
        if event.action == "remove" or not size:
            for ref in refs:
                self.submit(ref.guest, self.device_gone, ref, event)
            return
        for ref in refs:
            self.submit(ref.guest, self.forward, ref, size, event.seen)
        if not previous:  # first seen, or back from size 0 / removed
            self.attach_appearing(event.devnum)

    def forward(self, ref: DiskRef, size: int, seen: float) -> None:
        """Grow a running guest's disk to the host device's size (never shrink it).

        The size is read again when the guest's turn comes: the last size wins.
        """
        number = devnum_of(ref.source)
        size = (host_size(number) if number is not None else None) or size
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
        self._stamp = object()
        metrics.HOTPLUGS.labels("detach").inc()
        log.info(
            "unplug guest=%s disk=%s: backing %s is gone (kept in the definition) in %.1f ms",
            ref.guest,
            ref.target,
            ref.source,
            (time.monotonic() - start) * 1e3,
        )

    def attach_appearing(self, devnum: int) -> None:
        """A device appeared: plug it into running guests whose definition or config names it.

        Only config files waiting for a device are looked at (their locations stat'ed),
        so the cost does not grow with the number of config files.
        """
        for dom in self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            self.submit(dom.name(), self.replug, dom.name(), devnum)
        for path in self.configs.waiting_for(lambda location: devnum_of(location) == devnum):
            self.submit(path.stem, self.handle_config, path, False)

    def replug(self, name: str, only: int | None = None) -> None:
        """Re-plug the running guest's disks whose backing is back (see _replug_missing)."""
        try:
            dom = self.conn.lookupByName(name)
        except libvirt.libvirtError:
            return
        if dom.isActive():
            self._replug_missing(dom, only)

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
            self._stamp = object()
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
        vswitches.apply_guest(HostView(self.conn), dom)
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
            vswitches.apply_guest(HostView(self.conn), dom)

    def reconcile(self, reason: str = "start") -> None:
        """Level-triggered safety net: apply every config file, fix every disk's size.

        The guests' parts run in their workers; this returns once they are queued.
        """
        start = time.monotonic()
        metrics.RECONCILES.labels(reason).inc()
        host = HostView(self.conn)
        for v in host.vswitches:
            if v.up:  # restores the bridges after a host reboot
                self._guarded(vswitches.start, host, v)
        for path in self.configs.paths():
            self.submit(path.stem, self.handle_config, path, False)
        for dom in self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            self.submit(dom.name(), self.reconcile_domain, dom.name())
        self._stamp = object()
        log.info("reconcile (%s) queued in %.1f ms", reason, (time.monotonic() - start) * 1e3)

    def handle_config(self, path: Path, deleted: bool) -> None:
        """Make the guest named by a config file match it; a bad file changes nothing.

        A deleted or empty file destroys nothing; options the file omits (-O -c -r -B -l)
        leave the guest's settings as they are.
        """
        entry = None if deleted else self.configs.get(path)
        if entry is None:
            self.configs.forget(path)
            log.warning("config %s deleted; guest %s is left as it is", path, path.stem)
            return
        if entry.error is not None:
            metrics.CONFIGS_REFUSED.inc()
            return  # logged once, when that version of the file was read
        if entry.empty:
            self.configs.waiting.pop(path, None)
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
            self.configs.waiting[path] = [d.location for d in waiting]
        else:
            self.configs.waiting.pop(path, None)
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
            self._stamp = object()
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
        if apply_settings(self.conn, dom, settings):
            log.info(
                "config %s: settings of guest=%s changed (next start)", path.name, desired.name
            )


def _alive(conn: libvirt.virConnect) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


def _rpc_failure(err: Exception) -> bool:
    """A libvirt error that means the connection itself failed."""
    return isinstance(err, libvirt.libvirtError) and err.get_error_domain() in (
        libvirt.VIR_FROM_RPC,
        libvirt.VIR_FROM_REMOTE,
    )


def _one_line(err: Exception) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}"


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
