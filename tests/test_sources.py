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
