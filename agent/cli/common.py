"""What every command shares: one-line errors, exit statuses, warnings."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from agent.errors import HostError
from translators.errors import HpvmError
from translators.text import printable

EXIT_OK = 0
EXIT_HOST = 1
EXIT_INPUT = 2


def one_line(message: str) -> str:
    """`message` as one printable line: whitespace runs joined, control characters escaped."""
    return printable(" ".join(message.split()))


def warn(prog: str, messages: Sequence[str]) -> None:
    for message in messages:
        print(f"{prog}: warning: {one_line(message)}", file=sys.stderr)


def fail(prog: str, message: str) -> None:
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)


def entry_point(prog: str, command: Callable[[list[str]], int]) -> Callable[[], NoReturn]:
    """A console script's `main`: runs `command` on sys.argv and exits with its status."""

    def main() -> NoReturn:
        sys.exit(run(prog, command))

    return main


def run(prog: str, main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run a command's main, turning errors into one line and an exit status.

    No exception gets through: an unexpected one is a bug, reported on one
    line (exit 1) with its traceback only when AVIO_DEBUG is set.
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        return main(args)
    except HpvmError as err:
        fail(prog, str(err))
        return EXIT_INPUT
    except HostError as err:
        fail(prog, str(err))
        return EXIT_HOST
    except KeyboardInterrupt:
        return 130
    except SystemExit as err:  # argparse's --help
        return err.code if isinstance(err.code, int) else EXIT_HOST
    except Exception as err:
        if type(err).__name__ == "libvirtError" or isinstance(err, OSError):
            fail(prog, str(err))  # libvirt.libvirtError, OSError from the host
            return EXIT_HOST
        if os.environ.get("AVIO_DEBUG"):
            traceback.print_exc()
        fail(prog, f"internal error ({type(err).__name__}: {err}); please report it")
        return EXIT_HOST


def guest_locked(main: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
    """A command's main run holding the lock of the guest its `-P` names (agent.guests.locks):
    commands and the agent never write one guest's definition at the same time."""

    def locked(argv: list[str]) -> int:
        name = _guest_arg(argv)
        if not name or "--print-xml" in argv or "-s" in argv:
            return main(argv)  # changes nothing (or the parser reports the missing -P)
        from agent.guests.locks import guest_lock

        with guest_lock(name):
            return main(argv)

    return locked


def _guest_arg(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "-P" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("-P") and len(arg) > 2:
            return arg[2:]
    return None


def default_uri(option: str | None) -> str:
    """`--connect`, else LIBVIRT_DEFAULT_URI, else qemu:///system."""
    return option or os.environ.get("LIBVIRT_DEFAULT_URI") or "qemu:///system"


def not_implemented(prog: str) -> Callable[[], None]:
    """Entry point for a command that is not built yet: says so, exit 2."""

    def entry() -> None:
        fail(prog, "not implemented yet")
        sys.exit(EXIT_INPUT)

    return entry


def connect(uri_option: str | None):  # -> libvirt.virConnect
    """Open libvirt for a command (`--connect`, $LIBVIRT_DEFAULT_URI, qemu:///system)."""
    from agent.connection import open_connection

    return open_connection(default_uri(uri_option))
