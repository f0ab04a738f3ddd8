"""The libvirt qemu hook's first step: ask the running agent to do the hook's work.

    python -I -S hook_client.py HOOK GUEST OPERATION SUBOPERATION EXTRA < domain-XML

scripts/libvirt-qemu-hook runs this for `prepare` and `started`. It imports only
the standard library's C parts (it starts in about 10 ms; the hook itself takes
60-70 ms to start), sends the operation, the guest's name and the domain XML to
the agent's socket ($AVIO_HOOK_SOCKET, default /run/avio/hook.sock) and exits 0
when the agent answers "ok". Anything else (no agent, no answer in time, the
answer "local", a broken answer) runs HOOK, the full avio-libvirt-hook, with the
same arguments and the same XML: the agent can only save time, and only the
hook refuses a guest. See agent/daemon/hook_service.py.
"""

import _socket  # not `socket`: its imports (enum, selectors) cost 7 ms
import posix  # not `os`: 1 ms more
import sys

SOCKET = "/run/avio/hook.sock"
TIMEOUT = 5.0  # seconds; an agent this slow is treated as absent ($AVIO_HOOK_TIMEOUT)


def ask(
    path: str | bytes, operation: str, guest: str, xml: bytes, timeout: float = TIMEOUT
) -> bytes | None:
    """The agent's answer, or None when it gave none."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(b"\0".join((operation.encode(), _encode(guest), xml)))
        sock.shutdown(_socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
        return b"".join(chunks)
    except (OSError, UnicodeError):
        return None
    finally:
        sock.close()


def _encode(text: str) -> bytes:
    """An argument back to the bytes it came from (as os.fsencode)."""
    return text.encode(sys.getfilesystemencoding(), "surrogateescape")


def run_hook(hook: str, args: list[str], xml: bytes) -> None:
    """Replace this process with the hook, the XML again on its standard input."""
    fd = posix.memfd_create("domain-xml")
    view = memoryview(xml)
    while view:
        view = view[posix.write(fd, view) :]
    posix.lseek(fd, 0, 0)
    posix.dup2(fd, 0)
    posix.close(fd)
    posix.execv(hook, [hook, *args])


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit("usage: hook_client.py HOOK GUEST OPERATION ...")
    hook, args = sys.argv[1], sys.argv[2:]
    xml = sys.stdin.buffer.read()
    path = posix.environ.get(b"AVIO_HOOK_SOCKET", SOCKET.encode())
    try:
        timeout = float(posix.environ.get(b"AVIO_HOOK_TIMEOUT", TIMEOUT))
    except ValueError:
        timeout = TIMEOUT
    if ask(path, args[1], args[0], xml, timeout) == b"ok\n":
        sys.exit(0)
    run_hook(hook, args, xml)


if __name__ == "__main__":
    main()
