"""The libvirt hook's fast path: the running agent does the hook's work, from memory.

libvirt runs the qemu hook at every guest start (`prepare`, `started`). On its own,
the hook is a Python process that imports lxml and the translators and reads every
other guest's file to check storage: 60-70 ms per call, 300 ms with 1,000 domains.
The agent has all of that loaded, so the hook first asks it (`agent/hook_client.py`,
a stdlib-only client that starts in about 10 ms) over a root-only unix socket:

    client -> agent:  OPERATION NUL GUEST NUL domain-XML, then end of stream
    agent -> client:  "ok\\n"     the agent did the operation's work, as the hook would
                      "local\\n"  the hook must do it itself

The agent answers "ok" only when the hook's own code (`agent.hook`), run here, passed:
every refusal, error or anything the agent may not do in its sandbox (binding a DIO
function to vfio-pci) is answered "local", and the hook runs as before and gives
libvirt its own refusal. So the agent can only save the hook's time, never decide
differently. Other guests' files are read again only when they changed
(`SavedGuests`), and each location's identity is worked out at every request.

libvirtd waits for the hook while it holds the guest's job: nothing here calls libvirt.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from pathlib import Path

from agent import hook
from agent.daemon import metrics
from agent.devices.pci import Function
from agent.errors import HostError
from agent.storage.startcheck import claims_from_files, read_claiming_guest
from translators.model import Guest

log = logging.getLogger("avio.hook")

#: Where the agent listens when run by its systemd unit (`--hook-socket`), and where the
#: client looks by default (`agent/hook_client.py` keeps its own copy: it imports nothing).
DEFAULT_SOCKET = Path("/run/avio/hook.sock")
READ_TIMEOUT = 2.0  # a client that sends nothing for this long is dropped
MAX_REQUEST = 16 * 1024 * 1024
OPERATIONS = ("prepare", "started")


class SavedGuests:
    """Other guests' storage from libvirt's files, read again only when a file changed
    (its inode, size, mtime or ctime), forgotten when its file is gone."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[tuple[int, ...], Guest | None]] = {}
        self._seen: set[str] = set()
        self.reads = 0  # files parsed (tests count them)

    def read(self, path: str) -> Guest | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        self._seen.add(path)
        kept = self._kept.get(path)
        if kept is not None and kept[0] == signature:
            return kept[1]
        guest = read_claiming_guest(path)
        self.reads += 1
        self._kept[path] = (signature, guest)
        return guest

    def begin(self) -> None:
        self._seen = set()

    def end(self) -> None:
        """After a request that listed every file: those not listed are gone."""
        for path in self._kept.keys() - self._seen:
            del self._kept[path]


class _BindRefused(HostError):
    """The agent may not write sysfs: the hook binds the function itself."""


def _refuse_bind(function: Function) -> None:
    raise _BindRefused(f"PCI function {function.address} needs binding to vfio-pci")


class HookService:
    """Answers the hook's requests on a unix socket, one at a time, in its own thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved = SavedGuests()
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self._inode: int | None = None
        self.warmed = threading.Event()  # the first reading of the others' files is done

    def start(self) -> bool:
        """Listen (False, and the hook does its own work, when another agent serves the path)."""
        if _served(self.path):
            log.warning("hook socket %s is served by another process: not serving it", self.path)
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # left by an agent that was killed
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.path))
        os.chmod(self.path, 0o600)  # root only (the peer's uid is checked too)
        server.listen(64)
        self._server, self._inode = server, os.stat(self.path).st_ino
        threading.Thread(target=self._serve, name="hook", daemon=True).start()
        log.info("answering the libvirt hook on %s", self.path)
        return True

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        try:
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()
        except OSError:
            pass
        server.close()

    def warm(self) -> None:
        """Read the other guests' files now, not at the first guest start."""
        with self._lock:
            self.saved.begin()
            claims_from_files(hook.domain_dirs(), exclude="", read=self.saved.read)
            self.saved.end()

    def _serve(self) -> None:
        try:
            self.warm()
        except Exception as err:  # the first request reads them
            log.debug("hook: reading the guests' files failed: %s", err)
        self.warmed.set()
        while self._server is not None:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed by stop()
            with conn:
                try:
                    self._one(conn)
                except Exception as err:  # a client's problem never stops the service
                    log.debug("hook request failed: %s", err)

    def _one(self, conn: socket.socket) -> None:
        if not _trusted(conn):
            return
        conn.settimeout(READ_TIMEOUT)
        request = _receive(conn)
        operation, guest, xml = request.split(b"\0", 2)
        answer = self.answer(operation.decode(), os.fsdecode(guest), xml.decode())
        conn.sendall(answer.encode() + b"\n")

    def answer(self, operation: str, guest: str, xml: str) -> str:
        """ "ok" when the hook's work for `operation` is done and passed, else "local"."""
        if operation not in OPERATIONS:
            return "local"
        with self._lock:
            try:
                vswitches = hook.vswitch_definitions(hook.networks_dir())
                if operation == "prepare":
                    self.saved.begin()
                    hook.prepare(xml, vswitches, read=self.saved.read, bind=_refuse_bind)
                    self.saved.end()
                elif vswitches:
                    hook.started(xml, vswitches)
            except Exception as err:  # the hook decides, and says why
                log.info("hook: guest %s %s left to the hook: %s", guest, operation, err)
                metrics.HOOK_ANSWERS.labels(operation, "local").inc()
                return "local"
        log.debug("hook: guest %s %s answered", guest, operation)
        metrics.HOOK_ANSWERS.labels(operation, "ok").inc()
        return "ok"


def _served(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _trusted(conn: socket.socket) -> bool:
    """Only root (or the agent's own user) may ask: the answer lets a guest start."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (0, os.geteuid())


def _receive(conn: socket.socket) -> bytes:
    chunks, size = [], 0
    while chunk := conn.recv(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REQUEST:
            raise ValueError("request too large")
    return b"".join(chunks)
