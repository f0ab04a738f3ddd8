"""`hpvmremove -P name [-F]`: remove a guest's definition; backing storage is never touched.

What only the definition holds is never lost silently: a guest with a
managed-save image (its saved RAM), NVRAM (UEFI variables) or snapshots is
removed only with `-F`. The guest's config file for the agent
(`GUESTS_DIR/NAME.conf`) is renamed to `NAME.conf.removed`, which the agent
ignores, so the agent does not define the guest again.
"""

from __future__ import annotations

import os
from pathlib import Path

import libvirt

from agent.cli.common import EXIT_OK, connect, entry_point, guest_locked
from agent.cli.options import command_parser
from agent.connection import libvirt_message
from agent.errors import HostError
from agent.guests.inventory import lookup
from translators.errors import HpvmError
from translators.readback import nvram_path

PROG = "hpvmremove"
GUESTS_DIR = Path("/etc/avio/guests")  # the agent's default --guests-dir
REMOVED_SUFFIX = ".removed"
UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
)


def would_be_lost(dom: libvirt.virDomain) -> list[str]:
    """What removing the guest deletes besides its definition."""
    lost = []
    if dom.hasManagedSaveImage(0):
        lost.append("its saved state (managed save: the RAM of the suspended guest)")
    nvram = nvram_path(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    if nvram and os.path.exists(nvram):
        lost.append(f"its NVRAM {nvram}")
    snapshots = dom.snapshotNum(0)
    if snapshots:
        lost.append(f"{snapshots} snapshot(s)")
    return lost


def retire_config(guests_dir: Path, name: str) -> Path | None:
    """NAME.conf -> NAME.conf.removed (replacing an older one); the new path, or None."""
    config = guests_dir / f"{name}.conf"
    if not config.is_file():
        return None
    retired = config.with_name(config.name + REMOVED_SUFFIX)
    try:
        os.replace(config, retired)
    except OSError as err:
        raise HostError(f"cannot rename {config}: {err.strerror}") from None
    return retired


def remove(argv: list[str]) -> int:
    parser = command_parser(PROG, "Remove a guest (its storage is kept).")
    parser.add_argument(
        "-F",
        dest="force",
        action="store_true",
        help="also remove a running guest (powered off first), its saved state, NVRAM "
        "and snapshots",
    )
    parser.add_argument(
        "--guests-dir",
        type=Path,
        default=GUESTS_DIR,
        help=f"the agent's guest config files (default {GUESTS_DIR})",
    )
    options = parser.parse_args(argv)
    conn = connect(options.connect)
    dom = lookup(conn, options.name)
    try:
        if dom.isActive() and not options.force:
            raise HostError(f"guest '{options.name}' is running (stop it, or use -F)")
        lost = [] if options.force else would_be_lost(dom)
        if lost:
            raise HpvmError(
                f"removing guest '{options.name}' would delete {' and '.join(lost)} "
                "(use -F to remove them too)"
            )
        retired = retire_config(options.guests_dir, options.name)
        try:
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(UNDEFINE_FLAGS)
        except libvirt.libvirtError:
            if retired is not None:  # nothing half-done: the config file comes back
                os.replace(retired, retired.with_name(retired.name[: -len(REMOVED_SUFFIX)]))
            raise
    except libvirt.libvirtError as err:
        raise HostError(libvirt_message(err)) from None
    if retired is not None:
        print(
            f"{PROG}: {retired.parent / options.name}.conf renamed to {retired.name}, "
            "so the agent does not define the guest again"
        )
    return EXIT_OK


COMMAND = guest_locked(remove)

main = entry_point(PROG, COMMAND)
