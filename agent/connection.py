"""Opening libvirt, with libvirt's default event loop running in a thread."""

from __future__ import annotations

import threading

import libvirt

from agent.errors import HostError

_loop_lock = threading.Lock()
_loop_started = False


def ensure_event_loop() -> None:
    """Register libvirt's default event implementation and run it (once per process).

    Must happen before a connection is opened for that connection to deliver events.
    """
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.registerErrorHandler(_quiet, None)
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _loop_started = True


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; we report them ourselves."""


def open_connection(uri: str) -> libvirt.virConnect:
    """A read-write connection to `uri` that delivers events."""
    ensure_event_loop()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as err:
        raise HostError(f"cannot connect to {uri}: {err.get_error_message()}") from None


#: What to do about failures libvirt or QEMU report in their own words.
HINTS = {
    "failed to create linux AIO context": (
        "the host ran out of native AIO contexts (one per guest disk): raise "
        "fs.aio-max-nr, e.g. sysctl -w fs.aio-max-nr=1048576 (scripts/install.sh does)"
    ),
}


def libvirt_message(err: libvirt.libvirtError) -> str:
    """libvirt's message on one line (with what to do, for the failures we know)."""
    message = " ".join((err.get_error_message() or str(err)).split())
    hints = [hint for cause, hint in HINTS.items() if cause in message]
    return "; ".join([message, *hints])
