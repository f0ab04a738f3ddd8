"""`hpvmmigrate -P name -h host [-o] [-D] [-N newname] [-F]`: move a guest to another host.

libvirt migration (virDomainMigrateToURI3, peer to peer): `-o` online (live:
the guest runs on, its disks and NICs work on the target), otherwise offline
(the guest must be off: its definition moves). The target's definition is
persistent; the source's stays, not runnable, unless `-D` removes it. The
target is a libvirt URI, or a host name for qemu+ssh://HOST/system. Before
anything moves, the target is checked for the guest's name, its hpvmnet
vswitches, their ports and the guest's MACs; pass-through devices are refused.
"""

from __future__ import annotations

import sys
import time
from urllib.parse import urlsplit

import libvirt

from agent.cli.common import EXIT_OK, connect, default_uri, entry_point, guest_locked
from agent.cli.options import add_flags, command_parser
from agent.connection import libvirt_message, open_connection
from agent.errors import HostError
from agent.guests.inventory import HostView, lookup
from agent.network import vswitch_store
from translators.errors import HpvmError
from translators.migration import NS, PREFIX, passthrough_devices, render_not_runnable
from translators.readback import read_domain
from translators.validate import HostClaims, check_guest

PROG = "hpvmmigrate"


def target_uri(host: str) -> str:
    """A libvirt URI as given, or a host name as qemu+ssh://HOST/system."""
    if "://" in host:
        return host
    if not host or any(c in host for c in "/ @?#") or host.startswith("-"):
        raise HpvmError(f"'{host[:80]}' is neither a libvirt URI nor a host name")
    return f"qemu+ssh://{host}/system"


def data_uri(uri: str) -> str | None:
    """Where QEMU sends the memory: tcp://HOST of the target URI (None: libvirt's choice)."""
    host = urlsplit(uri).hostname
    return f"tcp://{host}" if host else None


def check_target(dom: libvirt.virDomain, tconn: libvirt.virConnect, uri: str, name: str) -> None:
    """Everything the target must offer, checked before anything moves."""
    try:
        tconn.lookupByName(name)
    except libvirt.libvirtError:
        pass
    else:
        raise HostError(f"Target VM Host error - a guest named '{name}' exists on {uri}")
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    devices = passthrough_devices(xml) + passthrough_devices(dom.XMLDesc(0))
    if devices:
        raise HostError(
            f"guest '{dom.name()}' has pass-through devices ({devices[0]}): "
            "they cannot migrate; remove them first"
        )
    guest = read_domain(xml)
    target = HostView(tconn)
    ours = {v.name for v in vswitch_store.all_vswitches(dom.connect())}
    theirs = {v.name for v in target.vswitches}
    for nic in guest.networks:
        if nic.vswitch in ours and nic.vswitch not in theirs:
            raise HostError(
                f"Target VM Host error - vswitch validation failed: no vswitch '{nic.vswitch}' "
                f"on {uri} (hpvmnet -c -S {nic.vswitch} there)"
            )
    guest.name = name
    try:
        # what the target's guests use: MACs, vswitch ports, storage (by path: it is remote)
        check_guest(guest, target.guests_claims(HostClaims()))
    except HpvmError as err:
        raise HostError(f"Target VM Host error - {err}") from None


def migrate(argv: list[str]) -> int:
    # -h is the target host, as in HPVM: --help only.
    parser = command_parser(PROG, "Move a guest to another host.", short_help=False)
    parser.add_argument(
        "-h",
        dest="host",
        required=True,
        metavar="HOST",
        help="target: a libvirt URI, or a host name (qemu+ssh://HOST/system)",
    )
    add_flags(
        parser,
        ("-o", "online", "online: the guest runs on while it moves"),
        ("-D", "delete", "remove the guest's definition from this host afterwards"),
    )
    parser.add_argument("-N", dest="new_name", metavar="NAME", help="the guest's name there")
    add_flags(parser, ("-F", "force", "accepted for HPVM scripts; no check is ever skipped"))
    parser.add_argument(
        "--migrate-uri",
        metavar="URI",
        help="where the memory goes (default tcp://HOST of the target URI)",
    )
    options = parser.parse_args(argv)
    uri = target_uri(options.host)
    name = options.new_name or options.name
    conn = connect(options.connect)
    dom = lookup(conn, options.name)
    running = dom.isActive()
    if running and not options.online:
        raise HostError(
            f"guest '{options.name}' is running: use -o to migrate it online, or stop it first"
        )
    if not running and options.online:
        raise HostError(f"guest '{options.name}' is not running: migrate it offline (no -o)")
    if uri == default_uri(options.connect):
        raise HpvmError(f"{uri} is this host")
    tconn = open_connection(uri)
    check_target(dom, tconn, uri, name)

    flags = libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
    flags |= libvirt.VIR_MIGRATE_LIVE if running else libvirt.VIR_MIGRATE_OFFLINE
    if options.delete:
        flags |= libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    params: dict[str, str] = {}
    if options.new_name:
        params[libvirt.VIR_MIGRATE_PARAM_DEST_NAME] = options.new_name
    memory_uri = options.migrate_uri or data_uri(uri)
    if running and memory_uri:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = memory_uri
    start = time.monotonic()
    try:
        dom.migrateToURI3(uri, params, flags)
    except libvirt.libvirtError as err:
        raise HostError(
            f"migration to {uri} failed, the guest stays here: {libvirt_message(err)}"
        ) from None
    took = time.monotonic() - start
    downtime = ""
    if running:  # libvirt's completed-job statistics, here or (after -D) on the target
        for side in (lambda: dom, lambda: tconn.lookupByName(name)):
            try:
                stats = side().jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            except libvirt.libvirtError:
                continue
            if "downtime" in stats:
                downtime = f", downtime {stats['downtime']} ms"
                break
    if not options.delete:  # HPVM's "Not Runnable" on the source
        reason = f"migrated to {uri} as '{name}' on {time.strftime('%Y-%m-%d %H:%M:%S')}"
        try:
            dom.setAutostart(0)
            dom.setMetadata(
                libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                render_not_runnable(reason),
                PREFIX,
                NS,
                libvirt.VIR_DOMAIN_AFFECT_CONFIG,
            )
        except libvirt.libvirtError as err:
            print(
                f"{PROG}: warning: the definition here could not be marked not runnable: "
                f"{libvirt_message(err)}",
                file=sys.stderr,
            )
    mode = "online" if running else "offline"
    print(f"{PROG}: Guest migrated successfully ({mode}, {took:.1f} s{downtime}).")
    return EXIT_OK


COMMAND = guest_locked(migrate)

main = entry_point(PROG, COMMAND)
