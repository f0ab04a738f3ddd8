"""The agent's loop: one queue, the libvirt connection, and the table that hands
every event and work item to its handler.

Threads put events on one bounded queue (udev: agent.daemon.sources; config
files: the same; libvirt's callbacks: agent.daemon.libvirt_events), and handlers
put work items (agent.daemon.work) there too: they never call each other. The
loop hands each item to the handler `Agent.routes` names for its type: a
source's event is accepted in the loop (block and config events wait out their
debounce window), work for a guest runs in that guest's worker
(agent.daemon.workers), in order and holding the guest's lock, so an unplug
waiting for one guest never delays another. The handlers: block devices in
agent.daemon.block_events, config files in agent.daemon.config_files, domain
events in agent.daemon.libvirt_events. Nothing an event, a file or libvirtd does
stops the loop: every handler is guarded (logged, counted).
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from agent.connection import ensure_event_loop, libvirt_message
from agent.daemon import metrics
from agent.daemon.block_events import BlockHandlers
from agent.daemon.config_files import ConfigHandlers
from agent.daemon.configs import ConfigIndex
from agent.daemon.index import DiskIndex
from agent.daemon.libvirt_events import DomainEvent, LibvirtHandlers, subscribe
from agent.daemon.notify import sd_notify
from agent.daemon.pci_events import PciHandlers
from agent.daemon.scsi_events import ScsiHandlers
from agent.daemon.sources import (
    UDEV_BUFFER,
    BlockEvent,
    ConfigEvent,
    PciEvent,
    Resync,
    ScsiEvent,
    start_config_source,
    start_udev_source,
)
from agent.daemon.work import (
    ApplyConfig,
    ApplyPorts,
    BlockSettled,
    DeviceAppeared,
    DiskGone,
    Forward,
    FunctionBack,
    FunctionGone,
    ReconcileGuest,
    Replug,
    ResizeDisks,
    ScsiSync,
    Work,
)
from agent.daemon.workers import GuestWorkers
from agent.errors import HostError
from agent.guests.inventory import CachedHostView, GuestCache, HostView
from agent.guests.locks import guest_lock
from agent.network import vswitches
from translators.errors import HpvmError

log = logging.getLogger("avio-agent")

EVENT_QUEUE = 10_000
ALIVE_CHECK = 2.0  # seconds between checks that the libvirt connection lives
STARTUP_WAIT = 60.0  # READY=1 once the first reconciliation is done, or after this
SETTLE_POLL = 0.05  # seconds between looks at the workers while the first one runs


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
    hook_socket: Path | None = None  # answer the libvirt hook there (hook_service.py)


class Agent:
    """The loop and its queue, the libvirt connection, the routes to the handlers."""

    def __init__(self, options: AgentOptions) -> None:
        self.options = options
        self.events: queue.Queue = queue.Queue(EVENT_QUEUE)
        self.conn: libvirt.virConnect | None = None
        self.configs = ConfigIndex(options.guests_dir)
        self.workers = GuestWorkers(self._run_for_guest)
        self.disks = DiskIndex()  # device number -> running guests' disks
        self.guests = GuestCache()  # every persistent guest, read again when it changes
        self._work_lock = threading.Lock()
        self._work_queued = 0
        self.resync = threading.Event()
        self.stopping = False
        self.block = block = BlockHandlers(self)
        config, domains = ConfigHandlers(self), LibvirtHandlers(self)
        functions = PciHandlers(self)
        self.scsi = scsi = ScsiHandlers(self)
        self.debounced = (block.pending, config.pending)
        self.routes: dict[type, Callable[[Any], None]] = {
            # a source's event: accepted by the loop
            BlockEvent: block.accept,
            ScsiEvent: scsi.accept,
            ConfigEvent: config.accept,
            DomainEvent: domains.accept,
            PciEvent: functions.accept,
            Resync: self._lost_events,
            _Closed: self._closed,
            # work: in the loop, or (with a guest) in the guest's worker
            BlockSettled: block.handle_block,
            DeviceAppeared: block.attach_appearing,
            Forward: block.forward,
            DiskGone: block.device_gone,
            Replug: block.replug,
            ResizeDisks: block.resize_disks,
            ApplyConfig: config.handle_config,
            ReconcileGuest: domains.reconcile_domain,
            ApplyPorts: domains.apply_ports,
            FunctionGone: functions.gone,
            FunctionBack: functions.back,
            ScsiSync: scsi.sync,
        }

    def offer(self, item: object) -> None:
        """Queue an event or work item from any thread, never blocking: when the queue is
        full the item is dropped and a full reconciliation is due."""
        work = isinstance(item, Work)
        if work:
            with self._work_lock:
                self._work_queued += 1
        try:
            self.events.put_nowait(item)
        except queue.Full:
            if work:
                self._took(item)
            metrics.DROPPED.inc()
            self.resync.set()

    def _took(self, item: object) -> None:
        """An item left the queue (taken, or dropped): one work item fewer is waiting."""
        if isinstance(item, Work):
            with self._work_lock:
                self._work_queued -= 1

    def devices_changed(self, guest: str | None = None) -> None:
        """`guest`'s devices (with None: any guest's) changed or may have: what was read
        of them is stale."""
        self.disks.invalidate(guest)
        self.guests.invalidate(guest)
        self.block.forget(guest)

    def host_view(self) -> HostView:
        """What a check against every guest needs, from the agent's cache of them."""
        return CachedHostView(self.conn, self.guests)

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
                subscribe(conn, self.offer)
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
        self.devices_changed()
        log.info("connected to %s", self.options.uri)

    def _on_close(self, _conn, _reason: int, conn: libvirt.virConnect) -> None:
        self.offer(_Closed(conn))

    def _closed(self, event: _Closed) -> None:
        raise ConnectionLost(event.conn)

    def _drop_connection(self) -> None:
        log.warning("connection to libvirt lost; reconnecting")
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass

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
        self._step(self._open_device_database)
        answering = None
        if self.options.hook_socket is not None and not self.options.once:
            from agent.daemon.hook_service import HookService

            answering = HookService(self.options.hook_socket)
            self._step(answering.start)
        self.connect()
        waiting: list[object] = []
        if self.options.startup_reconcile:
            self._step(self.reconcile, "start")
            waiting = self._settle(None if self.options.once else STARTUP_WAIT)
        if self.options.once:
            return
        sd_notify("READY=1")
        log.info(
            "ready (block events from %s, configs in %s)", source or "-", self.options.guests_dir
        )
        for event in waiting:
            self._step(self._dispatch, event)
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
            self._took(event)
            self._step(self._dispatch, event)
            self._step(self._dispatch_due)
            if time.monotonic() - checked > ALIVE_CHECK:
                checked = time.monotonic()
                if self.conn is not None and not _alive(self.conn):
                    self._drop_connection()
        sd_notify("STOPPING=1")
        if answering is not None:
            answering.stop()

    def _settle(self, timeout: float | None) -> list[object]:
        """Run the work the first reconciliation queued, and the work that leads to, until
        none is left or `timeout` passed. The sources' events wait: returned in order."""
        deadline = None if timeout is None else time.monotonic() + timeout
        waiting: list[object] = []
        while not self.stopping and (deadline is None or time.monotonic() < deadline):
            if self.workers.wait_idle(0) and self._work_queued == 0:
                break
            try:
                item = self.events.get(timeout=SETTLE_POLL)
            except queue.Empty:
                continue
            self._took(item)
            if isinstance(item, Work):
                self._step(self._dispatch, item)
            elif item is not None:
                waiting.append(item)
        return waiting

    def _open_device_database(self) -> None:
        """At first use, the device database is made (the host's own devices restricted)."""
        from agent.devices import database

        db = database.load()
        log.info("device database %s: %d entries", database.db_path(), len(db.entries))

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
        deadlines = [due for source in self.debounced for due in source.deadlines()]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else ALIVE_CHECK

    def _dispatch(self, item: object) -> None:
        """Hand an event or work item to its handler (see `routes`)."""
        if item is None:
            return
        handler = self.routes[type(item)]
        if not isinstance(item, Work):
            handler(item)
        elif item.guest is None:
            self._guarded(handler, item)
        else:
            self.submit(item.guest, handler, item)

    def _dispatch_due(self) -> None:
        """Hand on the block devices and config files whose debounce window ended."""
        now = time.monotonic()
        for source in self.debounced:
            for work in source.due(now):
                self._dispatch(work)

    def _lost_events(self, event: Resync) -> None:
        metrics.EVENTS.labels(event.source).inc()
        self.resync.set()

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

    # ---- the level-triggered safety net -------------------------------------------------

    def reconcile(self, reason: str = "start") -> None:
        """Apply every config file, bring every running guest in line (ports, disks).

        The guests' parts run in their workers; this returns once they are handed on.
        """
        start = time.monotonic()
        metrics.RECONCILES.labels(reason).inc()
        host = HostView(self.conn)
        for v in host.vswitches:
            if v.up:  # restores the bridges after a host reboot
                self._guarded(vswitches.start, host, v)
        for path in self.configs.paths():
            self._dispatch(ApplyConfig(path.stem, path))
        for dom in self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            self._dispatch(ReconcileGuest(dom.name()))
        self._guarded(self.scsi.sync_all)  # attached SCSI devices gone or back meanwhile
        self.devices_changed()
        self.disks.refresh(self.conn)  # read now, not at the next event
        log.info("reconcile (%s) queued in %.1f ms", reason, (time.monotonic() - start) * 1e3)


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
