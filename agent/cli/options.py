"""The commands' parsers: each raises `HpvmError` (one line, exit 2) and takes `--connect`."""

from __future__ import annotations

import argparse
import functools

from translators.options import OptionParser, add_guest_options, parse_file_name

CONNECT_HELP = "libvirt URI (default $LIBVIRT_DEFAULT_URI, else qemu:///system)"


def command_parser(
    prog: str,
    description: str,
    guest: str | None = "guest name",
    *,
    guest_required: bool = True,
    short_help: bool = True,
) -> argparse.ArgumentParser:
    """A command's parser with `-P` (when `guest` says what it names) and `--connect`.

    `short_help=False` leaves `-h` to the command (hpvmnet: halt; hpvmmigrate: the host).
    """
    parser = OptionParser(prog=prog, description=description, add_help=short_help)
    if not short_help:
        parser.add_argument("--help", action="help", help="show this help and exit")
    if guest:
        parser.add_argument("-P", dest="name", required=guest_required, help=guest)
    add_connect(parser)
    return parser


def add_connect(parser: argparse.ArgumentParser) -> None:
    """`--connect URI` (see `agent.cli.common.connect`)."""
    parser.add_argument("--connect", metavar="URI", help=CONNECT_HELP)


def add_flags(parser: argparse._ActionsContainer, *flags: tuple[str, str, str]) -> None:
    """On/off options, each given as (option, dest, help)."""
    for option, dest, text in flags:
        parser.add_argument(option, dest=dest, action="store_true", help=text)


def _add_print_xml(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--print-xml", action="store_true", help="print the domain XML and change nothing"
    )


# Parsers are built once per process (argparse's setup dominates parsing time)
# and only ever used through parse_args.
@functools.cache
def create_parser() -> argparse.ArgumentParser:
    parser = OptionParser(prog="hpvmcreate", description="Create a guest from HPVM options.")
    parser.add_argument("-P", dest="name", required=True, help="guest name")
    add_guest_options(parser)
    parser.add_argument(
        "-s",
        dest="check_only",
        action="store_true",
        help="check the configuration only; create nothing",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        type=parse_file_name,
        help="options from a guest config file (such as `hpvmstatus -P NAME -d` output), "
        "read before the command line's",
    )
    add_connect(parser)
    _add_print_xml(parser)
    return parser


@functools.cache
def modify_parser() -> argparse.ArgumentParser:
    parser = OptionParser(prog="hpvmmodify", description="Change a guest, live where it runs.")
    parser.add_argument("-P", dest="name", required=True, help="guest name")
    add_guest_options(parser, "; accepted but ignored: set by hpvmcreate")
    for flag, dest, what in (("-d", "delete", "delete"), ("-m", "modify", "modify")):
        parser.add_argument(
            flag,
            dest=dest,
            action="append",
            default=[],
            metavar="RSRC",
            help=f"{what} a resource (repeatable)",
        )
    add_connect(parser)
    _add_print_xml(parser)
    return parser
