"""Host devices handed to guests whole: PCI functions (vfio)."""
