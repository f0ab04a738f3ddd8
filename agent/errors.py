"""Errors the host causes (exit status 1), as opposed to bad input (exit status 2)."""

from __future__ import annotations


class HostError(Exception):
    """The host refused: libvirt error, device busy, daemon unreachable."""
