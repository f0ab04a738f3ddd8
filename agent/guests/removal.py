"""Hot-unplug done the way Nova does it: register for DEVICE_REMOVED and
DEVICE_REMOVAL_FAILED *before* detaching, wait for one of them, never re-send.
"""

from __future__ import annotations

import threading
import time

import libvirt

from agent.errors import HostError

#: How long a guest may take to let go of an unplugged device (disk, NIC, PCI function).
#: A PCI function under nested virtualization on a loaded machine took 30.4 s.
UNPLUG_TIMEOUT = 60.0


class RemovalWatch:
    """Collects device-removal events of one domain; use as a context manager."""

    def __init__(self, conn: libvirt.virConnect, dom: libvirt.virDomain) -> None:
        self._conn = conn
        self._dom = dom
        self._cond = threading.Condition()
        self._removed: set[str] = set()
        self._failed: set[str] = set()
        self._ids: list[int] = []

    def __enter__(self) -> RemovalWatch:
        self._ids.append(
            self._conn.domainEventRegisterAny(
                self._dom, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, self._on_removed, None
            )
        )
        self._ids.append(
            self._conn.domainEventRegisterAny(
                self._dom, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED, self._on_failed, None
            )
        )
        return self

    def __exit__(self, *_exc: object) -> None:
        for callback_id in self._ids:
            try:
                self._conn.domainEventDeregisterAny(callback_id)
            except libvirt.libvirtError:
                pass

    def _on_removed(self, _conn, _dom, alias: str, _opaque) -> None:
        with self._cond:
            self._removed.add(alias)
            self._cond.notify_all()

    def _on_failed(self, _conn, _dom, alias: str, _opaque) -> None:
        with self._cond:
            self._failed.add(alias)
            self._cond.notify_all()

    def wait(self, alias: str, timeout: float) -> None:
        """Block until `alias` is removed; HostError if the guest refused or time ran out."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                left = deadline - time.monotonic()
                done = self._cond.wait_for(
                    lambda: alias in self._removed or alias in self._failed, min(left, 0.5)
                )
                if done or left <= 0:
                    break
                if not self._conn.isAlive():  # libvirtd went away: no event will come
                    raise HostError(
                        f"connection to libvirt lost while waiting for the guest to release "
                        f"device {alias}"
                    )
            if alias in self._failed:
                raise HostError(f"the guest refused to release device {alias}")
            if not done:
                raise HostError(
                    f"the guest did not release device {alias} within {timeout:.0f} s "
                    "(the unplug request stays pending in the guest)"
                )
