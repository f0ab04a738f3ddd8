"""The libvirt hook's client (agent/hook_client.py): it asks the agent, and runs the full
hook, with the same arguments and the same domain XML, whenever the agent's answer is
not "ok": no agent, a stale socket, "local", a broken answer, no answer in time."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

CLIENT = REPO / "agent/hook_client.py"
PYTHON = REPO / ".venv/bin/python"
XML = "<domain><name>g 1</name><description>" + "x" * 200_000 + "</description></domain>"


@pytest.fixture
def fake_hook(tmp_path: Path) -> Path:
    """A stand-in for avio-libvirt-hook: it records its arguments and standard input."""
    program = tmp_path / "hook"
    program.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/args"\n'
        'cat > "$(dirname "$0")/stdin"\nexit 3\n'
    )
    program.chmod(0o755)
    return program


def run_client(hook: Path, sock: Path, operation: str = "prepare", timeout: str = "5"):
    env = {"PATH": "/usr/bin:/bin", "AVIO_HOOK_SOCKET": str(sock), "AVIO_HOOK_TIMEOUT": timeout}
    return subprocess.run(
        [str(PYTHON), "-I", "-S", str(CLIENT), str(hook), "g 1", operation, "begin", "-"],
        input=XML,
        capture_output=True,
        text=True,
        env=env,
    )


class FakeAgent:
    """A socket that answers one request with `answer` (None: closes without one;
    "hang": waits until the test ends)."""

    def __init__(self, path: Path, answer: bytes | str | None) -> None:
        self.answer = answer
        self.request = b""
        self.done = threading.Event()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            while chunk := conn.recv(65536):
                self.request += chunk
            if self.answer == "hang":
                self.done.wait(30)
            elif self.answer is not None:
                conn.sendall(self.answer)

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.server.close()


def test_an_ok_from_the_agent_ends_the_hook(tmp_path, fake_hook):
    agent = FakeAgent(tmp_path / "s", b"ok\n")
    try:
        result = run_client(fake_hook, tmp_path / "s")
    finally:
        agent.close()
    assert result.returncode == 0, result.stderr
    assert agent.request == b"prepare\0g 1\0" + XML.encode()
    assert not (tmp_path / "args").exists()  # the full hook did not run


@pytest.mark.parametrize("answer", [b"local\n", b"ok", b"ok\nok\n", b"error\n", None])
def test_any_other_answer_runs_the_full_hook(tmp_path, fake_hook, answer):
    agent = FakeAgent(tmp_path / "s", answer)
    try:
        result = run_client(fake_hook, tmp_path / "s", "started")
    finally:
        agent.close()
    assert result.returncode == 3  # the hook's own exit status
    assert (tmp_path / "args").read_text() == "g 1\nstarted\nbegin\n-\n"
    assert (tmp_path / "stdin").read_text() == XML  # 200 kB: more than a pipe holds


def test_no_agent_or_a_stale_socket_runs_the_full_hook(tmp_path, fake_hook):
    assert run_client(fake_hook, tmp_path / "absent").returncode == 3
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "stale"))
    stale.close()  # the file stays, nobody listens: an agent killed with SIGKILL
    os.unlink(tmp_path / "args")
    assert run_client(fake_hook, tmp_path / "stale").returncode == 3
    assert (tmp_path / "stdin").read_text() == XML


def test_an_agent_that_does_not_answer_in_time_is_passed_over(tmp_path, fake_hook):
    agent = FakeAgent(tmp_path / "s", "hang")
    try:
        began = time.monotonic()
        result = run_client(fake_hook, tmp_path / "s", timeout="0.5")
        took = time.monotonic() - began
    finally:
        agent.close()
    assert result.returncode == 3 and (tmp_path / "stdin").read_text() == XML
    assert took < 20  # not a timing assert: the agent would hold the start for 30 s


def test_the_client_imports_no_module_beyond_the_standard_librarys_core():
    """It runs with -I -S (no site-packages): it must not import the project or lxml."""
    code = (
        f"import runpy, sys; runpy.run_path({str(CLIENT)!r}, run_name='not_main'); "
        "print(sorted(m for m in sys.modules "
        "if m.startswith(('agent', 'lxml', 'translators', 'socket', 'libvirt'))))"
    )
    result = subprocess.run(
        [str(PYTHON), "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
