"""`hpvmconsole -P name [-c CMD] [-q]`: the guest's virtual MP and its serial console.

As on HPVM: a `[name] vMP>` prompt, `CO` attaches to the console and Ctrl-B
returns to the prompt, `CL` shows the console log, `X` leaves. The console is
libvirt's console stream of the guest's serial port (the one logged to
/var/log/libvirt/qemu/NAME-console.log). `-c CMD` runs one vMP command and
exits (for scripts: `-c CO` sends standard input to the console and prints
what the guest answers until it is quiet); `-q` leaves out the menu.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import threading
import time
import tty
from collections.abc import Iterator

import libvirt

from agent.cli.common import EXIT_OK, connect, entry_point
from agent.cli.options import command_parser
from agent.connection import libvirt_message
from agent.errors import HostError
from agent.guests.inventory import lookup, state_of
from translators.errors import HpvmError
from translators.render import console_log_path

PROG = "hpvmconsole"
CTRL_B = b"\x02"
QUIET_AFTER_INPUT = 1.0  # -c CO: seconds of console silence that end a scripted session
ANSWER_WAIT = 15.0  # -c CO: how long a guest that says nothing after the input is waited for
LOG_TAIL = 200  # lines CL shows

MENU = """
       vMP MAIN MENU

         CO: Console
         CL: Console Log
         VM: Virtual Machine Status
         HE: Main Help Menu
         X: Exit Connection
"""
HELP = """
  CO  attach to the guest's console; Ctrl-B returns to the vMP
  CL  show the last lines of the console log
  VM  show the guest's state
  HE  this help
  X   leave hpvmconsole (the guest goes on running)
"""


class Console:
    """A guest's console stream: output written to `out` from libvirt's event thread."""

    def __init__(self, conn: libvirt.virConnect, dom: libvirt.virDomain, out) -> None:
        self.out = out
        self.closed = threading.Event()
        self.last_output = time.monotonic()
        self.stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        try:
            dom.openConsole(None, self.stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        except libvirt.libvirtError as err:
            raise HostError(f"cannot open the console: {libvirt_message(err)}") from None
        events = (
            libvirt.VIR_STREAM_EVENT_READABLE
            | libvirt.VIR_STREAM_EVENT_ERROR
            | libvirt.VIR_STREAM_EVENT_HANGUP
        )
        self.stream.eventAddCallback(events, self._readable, None)

    def _readable(self, stream: libvirt.virStream, events: int, _opaque) -> None:
        if events & libvirt.VIR_STREAM_EVENT_READABLE:
            try:
                data = stream.recv(4096)
            except libvirt.libvirtError:
                data = b""
            if data == -2:  # nothing after all (EAGAIN)
                return
            if data:
                self.last_output = time.monotonic()
                self.out.write(data)
                self.out.flush()
                return
        self._finish()

    def _finish(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            with contextlib.suppress(libvirt.libvirtError):
                self.stream.eventRemoveCallback()

    def send(self, data: bytes) -> None:
        while data and not self.closed.is_set():
            sent = self.stream.send(data)
            if sent == -2:  # the stream is full: the guest is slow to read
                time.sleep(0.01)
                continue
            data = data[sent:]

    def close(self) -> None:
        self._finish()
        with contextlib.suppress(libvirt.libvirtError):
            self.stream.finish()


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Keys go to the guest one by one (no local echo or line editing) while attached."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)  # not TCSAFLUSH: keys typed already go to the guest
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def attach(conn: libvirt.virConnect, dom: libvirt.virDomain, interactive: bool) -> None:
    """Connect standard input and output to the console until Ctrl-B (or end of input)."""
    sys.stdout.flush()
    out = sys.stdout.buffer
    fd = sys.stdin.fileno()
    with raw_terminal(fd):
        if interactive:
            out.write(b"[Use Ctrl-B to return to vMP main menu.]\r\n")
            out.flush()
        console = Console(conn, dom, out)
        try:
            while not console.closed.is_set():
                ready, _, _ = select.select([fd], [], [], 0.2)
                if not ready:
                    continue
                data = os.read(fd, 1024)
                if not data:  # end of input: wait for the guest's answer, then leave
                    ended = time.monotonic()
                    while not console.closed.is_set():
                        now = time.monotonic()
                        answered = console.last_output > ended
                        if answered and now - console.last_output >= QUIET_AFTER_INPUT:
                            return
                        if not answered and now - ended >= ANSWER_WAIT:
                            return
                        time.sleep(0.05)
                    return
                before, ctrl_b, _ = data.partition(CTRL_B)
                console.send(before.replace(b"\n", b"\r") if not interactive else before)
                if ctrl_b:
                    return
        finally:
            console.close()
    if console.closed.is_set():
        raise HostError(f"the console of guest '{dom.name()}' closed (the guest stopped)")


def read_line(fd: int) -> str:
    """One line of input, unbuffered (what follows it is the console's)."""
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line.decode(errors="replace")


def show_log(name: str) -> None:
    path = console_log_path(name)
    try:
        with open(path, "rb") as log:
            lines = log.read().splitlines()[-LOG_TAIL:]
    except FileNotFoundError:
        lines = []
    except OSError as err:
        raise HostError(f"cannot read {path}: {err.strerror}") from None
    out = sys.stdout.buffer
    for line in lines:
        out.write(line + b"\n")
    out.flush()


def command(conn, dom, name: str, word: str, interactive: bool) -> bool:
    """Run one vMP command; False when it is X (leave)."""
    word = word.strip().upper()
    if word in ("X", "EX", "EXIT"):
        return False
    if word == "CO":
        if not dom.isActive():
            raise HostError(f"guest '{name}' is not running: its console is closed")
        attach(conn, dom, interactive)
    elif word == "CL":
        show_log(name)
    elif word == "VM":
        print(f"Guest '{name}': {state_of(dom)}")
    elif word in ("HE", "MA", ""):
        print(HELP if word == "HE" else MENU)
    else:
        raise HpvmError(f"unknown vMP command '{word[:20]}' (HE lists them)")
    return True


def console(argv: list[str]) -> int:
    parser = command_parser(PROG, "The guest's virtual MP and serial console.")
    parser.add_argument("-c", dest="command", metavar="CMD", help="run one vMP command, exit")
    parser.add_argument("-q", dest="quiet", action="store_true", help="no menu or banner")
    options = parser.parse_args(argv)
    conn = connect(options.connect)
    dom = lookup(conn, options.name)
    if options.command is not None:
        command(conn, dom, options.name, options.command, interactive=False)
        return EXIT_OK
    if not options.quiet:
        print(MENU)
    while True:
        sys.stdout.write(f"[{options.name}] vMP> ")
        sys.stdout.flush()
        line = read_line(sys.stdin.fileno())
        if not line:
            print()
            return EXIT_OK
        try:
            if not command(conn, dom, options.name, line, interactive=True):
                return EXIT_OK
        except (HpvmError, HostError) as err:  # the prompt stays, as on the vMP
            print(f"{PROG}: error: {err}", file=sys.stderr)
        if line.strip().upper() == "CO":
            sys.stdout.write("\r\n")


COMMAND = console

main = entry_point(PROG, COMMAND)
