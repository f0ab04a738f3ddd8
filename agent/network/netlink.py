"""Linux bridges and uplinks through netlink (pyroute2); never `ip`/`brctl`.

pyroute2 is imported when a socket is first opened (80-300 ms, 14 MB): commands
and the agent that never touch a bridge do without it.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import HostError

if TYPE_CHECKING:
    from pyroute2.iproute.linux import IPRoute


@contextlib.contextmanager
def route_socket() -> Iterator[IPRoute]:
    """A netlink route socket, closed afterwards."""
    from pyroute2.iproute.linux import IPRoute

    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def exists(name: str) -> bool:
    """Is there an interface `name` (in this network namespace)? No pyroute2 needed."""
    try:
        socket.if_nametoindex(name)
    except (OSError, ValueError):
        return False
    return True


def is_up(name: str) -> bool:
    """Is the interface administratively up?"""
    with route_socket() as ipr:
        index = _index(ipr, name)
        return index is not None and bool(ipr.link("get", index=index)[0]["flags"] & 1)


IN6_ADDR_GEN_MODE_NONE = 1


def _no_ipv6_address(ipr: IPRoute, index: int) -> None:
    """The host takes no address on a vswitch bridge, not even IPv6 link-local.

    Through netlink, so it needs no write access to /proc/sys (the agent's unit
    keeps that read-only).
    """
    spec = [["AF_INET6", {"attrs": [["IFLA_INET6_ADDR_GEN_MODE", IN6_ADDR_GEN_MODE_NONE]]}]]
    ipr.link("set", index=index, IFLA_AF_SPEC={"attrs": spec})


def ensure_bridge(name: str) -> None:
    """Create the bridge and bring it up (port VLANs are enforced per port: `portfilter`)."""
    with route_socket() as ipr:
        from pyroute2.netlink.exceptions import NetlinkError

        index = _index(ipr, name)
        try:
            if index is None:
                ipr.link("add", ifname=name, kind="bridge")
                index = _index(ipr, name)
                _no_ipv6_address(ipr, index)
            ipr.link("set", index=index, state="up")
        except NetlinkError as err:
            raise HostError(f"cannot create bridge {name}: {err.args[1]}") from None


def _link_if_present(name: str, command: str, **attributes: object) -> None:
    """`ip link COMMAND` on interface `name`; nothing when it does not exist."""
    with route_socket() as ipr:
        index = _index(ipr, name)
        if index is not None:
            ipr.link(command, index=index, **attributes)


def set_down(name: str) -> None:
    _link_if_present(name, "set", state="down")


def delete(name: str) -> None:
    _link_if_present(name, "del")


def master_of(name: str) -> str | None:
    """The bridge an interface is a port of, if any."""
    with route_socket() as ipr:
        index = _index(ipr, name)
        if index is None:
            return None
        master = ipr.link("get", index=index)[0].get_attr("IFLA_MASTER")
        if not master:
            return None
        return ipr.link("get", index=master)[0].get_attr("IFLA_IFNAME")


def is_bridge(name: str) -> bool:
    return Path(f"/sys/class/net/{name}/bridge").exists()


IFF_UP = 0x1


def bridge_ready(name: str) -> bool:
    """Is `name` a bridge and up? Read from sysfs: no netlink socket, no pyroute2."""
    try:
        flags = int(Path(f"/sys/class/net/{name}/flags").read_text(), 16)
    except (OSError, ValueError):
        return False
    return is_bridge(name) and bool(flags & IFF_UP)


def port_of(uplink: str) -> str | None:
    """The bridge (or bond) `uplink` is a port of, from sysfs; None when none."""
    try:
        return Path(f"/sys/class/net/{uplink}/master").resolve(strict=True).name
    except OSError:
        return None


def enslave(uplink: str, bridge: str) -> None:
    """Make the host interface `uplink` a port of `bridge`, and bring it up."""
    with route_socket() as ipr:
        from pyroute2.netlink.exceptions import NetlinkError

        port, master = _index(ipr, uplink), _index(ipr, bridge)
        if port is None:
            raise HostError(f"uplink {uplink} does not exist")
        try:
            ipr.link("set", index=port, master=master)
            ipr.link("set", index=port, state="up")
        except NetlinkError as err:
            raise HostError(f"cannot add {uplink} to {bridge}: {err.args[1]}") from None


def release(uplink: str) -> None:
    _link_if_present(uplink, "set", master=0)


AF_INET, AF_INET6 = 2, 10
MAIN_TABLE, LOCAL_TABLE = 254, 255


def _ipv6_automatic(address: str | None) -> bool:
    """Link-local (fe80::/10) and multicast: every IPv6 interface has them."""
    return bool(address) and address.lower().startswith(("fe8", "fe9", "fea", "feb", "ff"))


def _oifs(route) -> set[int]:
    found = {route.get_attr("RTA_OIF")}
    for hop in route.get_attr("RTA_MULTIPATH") or []:
        found.add(hop.get("oif"))
    return found


def host_traffic(name: str) -> tuple[list[str], list[str]]:
    """(addresses, routes) the host itself has on interface `name`.

    IPv6 link-local addresses and routes (which every IPv6 interface has) do
    not count; routes of every table but `local` do.
    """
    with route_socket() as ipr:
        index = _index(ipr, name)
        if index is None:
            return [], []
        addresses = []
        for addr in ipr.get_addr(index=index):
            address = addr.get_attr("IFA_ADDRESS")
            if addr["family"] == AF_INET6 and _ipv6_automatic(address):
                continue
            addresses.append(f"{address}/{addr['prefixlen']}")
        routes = []
        for family in (AF_INET, AF_INET6):
            for route in ipr.get_routes(family=family):
                table = route.get_attr("RTA_TABLE") or route["table"]
                dst = route.get_attr("RTA_DST")
                if index not in _oifs(route) or table == LOCAL_TABLE:
                    continue
                if family == AF_INET6 and _ipv6_automatic(dst):
                    continue
                gateway = route.get_attr("RTA_GATEWAY")
                text = f"{dst}/{route['dst_len']}" if dst else "default"
                routes.append(text + (f" via {gateway}" if gateway else ""))
        return addresses, routes


def mac_of(name: str) -> str | None:
    with route_socket() as ipr:
        index = _index(ipr, name)
        return ipr.link("get", index=index)[0].get_attr("IFLA_ADDRESS") if index else None


def ipv4_of(name: str) -> str | None:
    with route_socket() as ipr:
        index = _index(ipr, name)
        if index is None:
            return None
        for addr in ipr.get_addr(index=index, family=2):
            return addr.get_attr("IFA_ADDRESS")
    return None


def _lower(name: str, seen: set[str]) -> None:
    """`name` and the interfaces under it (bridge ports, bond slaves, a VLAN's parent)."""
    if name in seen:
        return
    seen.add(name)
    for link in Path(f"/sys/class/net/{name}").glob("lower_*"):
        _lower(link.name[len("lower_") :], seen)


def management_nics() -> list[tuple[str, str]]:
    """(name, why) of the interfaces the host is reached through: those of the default
    route, or where there is none, those with addresses (loopback and IPv6 link-local
    aside); with the interfaces under them (a bridge's ports, a bond's slaves)."""
    with route_socket() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        top: dict[str, str] = {}
        for family in (AF_INET, AF_INET6):
            for route in ipr.get_routes(family=family, table=MAIN_TABLE):
                if route["dst_len"] == 0 and not route.get_attr("RTA_DST"):
                    for oif in _oifs(route):
                        if oif in names:
                            top.setdefault(names[oif], "carries the host's default route")
        if not top:
            for addr in ipr.get_addr():
                name = names.get(addr["index"])
                address = addr.get_attr("IFA_ADDRESS")
                if not name or name == "lo":
                    continue
                if addr["family"] == AF_INET6 and _ipv6_automatic(address):
                    continue
                top.setdefault(name, "carries the host's addresses")
    found: dict[str, str] = {}
    for name, why in top.items():
        under: set[str] = set()
        _lower(name, under)
        for member in sorted(under):
            found.setdefault(member, why if member == name else f"is under {name}, which {why}")
    return sorted(found.items())
