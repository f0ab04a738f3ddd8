"""Host devices guests may or may not use: the device database (hpvmdevmgmt)."""
