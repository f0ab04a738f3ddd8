"""Commands listing libvirt objects while another command removes them."""

from __future__ import annotations

import threading
import uuid

import libvirt
import pytest

from agent.network import vswitch_store
from tests.host.conftest import require_host

pytestmark = pytest.mark.integration

NETWORK = "<network><name>{name}</name><forward mode='bridge'/><bridge name='{name}'/></network>"


def test_listing_vswitches_survives_networks_removed_meanwhile():
    """`hpvmnet -S x` failed with 'Network not found' when another vswitch was deleted
    between libvirt's listing and the read of its definition."""
    require_host()
    conn = libvirt.open("qemu:///system")
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        churner = libvirt.open("qemu:///system")
        try:
            while not stop.is_set():
                name = f"avtrc{uuid.uuid4().hex[:6]}"
                churner.networkDefineXML(NETWORK.format(name=name)).undefine()
        except BaseException as err:  # reported by the test below
            errors.append(err)
        finally:
            churner.close()

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for _ in range(300):
            vswitch_store.all_vswitches(conn)
    finally:
        stop.set()
        worker.join()
        conn.close()
    assert not errors
