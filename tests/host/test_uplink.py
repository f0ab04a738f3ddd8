"""`hpvmnet` refuses an uplink the host itself talks through (issue 10, item 18):
making it a bridge port would cut the host off its addresses and routes there.
A veth made by the test carries a link-local address and a route.
"""

from __future__ import annotations

import uuid

import pytest

from tests.host.conftest import made_on_host
from tests.host.guestkit import hpvm
from tests.host.test_vswitch import Net, sh

pytestmark = pytest.mark.integration


@pytest.fixture
def net():
    yield from made_on_host(Net)


def veth(net: Net, address: str | None = None, route: str | None = None) -> str:
    """A veth (peer left alone), up, with `address` and a route to `route` on it."""
    near = f"avtul{uuid.uuid4().hex[:6]}"
    sh("ip", "link", "add", near, "type", "veth", "peer", "name", near + "p")
    net.links.append(near)
    sh("ip", "link", "set", near, "up")
    if address:
        sh("ip", "addr", "add", address, "dev", near)
    if route:
        sh("ip", "route", "add", route, "dev", near)
    return near


def defined(name: str) -> bool:
    return name in hpvm("hpvmnet").stdout


def test_an_uplink_with_a_host_address_and_route_is_refused(net):
    uplink = veth(net, "169.254.201.1/24", "169.254.202.0/24")
    name = f"avtsw{net.tag}r"
    result = hpvm("hpvmnet", "-c", "-S", name, "-n", uplink, check=False)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "169.254.201.1/24" in result.stderr and "169.254.202.0/24" in result.stderr
    assert "-F" in result.stderr
    assert not defined(name)


def test_an_uplink_with_only_a_route_is_refused(net):
    uplink = veth(net, route="169.254.203.0/24")
    result = hpvm("hpvmnet", "-c", "-S", f"avtsw{net.tag}o", "-n", uplink, check=False)
    assert result.returncode == 2 and "routes 169.254.203.0/24" in result.stderr


def test_F_takes_such_an_uplink_anyway(net):
    uplink = veth(net, "169.254.204.1/24")
    name = f"avtsw{net.tag}f"
    hpvm("hpvmnet", "-c", "-F", "-S", name, "-n", uplink)
    net.switches.append(name)
    assert defined(name)


def test_start_refuses_an_uplink_that_got_an_address_meanwhile(net):
    uplink = veth(net)
    name = f"avtsw{net.tag}s"
    hpvm("hpvmnet", "-c", "-S", name, "-n", uplink)  # IPv6 link-local only: fine
    net.switches.append(name)
    sh("ip", "addr", "add", "169.254.205.1/24", "dev", uplink)
    result = hpvm("hpvmnet", "-b", "-S", name, check=False)
    assert result.returncode == 2 and "169.254.205.1/24" in result.stderr
    assert sh("ip", "-o", "link", "show", uplink).stdout.count("master") == 0
