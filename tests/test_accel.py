"""Domain type detection."""

from __future__ import annotations

from agent import accel


def test_override(monkeypatch):
    accel.detect_virt_type.cache_clear()
    monkeypatch.setenv("AVIO_VIRT_TYPE", "kvm")
    assert accel.detect_virt_type() == "kvm"
    accel.detect_virt_type.cache_clear()


def test_answer_is_a_domain_type(monkeypatch):
    accel.detect_virt_type.cache_clear()
    monkeypatch.delenv("AVIO_VIRT_TYPE", raising=False)
    assert accel.detect_virt_type() in ("kvm", "qemu")
    accel.detect_virt_type.cache_clear()
