"""`avio-agent`: forward host storage events to running guests; apply guest config files."""

from __future__ import annotations

import argparse
import ctypes
import logging
import sys
from pathlib import Path

from agent.cli.common import default_uri
from agent.cli.options import add_connect
from agent.daemon.service import Agent, AgentOptions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="avio-agent", description=__doc__)
    add_connect(parser)
    parser.add_argument(
        "--guests-dir",
        type=Path,
        default=Path("/etc/avio/guests"),
        help="guest config files, NAME.conf (default /etc/avio/guests)",
    )
    parser.add_argument(
        "--metrics", metavar="ADDR:PORT", help="serve Prometheus metrics, e.g. 127.0.0.1:9477"
    )
    parser.add_argument(
        "--on-remove",
        choices=("detach", "keep"),
        default="detach",
        help="when a backing device disappears: unplug the disk (default) or keep it",
    )
    parser.add_argument(
        "--debounce",
        type=float,
        default=0.005,
        metavar="SECONDS",
        help="coalesce events of one device within this window (default 0.005)",
    )
    parser.add_argument(
        "--udev-buffer",
        type=int,
        default=32 * 1024 * 1024,
        metavar="BYTES",
        help="udev netlink receive buffer (default 32 MiB; events beyond it are lost and "
        "the agent reconciles)",
    )
    parser.add_argument(
        "--hook-socket",
        type=Path,
        metavar="PATH",
        help="answer the libvirt qemu hook on this unix socket, so that it need not start "
        "Python's imports and read every guest's file (the systemd unit: /run/avio/hook.sock)",
    )
    parser.add_argument("--once", action="store_true", help="reconcile once and exit")
    parser.add_argument(
        "--no-startup-reconcile",
        dest="startup_reconcile",
        action="store_false",
        help="skip the first reconciliation (testing)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    options = AgentOptions(
        uri=default_uri(args.connect),
        guests_dir=args.guests_dir,
        on_remove=args.on_remove,
        debounce=args.debounce,
        udev_buffer=args.udev_buffer,
        metrics=args.metrics,
        hook_socket=args.hook_socket,
        once=args.once,
        startup_reconcile=args.startup_reconcile,
    )
    limit_malloc_arenas()
    try:
        Agent(options).run()
    except KeyboardInterrupt:
        pass


M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Two malloc arenas for the whole agent (glibc's MALLOC_ARENA_MAX=2).

    glibc gives threads that allocate arenas of their own, up to 8 per core, and each
    keeps what was freed in it: the agent's worker threads would hold memory they
    no longer use. Nothing changes where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_ARENA_MAX, arenas)
    except (OSError, AttributeError):
        pass
