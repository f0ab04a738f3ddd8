"""hpvmconsole on a real guest: the vMP prompt, CO to its serial console and Ctrl-B back."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time

import pytest

from tests.conftest import command_env
from tests.host.guestkit import BIN, hpvm

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def guest(module_host):
    return module_host.boot_guest(memory="128M")


class Terminal:
    """hpvmconsole on a pseudo-terminal, as a person at a keyboard runs it."""

    def __init__(self, *argv: str) -> None:
        self.master, slave = pty.openpty()
        env = command_env(TERM="dumb")
        self.process = subprocess.Popen(
            [str(BIN / "hpvmconsole"), *argv], stdin=slave, stdout=slave, stderr=slave, env=env
        )
        os.close(slave)
        self.seen = b""

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def expect(self, pattern: bytes, timeout: float = 60.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.seen)
            if match:
                self.seen = self.seen[match.end() :]
                return match
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} on the terminal; it shows {self.seen[-500:]!r}"
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:  # the program ended
                    time.sleep(0.1)

    def close(self) -> int:
        try:
            return self.process.wait(30)
        finally:
            os.close(self.master)


def test_console_reads_the_guest_and_sends_it_a_line(guest):
    name, log = guest
    term = Terminal("-P", name)
    try:
        term.expect(rb"vMP MAIN MENU")
        term.expect(rf"\[{name}\] vMP> ".encode())
        term.type(b"CO\r")
        term.expect(rb"Ctrl-B to return")
        mark = log.mark()
        term.type(b"hello from the host\r")
        # the guest's own report, both on this terminal and in its console log
        term.expect(rb"AVIO typed hello from the host")
        log.wait_for(r"^AVIO typed hello from the host", since=mark)
        term.type(b"\x02")
        term.expect(rf"\[{name}\] vMP> ".encode())
        term.type(b"CL\r")
        term.expect(rb"AVIO ready")
        term.expect(rf"\[{name}\] vMP> ".encode())
        term.type(b"VM\r")
        term.expect(rb"On \(OS\)")
        term.type(b"X\r")
        assert term.close() == 0
    finally:
        term.process.kill()


def test_scripted_console_sends_input_and_prints_the_answer(guest):
    name, log = guest
    result = subprocess.run(
        [str(BIN / "hpvmconsole"), "-P", name, "-c", "CO"],
        input="scripted line\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    log.wait_for(r"^AVIO typed scripted line")
    assert "AVIO typed scripted line" in result.stdout
    logged = hpvm("hpvmconsole", "-P", name, "-c", "CL").stdout
    assert "AVIO ready" in logged


def test_console_refusals(guest):
    name, _ = guest
    unknown = hpvm("hpvmconsole", "-P", name, "-c", "ZZ", check=False)
    assert unknown.returncode == 2 and "unknown vMP command 'ZZ'" in unknown.stderr
    missing = hpvm("hpvmconsole", "-P", "avt-no-such-guest", "-c", "CO", check=False)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
