"""Property tests: statements and XML round-trip the model; the parser only raises HpvmError."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from translators.allocate import complete
from translators.errors import HpvmError
from translators.grammar import format_statement, parse_statement
from translators.model import (
    Adapter,
    BootExtension,
    DeviceType,
    Guest,
    NetworkDevice,
    StorageDevice,
    StorageType,
)
from translators.options import parse_config_text
from translators.readback import read_domain
from translators.render import render_domain, to_string
from translators.validate import check_guest

small = st.none() | st.integers(0, 200)
path_chars = st.text(
    st.characters(whitelist_categories=("L", "N"), whitelist_characters="/_.-:"), max_size=20
)
# A path names a file: not `/` itself (libvirt's schema: absFilePath is `/.+`).
paths = path_chars.map(lambda p: "/" + p).filter(lambda p: p.strip("/"))
vswitches = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}", fullmatch=True)
macs = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))


@st.composite
def any_storage(draw) -> StorageDevice:
    storage = draw(st.sampled_from(StorageType))
    location = draw(paths) if storage is not StorageType.NULL else draw(st.just("") | paths)
    return StorageDevice(
        device=draw(st.sampled_from(DeviceType)),
        adapter=draw(st.sampled_from([Adapter.AVIO_STOR, Adapter.SCSI])),
        storage=storage,
        location=location,
        bus=draw(small),
        slot=draw(small),
        target=draw(small),
    )


@st.composite
def any_network(draw) -> NetworkDevice:
    return NetworkDevice(
        adapter=draw(st.sampled_from([Adapter.AVIO_LAN, Adapter.LAN])),
        vswitch=draw(vswitches),
        bus=draw(small),
        slot=draw(small),
        mac=draw(st.none() | macs),
        portid=draw(small),
    )


@given(any_storage() | any_network())
def test_statement_round_trip(device):
    assert parse_statement(format_statement(device)) == device


@st.composite
def valid_guests(draw) -> Guest:
    """Guests that pass every rule, with some devices addressed and some not."""
    count = draw(st.integers(0, 12))
    storage = []
    for i in range(count):
        adapter = draw(st.sampled_from([Adapter.AVIO_STOR, Adapter.SCSI]))
        device = draw(st.sampled_from([DeviceType.DISK, DeviceType.DVD]))
        kinds = [StorageType.DISK, StorageType.FILE]
        kinds += [StorageType.NULL] if device is DeviceType.DVD else [StorageType.LV]
        kind = draw(st.sampled_from(kinds))
        location = (
            f"/dev/b{i}" if kind is not StorageType.NULL else draw(st.sampled_from(["", "/iso"]))
        )
        storage.append(StorageDevice(device, adapter, kind, location))
    networks = [
        NetworkDevice(
            draw(st.sampled_from([Adapter.AVIO_LAN, Adapter.LAN])),
            draw(st.sampled_from(["swlan1", "swlan2", "vsw-3"])),
            portid=draw(st.none() | st.integers(1, 511)),
        )
        for _ in range(draw(st.integers(0, 4)))
    ]
    used: set[tuple[str, int]] = set()
    for nic in networks:  # a port belongs to one NIC
        if nic.portid is not None and (nic.vswitch, nic.portid) in used:
            nic.portid = None
        elif nic.portid is not None:
            used.add((nic.vswitch, nic.portid))
    guest = Guest(
        name=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)),
        os_type=draw(st.sampled_from(["hpux", "linux", "windows", "unknown"])),
        vcpus=draw(st.integers(1, 64)),
        memory_mb=draw(st.integers(32, 1 << 20)),
        autoboot=draw(st.booleans()),
        label=draw(st.none() | st.from_regex(r"[A-Za-z0-9 _.-]{1,30}", fullmatch=True)),
        storage=storage,
        networks=networks,
        boot=draw(
            st.just(BootExtension())
            | st.builds(
                BootExtension, paths, st.none() | paths, st.none() | st.just("console=ttyS0")
            )
        ),
        virt_type=draw(st.sampled_from(["kvm", "qemu"])),
        number=draw(st.none() | st.integers(1, 9999)),
    )
    check_guest(guest)
    return complete(guest)


@given(valid_guests())
def test_xml_round_trip(guest):
    assert read_domain(to_string(render_domain(guest))) == guest


@given(valid_guests())
def test_rendered_statements_round_trip(guest):
    again = [parse_statement(format_statement(d)) for d in guest.devices]
    assert again == guest.devices


statement_like = st.text(
    st.sampled_from(list("disknetworkavio_storlanscsivswitchportidnull:,/-0123456789xabcdef ")),
    max_size=80,
)


@given(st.text(max_size=120) | statement_like)
def test_parser_raises_only_its_own_error(text):
    with contextlib.suppress(HpvmError):
        parse_statement(text)


@given(st.lists(st.text(max_size=60) | statement_like.map(lambda s: "-a " + s), max_size=6))
def test_config_parser_raises_only_its_own_error(lines):
    with contextlib.suppress(HpvmError):
        parse_config_text("\n".join(lines), "g")


DOMAIN_RNG = Path("/usr/share/libvirt/schemas/domain.rng")


@pytest.mark.skipif(not DOMAIN_RNG.exists(), reason="needs libvirt's domain.rng (libvirt-daemon)")
@given(valid_guests())
def test_rendered_xml_validates_against_libvirt_schema(guest):
    schema = _schema()
    assert schema.validate(render_domain(guest)), schema.error_log


@functools.cache
def _schema() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(DOMAIN_RNG)))
