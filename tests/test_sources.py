"""The event types the udev pump puts on the agent's queue (agent/daemon/sources.py)."""

from agent.daemon.sources import PciEvent, ScsiEvent


def test_pci_and_scsi_events_are_built_as_the_pump_builds_them():
    """(action, name, time seen), frozen: a merge once left ScsiEvent without its
    dataclass and PciEvent without its time, and the pump's thread failed on each uevent."""
    pci = PciEvent("remove", "0000:00:03.0", 1.0)
    scsi = ScsiEvent("add", "2:0:1:0", 2.0)
    assert (pci.action, pci.address, pci.seen) == ("remove", "0000:00:03.0", 1.0)
    assert (scsi.action, scsi.hctl, scsi.seen) == ("add", "2:0:1:0", 2.0)
    assert hash(pci) and hash(scsi)


def test_every_work_item_and_event_is_a_dataclass_of_its_own():
    """A subclass without its own @dataclass inherits its parent's fields and refuses
    its own: ScsiSync lost its decorator in a merge and every reconcile failed (L1)."""
    from agent.daemon import sources, work

    for module in (sources, work):
        for name, cls in vars(module).items():
            ours = isinstance(cls, type) and cls.__module__ == module.__name__
            if ours and "__dataclass_fields__" in dir(cls):
                assert "__dataclass_params__" in cls.__dict__, name
    assert work.ScsiSync("g", 1.0).seen == 1.0
