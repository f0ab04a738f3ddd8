"""hpvmsuspend / hpvmresume on a real guest: it runs on where it stopped, uptime and all."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from tests.host.guestkit import hpvm

pytestmark = pytest.mark.integration


def last_uptime(text: str) -> float:
    return float(re.findall(r"^AVIO uptime ([\d.]+)", text, re.M)[-1])


def test_suspended_guest_resumes_where_it_stopped(host):
    disk = host.loop()
    name, log = host.boot_guest(f"disk:avio_stor:0,0,3:disk:{disk}", cmdline="avio.tick=1")
    log.wait_for(r"^AVIO uptime")
    hpvm("hpvmsuspend", "-P", name)
    before = last_uptime(log.text())
    state = subprocess.run(["virsh", "domstate", name], capture_output=True, text=True)
    assert state.stdout.strip() == "shut off"
    table = hpvm("hpvmstatus").stdout
    assert re.search(rf"^{name}\s+\d+\s+\S+\s+Suspended", table, re.M), table
    assert hpvm("hpvmstatus", "-M").stdout.count(f"{name}:") == 1

    time.sleep(3)  # suspended for a while: a resumed guest does not count this time
    mark = log.mark()
    hpvm("hpvmresume", "-P", name)
    log.wait_for(r"^AVIO uptime", since=mark)
    log.wait_for(r"^AVIO uptime", since=log.mark())  # a whole tick after the resume
    after = last_uptime(log.text())
    assert before <= after < before + 60, (before, after)  # a rebooted guest starts over
    assert "AVIO ready" not in log.text()[mark:]
    assert re.search(r"^On \(OS\)|\bOn \(OS\)", hpvm("hpvmstatus", "-P", name).stdout)


def test_suspend_and_resume_refuse_what_they_cannot_do(host):
    name = host.define_guest()
    stopped = hpvm("hpvmsuspend", "-P", name, check=False)
    assert stopped.returncode == 1 and "is not running" in stopped.stderr
    assert stopped.stderr.count("\n") == 1
    resumed = hpvm("hpvmresume", "-P", name, check=False)
    assert resumed.returncode == 1 and "is not suspended" in resumed.stderr
    missing = hpvm("hpvmresume", "-P", "avt-no-such-guest", check=False)
    assert missing.returncode == 2 and "no guest named" in missing.stderr
