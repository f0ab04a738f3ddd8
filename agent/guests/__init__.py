"""Guests through libvirt: define, change devices (plan -> apply), settings, inventory, locks."""
