"""libvirt's messages as the commands and the agent print them."""

from __future__ import annotations


def test_a_known_qemu_failure_gets_what_to_do():
    import libvirt

    from agent.connection import libvirt_message

    err = libvirt.libvirtError("x")
    err.err = (
        1,
        0,
        "internal error: qemu unexpectedly closed the monitor: Unable to use "
        "native AIO: failed to create linux AIO context: Resource temporarily "
        "unavailable",
        2,
        None,
        None,
        None,
        0,
        0,
    )
    message = libvirt_message(err)
    assert message.startswith("internal error: qemu unexpectedly closed the monitor")
    assert "fs.aio-max-nr" in message and "\n" not in message
