"""Host devices and what guests may use of them: the device database (hpvmdevmgmt),
PCI functions for vfio (DIO), SCSI devices handed to guests whole (pass-through)."""
