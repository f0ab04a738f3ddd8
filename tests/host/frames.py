"""Raw Ethernet frames for the vswitch tests, run inside a namespace with `ip netns exec`.

python -m tests.host.frames send IFACE MARKER [--vlan N]
    one broadcast frame, ethertype 0x88B5 (local experimental), payload
    MARKER, tagged in-band with 802.1Q VLAN N if given;
python -m tests.host.frames listen IFACE SECONDS
    prints "ready", then one JSON line per frame received: source MAC,
    VLAN (from the kernel's offloaded tag or an in-band 802.1Q header, or
    null), ethertype and, for 0x88B5 frames, the marker;
python -m tests.host.frames vlan-endpoint IFACE VLAN
    make IFACE behave as an 802.1Q interface of VLAN N (tagged on the
    wire, untagged to the namespace's IP stack) for kernels without
    CONFIG_VLAN_8021Q: the port rules, put on the far side of the link.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

ETH_P_ALL = 0x0003
ETH_P_TEST = 0x88B5
ETH_P_8021Q = 0x8100
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 1 << 4
AUXDATA = struct.Struct("=IIIHHHH")
ROOT = Path(__file__).resolve().parents[2]


def run_in(ns: str, *args: str, wait: bool = True) -> subprocess.Popen | None:
    """Run this tool in namespace `ns`; without `wait`, a running listener."""
    argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.host.frames", *args]
    if wait:
        subprocess.run(argv, check=True, cwd=ROOT, capture_output=True)
        return None
    listener = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert listener.stdout.readline().strip() == "ready"
    return listener


def received(listener: subprocess.Popen, stop_after: float | None = None) -> list[dict]:
    """The frames a listener reported: once its time is up, or `stop_after` seconds from now."""
    if stop_after is not None:
        time.sleep(stop_after)
        listener.terminate()  # it prints each frame as it comes: nothing is lost
    out, _ = listener.communicate(timeout=60)
    return [json.loads(line) for line in out.splitlines()]


def send(iface: str, marker: str, vlan: int | None) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((iface, 0))
        source = sock.getsockname()[4]
        header = b"\xff" * 6 + source
        if vlan is not None:
            header += struct.pack("!HH", ETH_P_8021Q, vlan)
        frame = header + struct.pack("!H", ETH_P_TEST) + marker.encode()
        sock.send(frame.ljust(60, b"\0"))


def _decode(frame: bytes, ancillary: list) -> dict:
    vlan = None
    for level, kind, data in ancillary:
        if level == SOL_PACKET and kind == PACKET_AUXDATA:
            status, _, _, _, _, tci, _ = AUXDATA.unpack(data[: AUXDATA.size])
            if status & TP_STATUS_VLAN_VALID or tci:
                vlan = tci & 0x0FFF
    (ethertype,) = struct.unpack("!H", frame[12:14])
    payload = frame[14:]
    if ethertype == ETH_P_8021Q and vlan is None:
        vlan = struct.unpack("!H", payload[:2])[0] & 0x0FFF
        (ethertype,) = struct.unpack("!H", payload[2:4])
        payload = payload[4:]
    found = {"src": frame[6:12].hex(":"), "vlan": vlan, "type": f"{ethertype:04x}"}
    if ethertype == ETH_P_TEST:
        found["marker"] = payload.rstrip(b"\0").decode(errors="replace")
    return found


def listen(iface: str, seconds: float) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sock:
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        sock.bind((iface, 0))
        print("ready", flush=True)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                frame, ancillary, _, address = sock.recvmsg(65535, socket.CMSG_SPACE(64))
            except TimeoutError:
                break
            if address[2] != PACKET_OUTGOING:
                print(json.dumps(_decode(frame, ancillary)), flush=True)


def vlan_endpoint(iface: str, vlan: int) -> None:
    from agent.network import portfilter

    portfilter.attach(
        iface,
        ingress=portfilter.to_guest(vlan),  # tagged frames in: only VLAN N, tag removed
        egress=portfilter.from_guest(vlan),  # frames out: tagged N
        name=f"test vlan-endpoint {vlan}",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("send")
    s.add_argument("iface")
    s.add_argument("marker")
    s.add_argument("--vlan", type=int)
    ls = commands.add_parser("listen")
    ls.add_argument("iface")
    ls.add_argument("seconds", type=float)
    v = commands.add_parser("vlan-endpoint")
    v.add_argument("iface")
    v.add_argument("vlan", type=int)
    args = parser.parse_args()
    if args.command == "send":
        send(args.iface, args.marker, args.vlan)
    elif args.command == "listen":
        listen(args.iface, args.seconds)
    else:
        vlan_endpoint(args.iface, args.vlan)


if __name__ == "__main__":
    sys.exit(main())
